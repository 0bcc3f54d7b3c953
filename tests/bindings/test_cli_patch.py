"""`graft patch show|apply|revert|verify` as a user runs it: output, files written, exit codes.

The patch files here are written by this test in plain Python (numpy + hashlib), following
docs/patch-format.md only: a second, independent writer of the format.
"""

import hashlib
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

GRAFT = os.environ.get("GRAFT_BIN", "graft")
DATA = Path(os.environ.get("GRAFT_TEST_DATA", Path(__file__).resolve().parents[1] / "data"))
GEMMA4 = DATA / "hf-parity" / "gemma4_e2b_like"  # layer 5 is double-wide: [64, 192]
LLAMA = DATA / "hf-parity" / "llama3"


def graft(*args):
    return subprocess.run([GRAFT, *map(str, args)], capture_output=True, text=True, timeout=300)


def read_safetensors(path):
    """(header dict, data bytes) of a safetensors file."""
    raw = Path(path).read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + length]), raw[8 + length:]


def stored_tensor(path, name):
    header, data = read_safetensors(path)
    entry = header[name]
    begin, end = entry["data_offsets"]
    assert entry["dtype"] == "F32"
    return np.frombuffer(data[begin:end], dtype="<f4").reshape(entry["shape"]), data[begin:end]


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    offset, blobs = 0, []
    for name, array in tensors:
        blob = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def make_patch(path, model_dir, layer, model_type, family, rank=1, seed=0, scale=0.5, version=1):
    """A low-rank patch for layer `layer`'s down projection, as docs/patch-format.md describes it."""
    config = json.loads((model_dir / "config.json").read_text())
    tensor = f"model.layers.{layer}.mlp.down_proj.weight"
    weight, weight_bytes = stored_tensor(model_dir / "model.safetensors", tensor)
    out, width = weight.shape
    assert out == config.get("hidden_size", out)
    rng = np.random.default_rng(seed)
    left = (rng.standard_normal((out, rank)) * scale).astype("<f4")
    right = rng.standard_normal((width, rank)).astype("<f4")
    header = {
        "format": "graft.patch", "format_version": version, "graft_version": "test", "created": "2026-01-01T00:00:00Z",
        "base": {"model_type": model_type, "family": family,
                 "tensors": {tensor: {"sha256": hashlib.sha256(weight_bytes).hexdigest(), "dtype": "F32",
                                      "shape": [out, width]}}},
        "method": "pytest", "hyperparameters": {"seed": seed}, "requests": [{"prompt": "p", "target": " t"}],
        "notes": None,
        "entries": [{"tensor": tensor, "layer": layer, "kind": "low_rank", "shape": [out, width], "layout": "out_in",
                     "rank": rank}],
        "body_sha256": hashlib.sha256(left.tobytes() + right.tobytes()).hexdigest(),
    }
    write_safetensors(path, [(tensor + ".left", left), (tensor + ".right", right)], {"graft.patch": json.dumps(header)})
    return tensor, left.astype(np.float64) @ right.astype(np.float64).T


def tree_hashes(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


@pytest.fixture
def model(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(GEMMA4 / name, target / name)
    return target


def test_show_reads_a_patch_written_by_another_tool(tmp_path, model):
    patch = tmp_path / "p.safetensors"
    tensor, _ = make_patch(patch, model, 5, "gemma4_text", "gemma4", rank=2)
    result = graft("patch", "show", patch)
    assert result.returncode == 0, result.stderr
    assert tensor in result.stdout and "low_rank" in result.stdout and "[64, 192]" in result.stdout
    assert "pytest" in result.stdout and "gemma4_text" in result.stdout
    header = json.loads(graft("patch", "show", patch, "--json").stdout)
    assert header["entries"][0]["rank"] == 2 and header["format_version"] == 1


def test_apply_verify_revert_round_trip(tmp_path, model):
    patch = tmp_path / "p.safetensors"
    tensor, delta = make_patch(patch, model, 5, "gemma4_text", "gemma4")
    before = tree_hashes(model)
    out = tmp_path / "out"

    result = graft("patch", "apply", model, patch, "-o", out)
    assert result.returncode == 0, result.stderr
    assert tree_hashes(model) == before, "the input directory must not change"
    base, _ = stored_tensor(model / "model.safetensors", tensor)
    patched, _ = stored_tensor(out / "model.safetensors", tensor)
    expected = base.astype(np.float64) + delta
    assert np.all(np.abs(patched - expected) <= np.abs(expected) * 2.0 ** -24 + 1e-30)
    record = json.loads((out / "graft_patches.json").read_text())
    assert [a["source"] for a in record["applied"]] == ["p.safetensors"]

    verified = graft("patch", "verify", out, patch)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "applied      yes" in verified.stdout
    report = json.loads(graft("patch", "verify", out, patch, "--json").stdout)
    assert report["belongs"] and report["applied"] and report["max_error"] <= report["tolerance"]
    not_applied = graft("patch", "verify", model, patch)
    assert not_applied.returncode == 1 and "applied      no" in not_applied.stdout

    reverted = tmp_path / "reverted"
    assert graft("patch", "revert", out, patch, "-o", reverted).returncode == 0
    assert tree_hashes(reverted) == before
    assert graft("patch", "verify", reverted, patch).returncode == 1


def test_second_patch_stacks_on_a_patched_directory(tmp_path, model):
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    make_patch(first, model, 5, "gemma4_text", "gemma4", seed=1)
    make_patch(second, model, 5, "gemma4_text", "gemma4", seed=2)
    assert graft("patch", "apply", model, first, "-o", tmp_path / "a").returncode == 0
    result = graft("patch", "apply", tmp_path / "a", second, "-o", tmp_path / "ab")
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "ab" / "graft_patches.json").read_text())
    assert [a["source"] for a in record["applied"]] == ["a.safetensors", "b.safetensors"]
    assert graft("patch", "verify", tmp_path / "ab", first).returncode == 0
    assert graft("patch", "verify", tmp_path / "ab", second).returncode == 0


def one_line_error(result):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("graft: error:"), result.stderr
    return lines[0]


def test_bad_patch_files_exit_2_and_write_nothing(tmp_path, model):
    good = tmp_path / "good.safetensors"
    make_patch(good, model, 5, "gemma4_text", "gemma4")
    raw = good.read_bytes()

    flipped = tmp_path / "flipped.safetensors"
    flipped.write_bytes(raw[:-3] + bytes([raw[-3] ^ 1]) + raw[-2:])
    assert "checksum" in one_line_error(graft("patch", "show", flipped))

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(raw[:-50])
    one_line_error(graft("patch", "show", truncated))

    future = tmp_path / "future.safetensors"
    make_patch(future, model, 5, "gemma4_text", "gemma4", version=2)
    assert "version 2" in one_line_error(graft("patch", "show", future))

    for bad in (flipped, truncated, future):
        one_line_error(graft("patch", "apply", model, bad, "-o", tmp_path / "out"))
        assert not (tmp_path / "out").exists()


def test_patch_for_another_model_is_refused(tmp_path, model):
    foreign = tmp_path / "llama.safetensors"
    make_patch(foreign, LLAMA, 1, "llama", "llama")
    assert "does not belong" in one_line_error(graft("patch", "apply", model, foreign, "-o", tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    result = graft("patch", "verify", model, foreign)
    assert result.returncode == 1 and "belongs      no" in result.stdout

    # Same architecture, different weights: the fingerprint differs.
    other = tmp_path / "other.safetensors"
    make_patch(other, model, 5, "gemma4_text", "gemma4")
    header = json.loads(read_safetensors(other)[0]["__metadata__"]["graft.patch"])
    tensor = header["entries"][0]["tensor"]
    header["base"]["tensors"][tensor]["sha256"] = "0" * 64
    left, right = (np.frombuffer(read_safetensors(other)[1], dtype="<f4")[:64].reshape(64, 1),
                   np.frombuffer(read_safetensors(other)[1], dtype="<f4")[64:].reshape(192, 1))
    write_safetensors(other, [(tensor + ".left", left), (tensor + ".right", right)],
                      {"graft.patch": json.dumps(header)})
    assert "fingerprint" in one_line_error(graft("patch", "apply", model, other, "-o", tmp_path / "out"))


def test_existing_output_unrecorded_revert_and_bad_arguments(tmp_path, model):
    patch = tmp_path / "p.safetensors"
    make_patch(patch, model, 5, "gemma4_text", "gemma4")
    (tmp_path / "taken").mkdir()
    assert "--force" in one_line_error(graft("patch", "apply", model, patch, "-o", tmp_path / "taken"))
    assert graft("patch", "apply", model, patch, "-o", tmp_path / "taken", "--force").returncode == 0
    assert "nothing to revert" in one_line_error(graft("patch", "revert", model, patch, "-o", tmp_path / "r"))
    assert graft("patch", "apply", model, patch).returncode == 2          # no -o
    assert graft("patch").returncode == 2                                  # no sub-subcommand
    assert graft("patch", "verify", "/nonexistent/model", patch).returncode == 2
