"""Run a `sonicflow` command and, when the process exits (SIGTERM included), write the names of every module it loaded
to a file (both commands exit cleanly on SIGTERM): how the tests check that a started worker or front door never loads
torch, OpenCV and the rest.

    python -m devtools.record_modules OUT.txt worker --comfy ... [any sonicflow arguments]
"""
from __future__ import annotations

import atexit
import sys


def main() -> None:
    out, argv = sys.argv[1], sys.argv[2:]

    def record():
        with open(out, "w") as f:
            f.write("\n".join(sorted(sys.modules)))

    atexit.register(record)
    import sonicflow_cli

    sys.exit(sonicflow_cli.main(argv))


if __name__ == "__main__":
    main()
