"""Run ``netagent ARGS`` in this process, then print the modules it imported as JSON.

``python -m tests.unit.imports_probe check --only conntrack --interval 0``; used by
test_startup.py, in a fresh interpreter so that nothing else was imported before.
"""

from __future__ import annotations

import atexit
import json
import sys


def _report() -> None:
    sys.stderr.write("\nIMPORTED " + json.dumps(sorted(sys.modules)) + "\n")


if __name__ == "__main__":
    atexit.register(_report)
    from netagent.cli import main

    main(sys.argv[1:])
