#!/usr/bin/env python3
"""The longest top-level C++ function definitions in the tracked sources, counted from the first
signature line to the closing brace in column 0 (the layout the code follows).

Usage: scripts/function_lengths.py [REPO_DIR] [MIN_LINES]; prints the definitions of at least
MIN_LINES lines (default 60), longest first.
"""

import re
import subprocess
import sys

NOT_FUNCTIONS = ("//", "#", "}", "namespace", "using", "static_assert")
TYPE_DEFINITION = re.compile(r"(struct|class|enum|union|template)\b")


def definitions(path):
    """(lines, first line, name) of each top-level function definition in the file."""
    lines = open(path, errors="replace").read().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        starts = line and not line[0].isspace() and "(" in line
        if starts and not line.startswith(NOT_FUNCTIONS) and not TYPE_DEFINITION.match(line):
            end_of_signature = i
            while end_of_signature < len(lines) and not lines[end_of_signature].rstrip().endswith(("{", ";")):
                end_of_signature += 1
            opening = lines[end_of_signature].rstrip() if end_of_signature < len(lines) else ";"
            if opening.endswith("{") and not opening.endswith("= {"):
                close = end_of_signature + 1
                while close < len(lines) and not lines[close].startswith("}"):
                    close += 1
                name = re.search(r"([A-Za-z_][\w:~]*)\s*\(", line)
                yield close - i + 1, i + 1, name.group(1) if name else "?"
                i = close
        i += 1


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    minimum = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    files = subprocess.run(["git", "-C", root, "ls-files", "*.cpp"], capture_output=True, text=True).stdout.split()
    rows = [(length, f, first, name) for f in files if "unicode_tables" not in f and not f.startswith("tests/data")
            for length, first, name in definitions(f"{root}/{f}")]
    for length, f, first, name in sorted(rows, reverse=True):
        if length >= minimum:
            print(f"{length:5d}  {f}:{first}  {name}")


if __name__ == "__main__":
    main()
