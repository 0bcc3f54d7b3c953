"""`graft crown-scan` and `graft eval` as a user runs them: tables, JSON, exit codes."""

import json
import os
import subprocess
from pathlib import Path

import pytest

GRAFT = os.environ.get("GRAFT_BIN", "graft")
DATA = Path(os.environ.get("GRAFT_TEST_DATA", Path(__file__).resolve().parents[1] / "data"))
MODELS = Path(os.environ.get("GRAFT_MODELS_DIR", Path(__file__).resolve().parents[2] / "models"))
BUNDLED = MODELS / "gemma4_facts"
REQUESTS = DATA / "facts" / "requests.json"


def graft(*args, check=True):
    result = subprocess.run([GRAFT, *map(str, args)], capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"graft {' '.join(map(str, args))} exited {result.returncode}: {result.stderr}")
    return result


def capital_request():
    return next(r for r in json.loads(REQUESTS.read_text()) if r["subject"] == "Quianeimtum")


def test_crown_scan_json_covers_every_layer_and_picks_a_live_one():
    request = capital_request()
    out = json.loads(graft("crown-scan", BUNDLED, "--prompt", request["prompt"], "--subject", request["subject"],
                           "--json").stdout)
    assert out["expect_is_model_answer"] is True
    assert request["target_true"].startswith(out["expect_token_text"])
    assert [layer["mlp_width"] for layer in out["layers"]] == [384] * 4 + [768] * 4
    assert [layer["reaches_answer"] for layer in out["layers"]] == [True] * 3 + [False] * 5
    assert out["picked_layer"] == out["mlp_trace_layer"] and out["picked_layer"] < 3
    assert out["corrupted_prob"] < out["baseline_prob"]
    best = out["layers"][out["trace_layer"]]
    assert best["indirect_effect"] == pytest.approx(best["traced_prob"] - out["corrupted_prob"])


def test_crown_scan_table_and_a_multi_token_expect():
    request = capital_request()
    out = graft("crown-scan", DATA / "facts" / "llama_facts", "--prompt", request["prompt"], "--subject",
                request["subject"], "--expect", request["target_true"].strip() + " Works", "--samples", "3").stdout
    assert "the first of the" in out
    rows = [line.split() for line in out.splitlines() if line[:5].strip().isdigit()]
    assert [int(r[0]) for r in rows] == list(range(6))
    assert "picked layer" in out and "<- pick" in out


def test_crown_scan_seed_makes_the_trace_repeatable():
    request = capital_request()
    args = ["crown-scan", BUNDLED, "--prompt", request["prompt"], "--subject", request["subject"], "--json",
            "--samples", "4"]
    first, again = (json.loads(graft(*args).stdout) for _ in range(2))
    other = json.loads(graft(*args, "--seed", "9").stdout)
    assert [layer["traced_prob"] for layer in first["layers"]] == [layer["traced_prob"] for layer in again["layers"]]
    assert first["corrupted_prob"] != other["corrupted_prob"]


@pytest.mark.parametrize("args, named", [
    (["--prompt", "The capital of Quianeimtum is", "--subject", "Quianeimtum"], "prompt"),
    (["--prompt", "The capital of {} is", "--subject", "Quianeimtum", "--expect", " "], "expect"),
    (["--prompt", "The capital of {} is", "--subject", "Quianeimtum", "--samples", "0"], "samples"),
])
def test_crown_scan_bad_input_is_one_line_and_exit_code_2(args, named):
    result = graft("crown-scan", BUNDLED, *args, check=False)
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_crown_scan_without_a_subject_exits_2():
    result = graft("crown-scan", BUNDLED, "--prompt", "The capital of {} is", check=False)
    assert result.returncode == 2 and "--subject" in result.stderr


def test_eval_of_an_unedited_model_prefers_the_true_facts():
    out = json.loads(graft("eval", DATA / "facts" / "gpt2_facts", "--requests", REQUESTS, "--limit", "20",
                           "--json", "--per-request").stdout)
    summary = out["summary"]
    assert summary["requests"] == 20 and len(out["requests"]) == 20
    assert summary["efficacy"]["success"] == 0.0 and summary["paraphrase"]["success"] == 0.0
    assert summary["neighborhood"]["success"] == 1.0
    assert summary["efficacy"]["magnitude"] < -0.5
    row = out["requests"][0]
    assert row["rewrite"]["p_rival"] > row["rewrite"]["p_wanted"]


def test_eval_table_on_the_bundled_model():
    out = graft("eval", BUNDLED, "--requests", REQUESTS, "--limit", "5").stdout
    values = {" ".join(line.split()[:2]): float(line.split()[-1]) for line in out.splitlines()[1:11]}
    assert values["efficacy ES"] == 0.0 and values["neighborhood NS"] == 100.0
    assert "5 requests" in out


def test_eval_bad_requests_file_exits_2(tmp_path):
    bad = tmp_path / "requests.json"
    bad.write_text('[{"prompt": "no slot", "subject": "X", "target_new": "Y"}]')
    result = graft("eval", BUNDLED, "--requests", bad, check=False)
    assert result.returncode == 2 and "prompt" in result.stderr
    missing = graft("eval", BUNDLED, "--requests", tmp_path / "absent.json", check=False)
    assert missing.returncode == 2 and "absent.json" in missing.stderr


def test_eval_method_without_statistics_exits_2_before_any_work():
    result = graft("eval", BUNDLED, "--requests", REQUESTS, "--method", "rome", check=False)
    assert result.returncode == 2 and "--stats" in result.stderr and result.stdout == ""


@pytest.mark.parametrize("value", ["1.5", "-0.1", "half"])
def test_eval_bare_weight_outside_0_1_exits_2_naming_it(value):
    result = graft("eval", BUNDLED, "--requests", REQUESTS, "--method", "rome", "--stats", "absent.safetensors",
                   "--bare-weight", value, check=False)
    assert result.returncode == 2 and "--bare-weight" in result.stderr and result.stdout == ""


def test_eval_through_update_is_a_rome_option(tmp_path):
    result = graft("eval", BUNDLED, "--requests", REQUESTS, "--limit", "1", "--stats", tmp_path / "absent.safetensors",
                   "--method", "memit", "--layers", "0-1", "--through-update", check=False)
    assert result.returncode == 2 and "--through-update" in result.stderr and "--memit-targets joint" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("extra", [["--method", "memit", "--leakage-weight", "1"],
                                   ["--method", "rome", "--leakage-weight", "-1"]])
def test_eval_leakage_weight_needs_rome_or_joint_memit_and_is_not_negative(extra, tmp_path):
    stats = tmp_path / "stats.safetensors"
    graft("stats", BUNDLED, "--corpus", MODELS / "facts_corpus.txt", "--layers", "0-1", "--max-tokens", "500",
          "-o", stats)
    result = graft("eval", BUNDLED, "--requests", REQUESTS, "--limit", "1", "--stats", stats, "--layers", "0-1", *extra,
                   check=False)
    assert result.returncode == 2 and "--leakage-weight" in result.stderr, result.stderr
