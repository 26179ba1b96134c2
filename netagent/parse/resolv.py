"""``/etc/resolv.conf`` as glibc reads it (resolv/res_init.c), text in, ``ResolvConf`` out.

What a person would type to see the same thing: ``cat /etc/resolv.conf`` (or, inside a named
namespace, ``ip netns exec NS cat /etc/resolv.conf``, which shows /etc/netns/NS/resolv.conf).

glibc rules kept here, because they decide what a pod really does:
- a line is a comment only when its first character is ``#`` or ``;``;
- a keyword counts only when followed by a blank (``MATCH`` in res_init.c);
- ``nameserver`` takes the first word of the line; only the first ``MAXNS`` (3) are used;
  IPv6 addresses may carry a ``%zone``;
- ``domain`` and ``search`` replace each other: the last one wins;
- ``options`` values go through ``atoi`` and are capped: ``timeout`` at RES_MAXRETRANS (30),
  ``attempts`` at RES_MAXRETRY (5), ``ndots`` at RES_MAXNDOTS (15); later lines override
  earlier ones. Defaults: timeout 5, attempts 2, ndots 1.
The ``RES_OPTIONS`` and ``LOCALDOMAIN`` environment variables, which also change these, are
a per-process matter and are not read here.
"""

from __future__ import annotations

import ipaddress
import re

from netagent.model import RESOLV_ATTEMPTS, RESOLV_MAXNS, RESOLV_TIMEOUT, ResolvConf

RES_MAXRETRANS = 30
RES_MAXRETRY = 5
RES_MAXNDOTS = 15
# option words glibc knows without a value (res_init.c res_setoptions); others are ignored
FLAG_OPTIONS = frozenset({
    "inet6", "rotate", "edns0", "single-request-reopen", "single-request", "no_tld_query",
    "no-tld-query", "no-reload", "use-vc", "trust-ad", "no-aaaa", "debug",
})
_ATOI = re.compile(r"\s*([+-]?\d+)")


def _atoi(text: str) -> int:
    """C ``atoi``: the leading integer, 0 when there is none."""
    match = _ATOI.match(text)
    return int(match.group(1)) if match else 0


def _keyword(line: str, name: str) -> str | None:
    """The rest of ``line`` when it starts with ``name`` and a blank, else None."""
    if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "\t"):
        return line[len(name):].strip(" \t")
    return None


def valid_nameserver(word: str) -> bool:
    """True for an IPv4 address or an IPv6 address with an optional ``%zone``."""
    try:
        ipaddress.ip_address(word)
    except ValueError:
        return False
    return True


def parse_resolv_conf(text: str) -> ResolvConf:
    nameservers: list[str] = []
    search: tuple[str, ...] = ()
    ignored: list[str] = []
    timeout, attempts, ndots = RESOLV_TIMEOUT, RESOLV_ATTEMPTS, 1
    flags: set[str] = set()
    for raw in text.splitlines():
        line = raw.rstrip("\n")
        if not line.strip() or line[0] in "#;":
            continue
        if (rest := _keyword(line, "nameserver")) is not None:
            word = rest.split()[0] if rest.split() else ""
            if not valid_nameserver(word):
                ignored.append(f"nameserver {word!r}: not an IP address")
            elif len(nameservers) >= RESOLV_MAXNS:
                ignored.append(f"nameserver {word}: glibc uses only the first {RESOLV_MAXNS}")
            else:
                nameservers.append(word)
        elif (rest := _keyword(line, "domain")) is not None:
            words = rest.split()
            search = (words[0],) if words else ()
        elif (rest := _keyword(line, "search")) is not None:
            search = tuple(rest.split())
        elif (rest := _keyword(line, "options")) is not None:
            for word in rest.split():
                if word.startswith("ndots:"):
                    ndots = min(_atoi(word[6:]), RES_MAXNDOTS)
                elif word.startswith("timeout:"):
                    timeout = min(_atoi(word[8:]), RES_MAXRETRANS)
                elif word.startswith("attempts:"):
                    attempts = min(_atoi(word[9:]), RES_MAXRETRY)
                elif word in FLAG_OPTIONS:
                    flags.add(word)
                else:
                    ignored.append(f"options {word}: unknown to glibc")
        elif _keyword(line, "sortlist") is None:
            ignored.append(f"line {line.strip()!r}: not a resolv.conf keyword")
    return ResolvConf(
        nameservers=tuple(nameservers),
        search=search,
        timeout=timeout,
        attempts=attempts,
        ndots=ndots,
        rotate="rotate" in flags,
        single_request="single-request" in flags,
        single_request_reopen="single-request-reopen" in flags,
        use_vc="use-vc" in flags,
        ignored=tuple(ignored),
    )
