"""Acting on findings: the executor (``executor.py``) is the only code that writes to the
system; everything that decides what to write stays pure (docs/design.md §4.6)."""
