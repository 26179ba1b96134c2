"""netagent's journal (``journal.json``, written by the executor) back into records."""

from __future__ import annotations

import json
from typing import Any

from netagent.errors import ParseError
from netagent.model import ActionRecord, Journal, KeyRecord

VERSION = 1


def parse_journal(text: str) -> Journal:
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("version") != VERSION:
            raise ParseError(f"not a version {VERSION} journal")
        keys = {str(k): KeyRecord(**_fields(v, KeyRecord)) for k, v in doc["keys"].items()}
        released = {str(k): str(v) for k, v in doc.get("released", {}).items()}
        notrack = doc.get("notrack")
        actions = tuple(ActionRecord(**_fields(a, ActionRecord))
                        for a in doc.get("actions", []))
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as err:
        raise ParseError(f"not a journal netagent wrote: {err}") from err
    if notrack is not None and not isinstance(notrack, str):
        raise ParseError("not a journal netagent wrote: 'notrack' is not an address")
    return Journal(keys=keys, released=released, notrack=notrack, actions=actions)


def _fields(value: Any, kind: type) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{kind.__name__} is not an object")
    names = set(kind.__dataclass_fields__)  # type: ignore[attr-defined]
    if set(value) != names:
        raise KeyError(f"{kind.__name__} fields {sorted(value)}")
    return value
