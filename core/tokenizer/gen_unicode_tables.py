#!/usr/bin/env python3
"""Generate core/tokenizer/unicode_tables.cpp: the Unicode data the tokenizer needs.

Run from the repository root:

    python3 -m pip install --target /tmp/ud2 unicodedata2==16.0.0
    PYTHONPATH=/tmp/ud2 python3 core/tokenizer/gen_unicode_tables.py
    PYTHONPATH=/tmp/ud2 python3 core/tokenizer/gen_unicode_tables.py --verify   # needs `tokenizers`

Which Unicode version, and why. The goal is exact agreement with HuggingFace `tokenizers` 0.23.3,
which takes its Unicode data from two different places:

* The pre-tokenizer regexes (`\\p{L}`, `\\p{N}`, `\\s`) run on Oniguruma 6.9.10 (the `onig` crate),
  whose tables are Unicode 16.0. So the category flags below come from Unicode 16.0, via the
  `unicodedata2` 16.0.0 package (Python 3.11's own `unicodedata` is only Unicode 14.0). `\\s` in
  Oniguruma is the White_Space property. `--verify` checks all 0x110000 code points against
  `tokenizers` itself.
* The NFC/NFD normalizers use the `unicode-normalization-alignments` crate, whose tables are much
  older (Unicode 9.0): characters added later have no decomposition and combining class 0 there.
  We take the normalization data from the same Unicode 16.0 source and drop the properties of the
  characters listed in NOT_IN_HF_NORMALIZATION_DATA (found, and re-checked by `--verify`, by
  comparing NFD of every code point and the reordering of every combining mark with `tokenizers`).
* Added tokens with `single_word` use the Rust `regex` crate's `\\w` (Unicode 16.0):
  Alphabetic + Mark + Decimal_Number + Connector_Punctuation + Join_Control. Alphabetic is
  L + Nl + Other_Alphabetic; Other_Alphabetic is read from the `regex` module (newer Unicode)
  and restricted to code points assigned in 16.0.
"""

import argparse
import os
import sys

import unicodedata2 as ud

FLAG_LETTER = 1      # \p{L}
FLAG_NUMBER = 2      # \p{N}
FLAG_WHITESPACE = 4  # \s of Oniguruma and of Rust regex: the White_Space property
FLAG_WORD = 8        # \w of the Rust regex crate

# White_Space (PropList.txt); stable since Unicode 6.3.
WHITE_SPACE = [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
               0x2028, 0x2029, 0x202F, 0x205F, 0x3000]

# Normalization properties that HF tokenizers' Unicode 9.0 normalization tables do not have:
# canonical decompositions added after 9.0 ...
NEW_DECOMPOSITIONS = [0x105C9, 0x105E4, 0x11383, 0x11385, 0x1138E, 0x11391, 0x113C5, 0x113C7,
                      0x113C8, 0x11938, *range(0x16121, 0x16129), 0x16D68, 0x16D69, 0x16D6A]
# ... and non-zero canonical combining classes of marks added after 9.0.
NEW_COMBINING_MARKS = [
    0x7FD, *range(0x897, 0x8A0), *range(0x8CA, 0x8D4), 0x9FE, 0xC3C, 0xD3B, 0xD3C, 0xEBA, 0x1715,
    *range(0x1ABF, 0x1ACF), *range(0x1DF6, 0x1DFB), 0xA82C, *range(0x10D24, 0x10D28),
    *range(0x10D69, 0x10D6E), 0x10EAB, 0x10EAC, 0x10EFD, 0x10EFE, 0x10EFF, *range(0x10F46, 0x10F51),
    *range(0x10F82, 0x10F86), 0x11070, 0x1133B, 0x113CE, 0x113CF, 0x113D0, 0x1145E, 0x11839,
    0x1183A, 0x1193D, 0x1193E, 0x11943, 0x119E0, 0x11A34, 0x11A47, 0x11A99, 0x11D42, 0x11D44,
    0x11D45, 0x11D97, 0x11F41, 0x11F42, 0x1612F, 0x16FF0, 0x16FF1, 0x1E08F,
    *range(0x1E130, 0x1E137), 0x1E2AE, *range(0x1E2EC, 0x1E2F0), *range(0x1E4EC, 0x1E4F0),
    0x1E5EE, 0x1E5EF]
NOT_IN_HF_NORMALIZATION_DATA = set(NEW_DECOMPOSITIONS) | set(NEW_COMBINING_MARKS)

SURROGATES = range(0xD800, 0xE000)


def code_points():
    return (c for c in range(0x110000) if c not in SURROGATES)


def other_alphabetic():
    import regex  # the third-party module: it knows derived properties
    pattern = regex.compile(r"\p{Other_Alphabetic}")
    return {c for c in code_points() if ud.category(chr(c)) != "Cn" and pattern.match(chr(c))}


def category_flags():
    other_alpha = other_alphabetic()
    white = set(WHITE_SPACE)
    flags = {}
    for c in code_points():
        cat = ud.category(chr(c))
        f = 0
        if cat[0] == "L":
            f |= FLAG_LETTER
        if cat[0] == "N":
            f |= FLAG_NUMBER
        if c in white:
            f |= FLAG_WHITESPACE
        alphabetic = cat[0] == "L" or cat == "Nl" or c in other_alpha
        if alphabetic or cat[0] == "M" or cat in ("Nd", "Pc") or c in (0x200C, 0x200D):
            f |= FLAG_WORD
        if f:
            flags[c] = f
    return flags


def ranges_of(values):
    """Collapse {code point: value} into sorted (first, last, value) runs."""
    out = []
    for c in sorted(values):
        v = values[c]
        if out and out[-1][1] == c - 1 and out[-1][2] == v:
            out[-1][1] = c
        else:
            out.append([c, c, v])
    return out


def combining_classes():
    return {c: ud.combining(chr(c)) for c in code_points()
            if ud.combining(chr(c)) and c not in NOT_IN_HF_NORMALIZATION_DATA}


def canonical_decompositions():
    """Single-level canonical decompositions: {cp: (first, second or 0, composes_back)}."""
    out = {}
    for c in code_points():
        if c in NOT_IN_HF_NORMALIZATION_DATA or 0xAC00 <= c <= 0xD7A3:  # Hangul is algorithmic
            continue
        d = ud.decomposition(chr(c))
        if not d or d.startswith("<"):
            continue
        parts = [int(p, 16) for p in d.split()]
        assert len(parts) in (1, 2), hex(c)
        first, second = parts[0], parts[1] if len(parts) == 2 else 0
        # A primary composite is what canonical composition produces again from its pair.
        composes = second != 0 and ud.normalize("NFC", chr(first) + chr(second)) == chr(c)
        out[c] = (first, second, composes)
    return out


def emit(path):
    flags = category_flags()
    cat_ranges = ranges_of(flags)
    ccc_ranges = ranges_of(combining_classes())
    decomps = canonical_decompositions()
    lines = [
        "// Generated by core/tokenizer/gen_unicode_tables.py from Unicode 16.0.0 (unicodedata2 16.0.0).",
        "// Do not edit: regenerate. See the script for why these versions match HF tokenizers 0.23.3.",
        '#include "core/tokenizer/unicode_tables.h"',
        "",
        "namespace graft::tokenizer_detail {",
        "",
        "// (first, last, flags): 1 = \\p{L}, 2 = \\p{N}, 4 = White_Space, 8 = Rust regex \\w.",
        "const CategoryRange kCategoryRanges[] = {",
    ]
    lines += wrap([f"{{0x{a:X},0x{b:X},{v}}}" for a, b, v in cat_ranges])
    lines += ["};", f"const std::size_t kCategoryRangeCount = {len(cat_ranges)};", ""]
    lines += ["// (first, last, canonical combining class), as HF's Unicode 9.0 normalization data has them.",
              "const CccRange kCccRanges[] = {"]
    lines += wrap([f"{{0x{a:X},0x{b:X},{v}}}" for a, b, v in ccc_ranges])
    lines += ["};", f"const std::size_t kCccRangeCount = {len(ccc_ranges)};", ""]
    lines += ["// (code point, first, second or 0, 1 if canonical composition produces it again).",
              "const Decomposition kDecompositions[] = {"]
    lines += wrap([f"{{0x{c:X},0x{a:X},0x{b:X},{int(k)}}}" for c, (a, b, k) in sorted(decomps.items())])
    lines += ["};", f"const std::size_t kDecompositionCount = {len(decomps)};", "",
              "}  // namespace graft::tokenizer_detail", ""]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print(f"wrote {path}: {len(cat_ranges)} category ranges, {len(ccc_ranges)} ccc ranges, "
          f"{len(decomps)} decompositions")


def wrap(items, width=100):
    lines, line = [], ""
    for item in items:
        if len(line) + len(item) + 1 > width:
            lines.append(line.rstrip())
            line = ""
        line += item + ","
    if line:
        lines.append(line)
    return lines


def verify():
    """Compare the tables with HF tokenizers on every code point (takes ~1 minute)."""
    from tokenizers import Regex, normalizers, pre_tokenizers
    cps = list(code_points())
    text = "".join(chr(c) for c in cps)
    flags = category_flags()
    failures = 0
    for pattern, flag in ((r"\p{L}", FLAG_LETTER), (r"\p{N}", FLAG_NUMBER), (r"\s", FLAG_WHITESPACE)):
        covered = bytearray(len(cps))
        for _, (a, b) in pre_tokenizers.Split(Regex(pattern), "removed").pre_tokenize_str(text):
            covered[a:b] = b"\x01" * (b - a)
        onig = {cps[i] for i in range(len(cps)) if not covered[i]}
        ours = {c for c, f in flags.items() if f & flag}
        if onig != ours:
            failures += 1
            print(f"{pattern}: differs on", [hex(c) for c in sorted(onig ^ ours)][:20])
    nfd = normalizers.NFD()
    new_dec = [c for c in cps if nfd.normalize_str(chr(c)) != ud.normalize("NFD", chr(c))]
    if sorted(new_dec) != sorted(NEW_DECOMPOSITIONS):
        failures += 1
        print("NEW_DECOMPOSITIONS should be", [hex(c) for c in new_dec])
    new_ccc = []
    for c in cps:
        k = ud.combining(chr(c))
        if k:
            # A mark HF knows is moved in front of a following mark of lower class (or behind U+0301).
            probe = "a" + chr(c) + "\u0334" if k > 1 else "a\u0301" + chr(c)
            if nfd.normalize_str(probe) != ud.normalize("NFD", probe):
                new_ccc.append(c)
    if sorted(new_ccc) != sorted(NEW_COMBINING_MARKS):
        failures += 1
        print("NEW_COMBINING_MARKS should be", [hex(c) for c in new_ccc])
    print("verify:", "OK" if failures == 0 else f"{failures} table(s) differ")
    return failures == 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verify", action="store_true", help="compare with HF tokenizers instead")
    args = parser.parse_args()
    if ud.unidata_version != "16.0.0":
        sys.exit(f"need unicodedata2 16.0.0, found Unicode {ud.unidata_version}")
    if args.verify:
        sys.exit(0 if verify() else 1)
    emit(os.path.join(os.path.dirname(os.path.abspath(__file__)), "unicode_tables.cpp"))


if __name__ == "__main__":
    main()
