"""Sysctl recommendations: the commands to apply now and the file that persists them."""

from __future__ import annotations

from collections.abc import Mapping


def round_up(value: float, step: int = 1024) -> int:
    """The next multiple of ``step`` at or above ``value`` (at least one step)."""
    return max(step, -(-int(value) // step) * step)


def recommend(settings: Mapping[str, int], *, conf_file: str) -> str:
    """``sysctl -w`` lines and their ``/etc/sysctl.d`` persisted form."""
    apply = "sysctl -w " + " ".join(f"{k}={v}" for k, v in settings.items())
    persist = "".join(f"{k} = {v}\\n" for k, v in settings.items())
    return f"{apply}\npersist: printf '{persist}' > /etc/sysctl.d/{conf_file}"
