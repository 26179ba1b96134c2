"""A check's fix as text: its words, and each change set as the commands that make it.

The commands are what a person would type: ``sysctl -w`` now and the same values in
``/etc/sysctl.d`` for the next boot; the module parameter's file now and ``modprobe.d`` for
the next load; the iptables NOTRACK rules NodeLocal DNSCache itself installs.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from netagent.model import (
    ChangeSet,
    CheckResult,
    ModuleParameterChange,
    NotrackChange,
    SysctlChange,
)


def recommendation(check: CheckResult) -> str:
    return "".join(part if isinstance(part, str) else _commands(part) for part in check.fix)


def changes(check: CheckResult) -> list[dict[str, Any]]:
    """The typed changes as JSON objects, each with its ``kind``."""
    out = []
    for change in check.changes:
        record = asdict(change)
        if isinstance(change, NotrackChange):
            record["protocols"] = list(change.protocols)
        out.append(record)
    return out


def sysctl_commands(settings: dict[str, int], *, conf_file: str) -> str:
    """``sysctl -w`` now, and the same values in ``/etc/sysctl.d`` for the next boot."""
    apply = "sysctl -w " + " ".join(f"{k}={v}" for k, v in settings.items())
    lines = "\n".join(f"{k} = {v}" for k, v in settings.items())
    return f"{apply}\ncat > /etc/sysctl.d/{conf_file} <<'EOF'\n{lines}\nEOF"


def _commands(group: ChangeSet) -> str:
    blocks = []
    sysctls = {c.key: c.target for c in group.changes if isinstance(c, SysctlChange)}
    if sysctls:
        blocks.append(sysctl_commands(sysctls, conf_file=group.conf_file))
    for c in group.changes:
        if isinstance(c, ModuleParameterChange):
            short = c.module.removeprefix("nf_")
            blocks.append(f"echo {c.target} > {c.path}")
            blocks.append(f"cat > /etc/modprobe.d/netagent-{short}.conf <<'EOF'\n"
                          f"options {c.module} {c.parameter}={c.target}\nEOF")
    notrack = [c for c in group.changes if isinstance(c, NotrackChange)]
    if notrack:
        blocks.append("; ".join(
            f"`iptables -t raw -I PREROUTING -d {c.address} -p {p} --dport {c.port} "
            f"-j NOTRACK` and `iptables -t raw -I OUTPUT -s {c.address} -p {p} "
            f"--sport {c.port} -j NOTRACK`" for c in notrack for p in c.protocols))
    if group.note:
        blocks.append(group.note)
    return "\n".join(blocks)
