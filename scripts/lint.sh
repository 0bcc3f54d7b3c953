#!/usr/bin/env bash
# Style check, run by ctest as the `lint` test: clang-format 14 (the repository's .clang-format)
# over the C++ sources and `ruff check` (pyproject.toml's [tool.ruff]) over the Python. Exits
# non-zero naming every file that is off. `scripts/lint.sh --fix` rewrites the files instead
# (clang-format -i, ruff check --fix) and then checks again.
# Both tools come from scripts/install-deps.sh (Debian's clang-format; ruff as pinned in
# requirements-dev.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
PYTHON=${PYTHON:-python3}
fix=0
[ "${1:-}" = "--fix" ] && fix=1

# The C++ files checked: every source and header, less generated code and test data. This is the one
# list; change it here.
cxx_files() {
  find arch bench bindings core edits tests \
    \( -path tests/data -o -path tests/fuzz/corpus \) -prune -o \
    -type f \( -name '*.cpp' -o -name '*.h' -o -name '*.cc' -o -name '*.hpp' \) \
    ! -path core/tokenizer/unicode_tables.cpp \
    -print | LC_ALL=C sort
}

status=0

# ---- C++: clang-format
if ! command -v "$CLANG_FORMAT" >/dev/null 2>&1; then
  echo "lint: $CLANG_FORMAT not found (bash scripts/install-deps.sh installs it)" >&2
  exit 1
fi
version=$("$CLANG_FORMAT" --version | sed -n 's/.*clang-format version \([0-9]*\).*/\1/p')
if [ "$version" != "14" ]; then
  # Other versions lay some constructs out differently: the check would fail on formatted code.
  echo "lint: .clang-format is checked with clang-format 14 (Debian 12); $CLANG_FORMAT is version ${version:-unknown}." >&2
  echo "lint: install clang-format-14 and run with CLANG_FORMAT=clang-format-14." >&2
  exit 1
fi
mapfile -t files < <(cxx_files)
if ((fix)); then
  "$CLANG_FORMAT" -i "${files[@]}"
fi
if ! report=$("$CLANG_FORMAT" --dry-run --Werror "${files[@]}" 2>&1); then
  status=1
  echo "lint: clang-format would change these files (fix: bash scripts/lint.sh --fix):"
  printf '%s\n' "$report" | sed -n 's/^\([^: ]*\):[0-9]*:[0-9]*: error: code should be clang-formatted.*/  \1/p' | uniq
  echo "lint: the first differences:"
  printf '%s\n' "$report" | head -n 40
fi

# ---- Python: ruff check (the excluded paths are in pyproject.toml)
if ! "$PYTHON" -m ruff --version >/dev/null 2>&1; then
  echo "lint: ruff not found for $PYTHON (bash scripts/install-deps.sh installs the pinned version)" >&2
  exit 1
fi
if ((fix)); then
  "$PYTHON" -m ruff check --no-cache --fix --quiet . || true
fi
if ! "$PYTHON" -m ruff check --no-cache --output-format concise .; then
  status=1
  echo "lint: ruff check found the problems above (some are fixed by: bash scripts/lint.sh --fix)"
fi

if ((status == 0)); then
  echo "lint: ${#files[@]} C++ files clang-formatted; Python passes ruff check"
fi
exit "$status"
