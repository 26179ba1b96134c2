"""The journal as the executor writes it (``parse/journal.py`` reads it back). Pure."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

from netagent.model import ActionRecord, Journal
from netagent.parse.journal import VERSION

MAX_ACTIONS = 1000


def with_actions(journal: Journal, *records: ActionRecord) -> Journal:
    return replace(journal, actions=(*journal.actions, *records)[-MAX_ACTIONS:])


def journal_text(journal: Journal) -> str:
    doc = {"version": VERSION, "keys": {k: asdict(v) for k, v in journal.keys.items()},
           "released": dict(journal.released), "notrack": journal.notrack,
           "actions": [asdict(a) for a in journal.actions]}
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def persisted_text(journal: Journal, *, version: str) -> str:
    """``90-netagent.conf``: every sysctl netagent manages, at the value it wrote."""
    lines = [f"# Written by netagent {version} (remediation): the limits it raised, so that",
             "# a reboot keeps them. `netagent remediate --rollback` restores the originals",
             "# and removes this file; edit a key's value here or in your own file and",
             "# netagent leaves that key to you."]
    lines += [f"{key} = {record.written}" for key, record in sorted(journal.keys.items())
              if key.startswith("net.")]
    return "\n".join(lines) + "\n"
