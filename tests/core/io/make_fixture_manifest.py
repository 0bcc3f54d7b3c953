#!/usr/bin/env python3
"""Writes fixture_manifest.tsv: what Python's safetensors package reads from every
tests/data/hf-parity/*/{model,reference}.safetensors, one line per tensor, in header order:

    <file relative to tests/data>  <name>  <dtype>  <shape, comma-separated>  <crc32 of the bytes, hex>

safetensors_read_test.cpp checks graft::io against it. Rerun after changing a fixture:
    python3 tests/core/io/make_fixture_manifest.py
"""
import json
import pathlib
import struct
import zlib

from safetensors import safe_open

HERE = pathlib.Path(__file__).resolve().parent
DATA = HERE.parent.parent / "data"


def header_order(path):
    # safe_open().keys() is sorted; the manifest records the order the header lists them in.
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    return [name for name in header if name != "__metadata__"]


def main():
    lines = []
    for path in sorted(DATA.glob("hf-parity/*/*.safetensors")):
        relative = path.relative_to(DATA).as_posix()
        with safe_open(str(path), framework="np") as f:
            for name in header_order(path):
                view = f.get_slice(name)
                data = f.get_tensor(name).tobytes()
                shape = ",".join(str(d) for d in view.get_shape())
                lines.append(f"{relative}\t{name}\t{view.get_dtype()}\t{shape}\t{zlib.crc32(data):08x}")
    (HERE / "fixture_manifest.tsv").write_text("\n".join(lines) + "\n")
    print(f"{len(lines)} tensors")


if __name__ == "__main__":
    main()
