"""sysctl.conf files (``/etc/sysctl.d/*.conf``, ``/etc/sysctl.conf``), as ``sysctl --system``
reads them: ``key = value`` per line, ``#`` and ``;`` comments, a leading ``-`` (ignore a
failure) and ``/`` as the separator are allowed. Only the keys matter to netagent: which
file sets which key, so that a key an administrator set is left to them."""

from __future__ import annotations


def keys_set(text: str) -> dict[str, str]:
    """key -> value for every assignment in ``text`` (the last one wins, as in sysctl)."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, eq, value = line.partition("=")
        if not eq:
            continue
        key = key.strip().lstrip("-").strip()
        if "/" in key and "." not in key:
            key = key.replace("/", ".")
        if key:
            out[key] = value.strip()
    return out
