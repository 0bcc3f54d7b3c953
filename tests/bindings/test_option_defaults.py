"""One source for every default: the C++ option structs. The CLI, the native module and the Python
wrappers must resolve the same options when nothing is given, and each flag must reach the same
field as the Python keyword of the same meaning."""

import inspect
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

import graft

GRAFT = os.environ.get("GRAFT_BIN", "graft")
DATA = Path(os.environ.get("GRAFT_TEST_DATA", Path(__file__).resolve().parents[1] / "data"))
MODELS = Path(os.environ.get("GRAFT_MODELS_DIR", Path(__file__).resolve().parents[2] / "models"))
BUNDLED = MODELS / "gemma4_facts"
REQUESTS = DATA / "facts" / "requests.json"


def graft_cli(*args):
    result = subprocess.run([GRAFT, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"graft {' '.join(map(str, args))} exited {result.returncode}: {result.stderr}"
    return result.stdout


def dry_run(*flags):
    out = json.loads(graft_cli("edit", BUNDLED, "--requests", REQUESTS, "--limit", 1, "--dry-run", *flags))
    return out["method"], out["options"]


def help_defaults(command):
    """{flag: default} for every option whose help shows a default (CLI11 writes "--flag TYPE=value")."""
    text = graft_cli(command, "--help")
    return dict(re.findall(r"^\s+(--[\w-]+) [^=\n]*=(\S+)", text, flags=re.MULTILINE))


@pytest.mark.parametrize("function", [graft.rome, graft.memit, graft.crown_scan, graft.collect_stats, graft.evaluate])
def test_python_wrappers_restate_no_default(function):
    # Every tunable keyword defaults to None, meaning "graft's default", read from the C++ struct.
    restated = {name: p.default for name, p in inspect.signature(function).parameters.items()
                if p.kind == p.KEYWORD_ONLY and name != "stats" and p.default is not None}
    assert restated == {}


def test_python_resolves_the_cpp_defaults():
    assert graft.rome_options().to_dict() == graft.RomeOptions().to_dict()
    assert graft.memit_options().to_dict() == graft.MemitOptions().to_dict()
    assert graft.crown_scan_options().to_dict() == graft.CrownScanOptions().to_dict()


def test_the_defaults_are_the_published_settings():
    rome, memit = graft.RomeOptions(), graft.MemitOptions()
    assert (rome.value.steps, rome.value.learning_rate, rome.value.weight_decay, rome.value.kl_factor,
            rome.value.clamp_norm_factor, rome.templates) == (20, 0.5, 0.5, 0.0625, 4.0, [(5, 10), (10, 10)])
    assert (memit.value.steps, memit.value.clamp_norm_factor, memit.covariance_weight, memit.templates) == \
        (25, 0.75, 15000.0, [(10, 5)])
    assert rome.fact_token == memit.fact_token == "last" and rome.consistent_keys and not rome.through_update


def test_cli_edit_resolves_the_cpp_defaults():
    assert dry_run("--method", "rome", "--layers", 0) == ("rome", graft.rome_options(layer=0).to_dict())
    assert dry_run("--method", "memit", "--layers", "0-1") == ("memit", graft.memit_options(layers=[0, 1]).to_dict())


def test_cli_flags_and_python_keywords_set_the_same_fields():
    shared = dict(steps=7, learning_rate=0.25, clamp_norm_factor=2.5, kl_factor=0.125, bare_weight=0.4,
                  fact_token="subject", traced_tokens=2)
    flags = ["--steps", 7, "--lr", 0.25, "--clamp", 2.5, "--kl-factor", 0.125, "--bare-weight", 0.4,
             "--fact-token", "subject", "--traced-tokens", 2]
    rome = graft.rome_options(layer=1, consistent_keys=False, through_update=True, leakage_weight=2.0, **shared)
    assert dry_run("--method", "rome", "--layers", 1, "--original-keys", "--through-update", "--leakage-weight", 2,
                   *flags) == ("rome", rome.to_dict())
    memit = graft.memit_options(layers=[0, 1, 2], covariance_weight=5000.0, targets="joint", **shared)
    assert dry_run("--method", "memit", "--layers", "0-2", "--lambda", 5000, "--memit-targets", "joint",
                   *flags) == ("memit", memit.to_dict())
    # A flag given its default's opposite and back again lands on the default.
    assert dry_run("--method", "rome", "--layers", 0, "--no-through-update", "--consistent-keys")[1] == \
        graft.rome_options(layer=0).to_dict()


def test_cli_help_prints_the_cpp_defaults():
    stats = graft.StatsOptions()
    assert {k: help_defaults("stats")[k] for k in ("--max-tokens", "--window", "--batch-size")} == \
        {"--max-tokens": str(stats.max_tokens), "--window": str(stats.window), "--batch-size": str(stats.batch_size)}
    crown = graft.CrownScanOptions()
    shown = help_defaults("crown-scan")
    assert (int(shown["--samples"]), float(shown["--noise"]), int(shown["--seed"]), int(shown["--window"])) == \
        (crown.tracing.samples, crown.tracing.noise, crown.tracing.seed, crown.window)
    assert int(help_defaults("eval")["--batch-size"]) == graft.EvaluateOptions().batch_size


def test_crown_scan_from_python_and_cli_run_the_same_options():
    request = json.loads(REQUESTS.read_text())[0]
    model = graft.load(BUNDLED)
    python = graft.crown_scan(model, request["prompt"], request["subject"]).to_dict()
    cli = json.loads(graft_cli("crown-scan", BUNDLED, "--prompt", request["prompt"], "--subject", request["subject"],
                               "--json"))
    assert python["options"] == cli["options"]
    assert python["picked_layer"] == cli["picked_layer"]
