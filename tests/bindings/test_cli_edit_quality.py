"""Edit quality as `graft eval --method` measures it on the facts models (CounterFact-style scores).

The floors are the project's: ROME one edit at a time ES >= 99%, PS >= 90%, NS >= 95%; MEMIT all
edits at once ES >= 95%, PS >= 85%, NS >= 90%. They are asserted on the first requests of
requests.json (a subset that runs in CI time; ROME's leaves out the five whose target no model has
ever seen, as the README's "95 known" columns do, and a test of its own holds ROME to four of those
five on Llama and GPT-2), and only where they are met there;
elsewhere a test holds the model to what it reaches (the README's 100-request table says where the
floors are missed), so a regression still fails. MEMIT's floors are also asserted on all 100 requests
at once on GPT-2.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

GRAFT = os.environ.get("GRAFT_BIN", "graft")
DATA = Path(os.environ.get("GRAFT_TEST_DATA", Path(__file__).resolve().parents[1] / "data"))
MODELS = Path(os.environ.get("GRAFT_MODELS_DIR", Path(__file__).resolve().parents[2] / "models"))
REQUESTS = DATA / "facts" / "requests.json"
FACTS_MODELS = {"llama": DATA / "facts" / "llama_facts", "gpt2": DATA / "facts" / "gpt2_facts",
                "gemma4": MODELS / "gemma4_facts"}
# One thread: the runs are small, and the suite shares the machine with the other tests.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

# The settings the README's table uses (every one an option; the defaults are the published ones).
ROME = ["--method", "rome", "--layers", "0", "--fact-token", "subject", "--original-keys", "--steps", "100",
        "--bare-weight", "0.5", "--through-update"]
# Gemma 4 needs the heavier leakage term for its paraphrases (docs/editing-results.md: 88.9 at weight 1, 90.3 at 4).
ROME_LEAKAGE = {"llama": "1", "gpt2": "1", "gemma4": "4"}


def rome(model):
    return [*ROME, "--leakage-weight", ROME_LEAKAGE[model]]
MEMIT = ["--method", "memit", "--memit-targets", "joint", "--fact-token", "subject", "--lambda", "1000",
         "--steps", "50", "--clamp", "8", "--bare-weight", "0.7", "--leakage-weight", "1.2"]
MEMIT_LAYERS = {"llama": "0-2", "gpt2": "0-1", "gemma4": "0-1"}
# The values optimised before the solve (residual / per-layer targets), as docs/editing-results.md's earlier rows.
MEMIT_SPLIT = ["--method", "memit", "--fact-token", "subject", "--lambda", "10", "--steps", "50", "--clamp", "4",
               "--bare-weight", "0.5"]


def graft(*args):
    result = subprocess.run([GRAFT, *map(str, args)], capture_output=True, text=True, timeout=900, env=ENV)
    assert result.returncode == 0, f"graft {' '.join(map(str, args))} exited {result.returncode}: {result.stderr}"
    return result


@pytest.fixture(scope="module")
def stats(tmp_path_factory):
    out = {}
    for name, path in FACTS_MODELS.items():
        target = tmp_path_factory.mktemp("stats") / f"{name}.safetensors"
        graft("stats", path, "--corpus", MODELS / "facts_corpus.txt", "--layers", "0-2", "-o", target)
        out[name] = target
    return out


def scores(model, stats, limit, editor, requests=REQUESTS):
    out = json.loads(graft("eval", FACTS_MODELS[model], "--requests", requests, "--limit", limit, "--stats",
                           stats[model], "--json", *editor).stdout)
    assert out["before"]["efficacy"]["success"] == 0.0  # the models know the true facts
    summary = out["summary"]
    return (100 * summary["efficacy"]["success"], 100 * summary["paraphrase"]["success"],
            100 * summary["neighborhood"]["success"])


def split_by_target(tmp_path_factory):
    # Five of the hundred requests ask for a word that facts.json has only as an entity's name, never
    # in a fact: no model has ever seen it, and its tokens are pieces the model never continued.
    facts = json.loads((DATA / "facts" / "facts.json").read_text())
    answers = {fact["object"] for fact in facts["facts"]}
    requests = json.loads(REQUESTS.read_text())
    known = [r for r in requests if r["target_new"].strip() in answers]
    unseen = [r for r in requests if r["target_new"].strip() not in answers]
    assert len(unseen) == 5
    folder = tmp_path_factory.mktemp("requests")
    (folder / "known.json").write_text(json.dumps(known))
    (folder / "unseen.json").write_text(json.dumps(unseen))
    return folder / "known.json", folder / "unseen.json"


@pytest.fixture(scope="module")
def known_target_requests(tmp_path_factory):
    return split_by_target(tmp_path_factory)[0]


@pytest.fixture(scope="module")
def unseen_target_requests(tmp_path_factory):
    return split_by_target(tmp_path_factory)[1]


@pytest.mark.parametrize("model", ["llama", "gpt2", "gemma4"])
def test_rome_one_at_a_time_meets_the_floors(model, stats, known_target_requests):
    es, ps, ns = scores(model, stats, 10, rome(model), known_target_requests)
    assert es >= 99 and ps >= 90 and ns >= 95, (es, ps, ns)


@pytest.mark.parametrize("model", ["llama", "gpt2"])
def test_rome_through_its_update_teaches_words_never_seen(model, stats, unseen_target_requests):
    # Values optimised at the subject alone cannot make a model spell a word it never saw (the
    # continuation tokens are predicted at the target's own positions); through the update, which
    # acts there too, four of the five succeed on Llama and GPT-2 (docs/editing-results.md).
    through = scores(model, stats, 0, rome(model), unseen_target_requests)
    assert through[0] >= 80, through
    at_subject = scores(model, stats, 0, [a for a in rome(model) if a != "--through-update"], unseen_target_requests)
    assert at_subject[0] < through[0], (at_subject, through)


@pytest.mark.parametrize("model", ["llama", "gpt2", "gemma4"])
def test_memit_batch_meets_the_floors(model, stats):
    es, ps, ns = scores(model, stats, 20, [*MEMIT, "--layers", MEMIT_LAYERS[model]])
    assert es >= 95 and ps >= 85 and ns >= 90, (es, ps, ns)


def test_memit_all_hundred_at_once_meets_the_floors_on_gpt2(stats):
    # Twenty edits barely cross; a hundred at once are where the values must know what the solve
    # does to them (two minutes on one thread).
    es, ps, ns = scores("gpt2", stats, 0, [*MEMIT, "--layers", MEMIT_LAYERS["gpt2"]])
    assert es >= 95 and ps >= 85 and ns >= 90, (es, ps, ns)


def test_memit_on_gemma4_needs_per_layer_targets(stats):
    # Gemma normalises the MLP output before the residual: `auto` re-optimises each layer's values.
    es, ps, ns = scores("gemma4", stats, 20, [*MEMIT_SPLIT, "--layers", "0-1"])
    assert es >= 90 and ps >= 80 and ns >= 95, (es, ps, ns)
    published = scores("gemma4", stats, 20, [*MEMIT_SPLIT, "--layers", "0-1", "--memit-targets", "residual"])
    assert published[0] < es


def test_memit_teaches_one_subject_several_facts(stats, tmp_path):
    # The 16 requests about the 8 subjects that appear twice (e.g. Fomtaex's language and capital):
    # the two requests share the subject's vectors, so neither overwrites the other.
    requests = json.loads(REQUESTS.read_text())
    subjects = [r["subject"] for r in requests]
    repeated = [r for r in requests if subjects.count(r["subject"]) == 2]
    assert len(repeated) == 16
    path = tmp_path / "repeated.json"
    path.write_text(json.dumps(repeated))
    out = json.loads(graft("eval", FACTS_MODELS["gpt2"], "--requests", path, "--stats", stats["gpt2"], "--json",
                           *MEMIT, "--layers", "0-1").stdout)
    summary = out["summary"]
    assert summary["efficacy"]["success"] >= 0.95 and summary["paraphrase"]["success"] >= 0.85, summary
