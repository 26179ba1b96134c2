"""NOTRACK rules out of ``nft -j list ruleset`` (JSON), text in, ``NotrackRule`` records out.

What a person would type: ``nft list ruleset`` (rules made by iptables-nft appear there too;
rules made by iptables-legacy do not: ``iptables-legacy -t raw -S``).

Only rules whose verdict switches connection tracking off are kept: the nft statement
``notrack``, or an iptables-nft ``-j NOTRACK``/``-j CT --notrack``, which nft prints as an
opaque ``{"xt": {"type": "target", "name": "CT"}}`` (then ``exact`` is False: the options of
the CT target are not visible). Matches on addresses, layer-4 protocol and ports are read
from ``match`` expressions with ``==`` or ``in``; a negated match is not a constraint we can
use and is left out.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from netagent.errors import ParseError
from netagent.model import NotrackRule

_PROTOCOL_NUMBERS = {6: "tcp", 17: "udp"}
_XT_NOTRACK = frozenset({"CT", "NOTRACK"})


def parse_notrack_rules(text: str) -> tuple[NotrackRule, ...]:
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ParseError(f"nft -j list ruleset: not JSON: {err}") from err
    except RecursionError as err:
        raise ParseError("nft -j list ruleset: nested too deeply") from err
    items = data.get("nftables") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ParseError("nft -j list ruleset: no 'nftables' list")
    hooks: dict[tuple[str, str, str], str | None] = {}
    for item in items:
        chain = item.get("chain") if isinstance(item, dict) else None
        if isinstance(chain, dict):
            key = (str(chain.get("family")), str(chain.get("table")), str(chain.get("name")))
            hook = chain.get("hook")
            hooks[key] = hook if isinstance(hook, str) else None
    rules = []
    for item in items:
        rule = item.get("rule") if isinstance(item, dict) else None
        if isinstance(rule, dict):
            parsed = _notrack_rule(rule, hooks)
            if parsed is not None:
                rules.append(parsed)
    return tuple(rules)


def _notrack_rule(rule: dict[str, Any],
                  hooks: dict[tuple[str, str, str], str | None]) -> NotrackRule | None:
    exprs = rule.get("expr")
    if not isinstance(exprs, list):
        return None
    verdict: bool | None = None  # True exact notrack, False opaque xt CT target
    fields: dict[str, list[Any]] = {"daddr": [], "saddr": [], "proto": [], "dport": [],
                                    "sport": []}
    for expr in exprs:
        if not isinstance(expr, dict):
            continue
        if "notrack" in expr:
            verdict = True
        xt = expr.get("xt")
        if (isinstance(xt, dict) and xt.get("type") == "target"
                and isinstance(xt.get("name"), str) and xt["name"] in _XT_NOTRACK
                and verdict is None):
            verdict = False
        match = expr.get("match")
        if isinstance(match, dict) and match.get("op", "==") in ("==", "in"):
            _read_match(match.get("left"), match.get("right"), fields)
    if verdict is None:
        return None
    family, table, chain = (str(rule.get("family")), str(rule.get("table")),
                            str(rule.get("chain")))
    return NotrackRule(
        family=family,
        table=table,
        chain=chain,
        hook=hooks.get((family, table, chain)),
        daddr=tuple(fields["daddr"]),
        saddr=tuple(fields["saddr"]),
        protocols=tuple(dict.fromkeys(fields["proto"])),
        dport=tuple(fields["dport"]),
        sport=tuple(fields["sport"]),
        exact=verdict,
    )


def _read_match(left: Any, right: Any, fields: dict[str, list[Any]]) -> None:
    if not isinstance(left, dict):
        return
    payload = left.get("payload")
    meta = left.get("meta")
    if isinstance(payload, dict):
        proto, name = payload.get("protocol"), payload.get("field")
        if proto in ("ip", "ip6") and name in ("daddr", "saddr"):
            fields[name].extend(_networks(right))
        elif proto in ("udp", "tcp", "th") and name in ("dport", "sport"):
            fields[name].extend(_port_ranges(right))
            if proto != "th":
                fields["proto"].append(proto)
        elif proto in ("ip", "ip6") and name in ("protocol", "nexthdr"):
            fields["proto"].extend(_protocols(right))
    elif isinstance(meta, dict) and meta.get("key") == "l4proto":
        fields["proto"].extend(_protocols(right))


def _values(right: Any) -> list[Any]:
    if isinstance(right, dict) and "set" in right:
        elements = right["set"]
        return list(elements) if isinstance(elements, list) else [elements]
    return [right]


def _networks(right: Any) -> list[str]:
    out = []
    for value in _values(right):
        try:
            if isinstance(value, str):
                out.append(str(ipaddress.ip_network(value, strict=False)))
            elif isinstance(value, dict) and isinstance(value.get("prefix"), dict):
                prefix = value["prefix"]
                out.append(str(ipaddress.ip_network(f"{prefix['addr']}/{prefix['len']}",
                                                    strict=False)))
            elif isinstance(value, dict) and isinstance(value.get("range"), list):
                low, high = (ipaddress.ip_address(v) for v in value["range"])
                out.extend(str(n) for n in ipaddress.summarize_address_range(low, high))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def _port_ranges(right: Any) -> list[tuple[int, int]]:
    out = []
    for value in _values(right):
        if isinstance(value, int):
            out.append((value, value))
        elif (isinstance(value, dict) and isinstance(value.get("range"), list)
              and len(value["range"]) == 2):
            low, high = value["range"]
            if isinstance(low, int) and isinstance(high, int):
                out.append((low, high))
    return out


def _protocols(right: Any) -> list[str]:
    out = []
    for value in _values(right):
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, int) and value in _PROTOCOL_NUMBERS:
            out.append(_PROTOCOL_NUMBERS[value])
    return out
