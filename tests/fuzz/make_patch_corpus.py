#!/usr/bin/env python3
"""Writes the small generated seeds of tests/fuzz/corpus/patch (fuzz_patch's corpus).

Valid graft patches (docs/patch-format.md) for a made-up model with tiny tensors, so that every seed
is far below the fuzz run's -max_len and the fuzzer starts from files that pass every check: one
low-rank entry per tensor or a dense one, both layouts, and one file whose data starts at an odd
address (valid, but its floats cannot be read in place). The corpus also holds one patch that
`graft edit` wrote (rome_gemma4_facts.safetensors). Standard library only; deterministic.

    python3 tests/fuzz/make_patch_corpus.py
"""
import hashlib
import json
import os
import random
import struct

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "patch")


def floats(rng, n):
    return [round(rng.uniform(-1, 1), 3) for _ in range(n)]


def patch_file(entries, pad=True):
    """entries: (tensor, layer, layout, out, in, rank or None for dense). Returns the file's bytes."""
    rng = random.Random(len(entries) * 7 + (0 if pad else 1))
    body, tensors, header_entries, base = [], {}, [], {}
    for tensor, layer, layout, out, inner, rank in entries:
        parts = [(".left", [out, rank]), (".right", [inner, rank])] if rank else [(".delta", [out, inner])]
        for suffix, shape in parts:
            data = struct.pack("<%df" % (shape[0] * shape[1]), *floats(rng, shape[0] * shape[1]))
            start = sum(len(b) for b in body)
            tensors[tensor + suffix] = {"dtype": "F32", "shape": shape, "data_offsets": [start, start + len(data)]}
            body.append(data)
        entry = {"tensor": tensor, "layer": layer, "kind": "low_rank" if rank else "dense",
                 "shape": [out, inner], "layout": layout}
        if rank:
            entry["rank"] = rank
        header_entries.append(entry)
        stored = [inner, out] if layout == "in_out" else [out, inner]
        base[tensor] = {"sha256": hashlib.sha256(tensor.encode()).hexdigest(), "dtype": "BF16", "shape": stored}
    header = {"format": "graft.patch", "format_version": 1, "graft_version": "0.1.0",
              "created": "2026-01-01T00:00:00Z",
              "base": {"model_type": "tiny", "family": "llama", "tensors": base},
              "method": "rome", "hyperparameters": {"seed": 1}, "requests": [], "notes": None,
              "entries": header_entries, "body_sha256": hashlib.sha256(b"".join(body)).hexdigest()}
    outer = {"__metadata__": {"graft.patch": json.dumps(header, sort_keys=True, separators=(",", ":"))}}
    outer.update(tensors)
    text = json.dumps(outer, separators=(",", ":")).encode()
    # Spaces after the JSON: to 8 bytes as graft writes, or to an odd data address.
    text += b" " * ((-len(text)) % 8 if pad else (1 - len(text)) % 4)
    return struct.pack("<Q", len(text)) + text + b"".join(body)


def main():
    os.makedirs(CORPUS, exist_ok=True)
    seeds = {
        "low_rank_two_tensors.safetensors": patch_file([
            ("model.layers.0.mlp.down_proj.weight", 0, "out_in", 4, 6, 1),
            ("model.layers.1.mlp.down_proj.weight", 1, "out_in", 4, 6, 2)]),
        "dense_in_out.safetensors": patch_file([("h.2.mlp.c_proj.weight", 2, "in_out", 3, 5, None)]),
        "mixed_unaligned.safetensors": patch_file([
            ("model.layers.3.mlp.down_proj.weight", 3, "out_in", 2, 3, None),
            ("model.layers.4.mlp.down_proj.weight", 4, "out_in", 2, 8, 3)], pad=False),
    }
    for name, data in seeds.items():
        with open(os.path.join(CORPUS, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
