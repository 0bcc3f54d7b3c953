"""The `graft` command-line program, as a user runs it: output, JSON, and exit codes."""

import json
import os
import subprocess
from pathlib import Path

import pytest

GRAFT = os.environ.get("GRAFT_BIN", "graft")
DATA = Path(os.environ.get("GRAFT_TEST_DATA", Path(__file__).resolve().parents[1] / "data"))
MODELS = Path(os.environ.get("GRAFT_MODELS_DIR", Path(__file__).resolve().parents[2] / "models"))
BUNDLED = MODELS / "gemma4_facts"


def graft(*args, check=True):
    result = subprocess.run([GRAFT, *map(str, args)], capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"graft {' '.join(map(str, args))} exited {result.returncode}: {result.stderr}")
    return result


def test_info_json_reports_per_layer_widths_of_the_official_e2b_config(tmp_path):
    model = tmp_path / "e2b"
    model.mkdir()
    (model / "config.json").write_text((DATA / "configs" / "gemma-4-E2B-it.config.json").read_text())
    info = json.loads(graft("info", model, "--json").stdout)
    assert info["family"] == "gemma4" and info["num_layers"] == 35
    widths = [layer["mlp_width"] for layer in info["layers"]]
    assert widths == [6144] * 15 + [12288] * 20
    assert info["layers"][15]["kv_source"] == 13 and info["layers"][19]["kv_source"] == 14
    assert info["layers"][4]["head_dim"] == 512 and info["layers"][0]["head_dim"] == 256


def test_info_table_on_the_bundled_model():
    out = graft("info", BUNDLED).stdout
    assert "family       gemma4" in out
    assert "mlp_width" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [int(r[-1]) for r in rows] == [384] * 4 + [768] * 4


@pytest.mark.parametrize("args", [
    ["info", "/nonexistent/model"],
    ["info"],
    ["run", "/nonexistent/model", "--prompt", "x"],
    ["info", "--no-such-flag", "x"],
])
def test_bad_input_is_one_line_and_exit_code_2(args):
    result = graft(*args, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip(), "an error message is expected"


def test_bad_config_names_the_file_and_exits_2(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "mamba", "num_hidden_layers": 2}')
    result = graft("info", tmp_path, check=False)
    assert result.returncode == 2
    assert "config.json" in result.stderr and "mamba" in result.stderr and "llama" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_hooks_lists_names_the_model_offers():
    names = graft("hooks", BUNDLED).stdout.split()
    assert names[0] == "hook_embed" and names[-1] == "hook_logits"
    assert "blocks.7.mlp.hook_post" in names
    assert "blocks.5.attn.hook_k" not in names  # KV-shared layer


def test_run_shows_the_fact_the_bundled_model_knows():
    facts = json.loads((DATA / "facts" / "requests.json").read_text())
    request = facts[0]
    prompt = request["prompt"].replace("{}", request["subject"])
    out = graft("run", BUNDLED, "--prompt", prompt, "--top-k-show", "3").stdout
    lines = out.splitlines()
    assert lines[0].split() == ["rank", "prob", "id", "token"]
    top = lines[1]
    assert request["target_true"].strip().startswith(top.split('"')[1].strip()), out


def test_run_generates_a_continuation():
    out = graft("run", BUNDLED, "--prompt", "The capital of", "--max-new-tokens", "4").stdout
    assert out.startswith("The capital of")
    assert len(out.strip()) > len("The capital of")


def test_bench_measures_only_the_sections_asked_for():
    # Figures are not checked (a benchmark is not a timed test): which ones are measured is.
    result = graft("bench", "--models", "gemma4-facts", "--sections", "decode,hooks", "--repeats", "1",
                   "--threads", "1", "--json")
    [model] = json.loads(result.stdout)["results"]
    assert model["model"] == "gemma4-facts"
    assert {"decode", "hooks", "memory", "gemm_flops_per_s", "read_bytes_per_s"} <= model.keys()
    assert not {"prefill", "statistics", "key_statistics", "rome", "memit"} & model.keys()
    assert model["decode"]["tokens_per_s"] > 0 and model["decode"]["bytes_per_token"] > 0


def test_bench_refuses_an_unknown_section():
    result = graft("bench", "--sections", "decode,speed", check=False)
    assert result.returncode == 2
    assert "--sections" in result.stderr and "speed" in result.stderr


@pytest.mark.parametrize("device", ["tpu:9", "meta", "cuda:64"])
def test_bench_refuses_a_device_it_cannot_use_before_writing_anything(device):
    result = graft("bench", "--device", device, check=False)
    assert result.returncode == 2
    assert "--device" in result.stderr and device in result.stderr
    assert "writing random weights" not in result.stderr
