"""``python -m graft`` (and the ``graft`` console script): runs graft's command-line program.

The CLI is a C++ executable. A ``pip install`` puts it inside the package (``graft/bin/graft``); in
a CMake build tree it sits beside the ``python`` folder (``build/graft``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional, Sequence

__all__ = ["cli_path", "main"]


def cli_path() -> Optional[Path]:
    """The graft executable that belongs to this package, or None when it was not built."""
    here = Path(__file__).parent
    for candidate in (here / "bin" / "graft", here.parent.parent / "graft"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Replaces this process with the graft CLI, passing ``argv`` (default: ``sys.argv[1:]``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    path = cli_path()
    if path is None:
        print("graft: the command-line program was not built with this package "
              "(build the CMake target graft_cli, or pip install the project)", file=sys.stderr)
        return 2
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(str(path), [str(path), *args])
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
