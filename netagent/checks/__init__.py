"""Checks: pure functions from observations to findings (``CheckResult``).

A check never reads the system and never sleeps: it gets the records a source produced (and,
for counters, an earlier sample) and decides ok / warning / critical / unknown, with the
evidence, the limit and the exact fix. What cannot be decided from the records is
``unknown`` with the reason, never a guess.
"""
