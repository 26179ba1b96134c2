"""Sizing helpers shared by the checks and the fleet view."""

from __future__ import annotations


def round_up(value: float, step: int = 1024) -> int:
    """The next multiple of ``step`` at or above ``value`` (at least one step)."""
    return max(step, -(-int(value) // step) * step)


def neighbour_thresholds(prefix: str, gc_thresh3: int) -> dict[str, int]:
    """gc_thresh1/2/3 under ``prefix`` (net.ipv4.neigh.default) scaled 1:4:8 as the
    kernel's defaults (128/512/1024)."""
    return {f"{prefix}.gc_thresh1": gc_thresh3 // 8, f"{prefix}.gc_thresh2": gc_thresh3 // 2,
            f"{prefix}.gc_thresh3": gc_thresh3}
