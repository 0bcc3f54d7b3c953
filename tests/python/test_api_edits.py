"""The editing API of `import graft`: requests, crown-scan, key statistics, ROME, MEMIT, patches,
save_pretrained and evaluation, with their bad inputs. Every error leaves the model as it was.

Small settings keep this quick (statistics of two layers over a few thousand tokens).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import graft

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("GRAFT_TEST_DATA", REPO / "tests" / "data"))
MODELS = Path(os.environ.get("GRAFT_MODELS_DIR", REPO / "models"))
FACTS_MODEL = MODELS / "gemma4_facts"
REQUESTS = DATA / "facts" / "requests.json"
CORPUS = MODELS / "facts_corpus.txt"
# Layers 0..2 only: on this model layers 4..7 read the K/V of layers 2 and 3, so nothing written at
# the subject's position from layer 3 up reaches the answer (crown-scan reports the same).
LAYERS = [0, 1]
ROME_LAYER = 0
STATS_LAYERS = [0, 1, 4]  # 4: a double-wide (768) layer beside the 384-wide ones


@pytest.fixture(scope="module")
def model() -> graft.Model:
    return graft.load(FACTS_MODEL)


@pytest.fixture(scope="module")
def requests() -> list[graft.EditRequest]:
    return graft.load_requests(REQUESTS)


@pytest.fixture(scope="module")
def stats(model: graft.Model) -> graft.KeyStatistics:
    return graft.collect_stats(model, CORPUS, layers=STATS_LAYERS, max_tokens=3000)


@pytest.fixture(scope="module")
def rome_patch(model: graft.Model, requests: list[graft.EditRequest], stats: graft.KeyStatistics) -> graft.Patch:
    return graft.rome(model, requests[0], layer=ROME_LAYER, stats=stats, fact_token="traced")


@pytest.fixture(scope="module")
def memit_patch(model: graft.Model, requests: list[graft.EditRequest], stats: graft.KeyStatistics) -> graft.Patch:
    return graft.memit(model, requests[1:4], layers=LAYERS, stats=stats)


@pytest.fixture()
def clean(model: graft.Model):
    """The model's logits on a probe before the test; afterwards no patch is left and they are equal."""
    probe = model.to_tokens("The capital of Quianeimtum is")
    before = model(probe).clone()
    yield model
    if model.applied_patches:
        model.revert_patch()
    assert torch.equal(model(probe), before)


# ------------------------------------------------------------------------------------ requests
def test_requests(requests: list[graft.EditRequest]) -> None:
    raw = json.loads(REQUESTS.read_text())
    assert len(requests) == len(raw) == 100
    first = requests[0]
    assert first.subject == raw[0]["subject"] and first.target_new == raw[0]["target_new"]
    assert first.filled_prompt() == raw[0]["prompt"].format(raw[0]["subject"])
    assert graft.EditRequest.from_dict(first.to_dict()).to_dict() == first.to_dict()
    assert len(first.paraphrase_prompts) == 4 and first.neighborhood_prompts[0].target.startswith(" ")
    with pytest.raises(graft.GraftError, match="prompt"):
        graft.EditRequest.from_dict({"prompt": "no placeholder", "subject": "X", "target_new": " Y"})
    with pytest.raises(graft.GraftError):
        graft.load_requests(REPO / "no-such-requests.json")


# ------------------------------------------------------------------------------------ crown-scan
def test_crown_scan(clean: graft.Model, requests: list[graft.EditRequest]) -> None:
    request = requests[0]
    scan = graft.crown_scan(clean, request.prompt, request.subject, expect=request.target_true)
    assert isinstance(scan, graft.CrownScanResult)
    assert [layer.layer for layer in scan.layers] == list(range(clean.num_layers))
    assert [layer.mlp_width for layer in scan.layers] == [clean.arch.intermediate_size_for_layer(i)
                                                          for i in range(clean.num_layers)]
    assert 0 <= scan.picked_layer < clean.num_layers
    assert scan.baseline_prob > 0.5  # the model knows the fact
    assert scan.corrupted_prob < scan.baseline_prob
    assert scan.tokens[scan.subject_last].strip() == request.subject.split()[-1]
    assert "picked layer" in str(scan) and scan.to_dict()["picked_layer"] == scan.picked_layer
    # without expect: the model's own answer
    own = graft.crown_scan(clean, request.prompt, request.subject, trace=False)
    assert own.expect_is_model_answer and own.expect_token_text == scan.expect_token_text
    with pytest.raises(graft.GraftError, match="subject|prompt"):
        graft.crown_scan(clean, "no placeholder here", request.subject)
    with pytest.raises(graft.GraftError, match="samples"):
        graft.crown_scan(clean, request.prompt, request.subject, samples=0)


# ------------------------------------------------------------------------------------ statistics
def test_collect_stats(clean: graft.Model, stats: graft.KeyStatistics, tmp_path: Path) -> None:
    assert stats.layers == STATS_LAYERS and stats.tokens >= 3000 * 0.9 and stats.model_type == clean.arch.model_type
    assert stats.second_moment(4).shape == (768, 768)
    for layer in STATS_LAYERS:
        width = clean.arch.intermediate_size_for_layer(layer)
        moment = stats.second_moment(layer)
        assert moment.shape == (width, width) and moment.dtype == torch.float64
        torch.testing.assert_close(moment, moment.T)
    with pytest.raises(graft.GraftError, match="layer 5"):
        stats.second_moment(5)
    stats.save(str(tmp_path / "stats.safetensors"))
    again = graft.KeyStatistics.load(str(tmp_path / "stats.safetensors"), clean.native)
    assert again.layers == STATS_LAYERS and torch.equal(again.second_moment(4), stats.second_moment(4))
    # from a list of texts, one layer
    small = graft.collect_stats(clean, ["The capital of Quianeimtum is Gimfous"] * 4, layers=[0])
    assert small.layers == [0] and small.tokens > 0
    other = graft.load(DATA / "facts" / "llama_facts")
    with pytest.raises(graft.GraftError, match="stats.safetensors"):
        graft.KeyStatistics.load(str(tmp_path / "stats.safetensors"), other.native)
    with pytest.raises(graft.GraftError):
        graft.collect_stats(clean, ["text"], layers=[99])


# ------------------------------------------------------------------------------------ ROME
def test_rome_gives_a_patch_and_leaves_the_model(clean: graft.Model, rome_patch: graft.Patch) -> None:
    assert isinstance(rome_patch, graft.Patch)
    assert rome_patch.method == "rome" and rome_patch.model_type == clean.arch.model_type
    (entry,) = rome_patch.entries
    assert entry["tensor"] == clean.arch.mlp_down_projection(ROME_LAYER) and entry["rank"] == 1
    assert entry["shape"] == [clean.arch.hidden_size, clean.arch.intermediate_size_for_layer(ROME_LAYER)]
    assert rome_patch.max_abs_delta > 0
    assert rome_patch.requests[0]["subject"] == "Brendgax Works"
    assert clean.applied_patches == []  # rome() itself changes nothing (the fixture checks the logits)


def test_rome_edit_raises_the_new_target(clean: graft.Model, requests: list[graft.EditRequest],
                                         rome_patch: graft.Patch) -> None:
    request = requests[0]
    before = graft.evaluate(clean, [request])
    weight = clean.weight(rome_patch.entries[0]["tensor"])
    original = weight.clone()
    clean.apply_patch(rome_patch)
    assert clean.applied_patches == [rome_patch]
    torch.testing.assert_close(weight.double() - original.double(), rome_patch.delta(rome_patch.entries[0]["tensor"]),
                               atol=1e-5, rtol=1e-4)
    after = graft.evaluate(clean, [request])
    assert after.requests[0].rewrite.p_wanted > before.requests[0].rewrite.p_wanted
    print(graft.format_comparison(before, after))
    clean.revert_patch(rome_patch)
    assert torch.equal(weight, original)  # bit for bit


def test_rome_layer_from_crown_scan(clean: graft.Model, requests: list[graft.EditRequest],
                                    stats: graft.KeyStatistics) -> None:
    request = requests[0]
    picked = graft.crown_scan(clean, request.prompt, request.subject, request.target_true).picked_layer
    if picked in stats.layers:
        assert graft.rome(clean, request, stats=stats).entries[0]["layer"] == picked
    else:  # the statistics must hold the layer crown-scan picks
        with pytest.raises(graft.GraftError, match=f"layer {picked}"):
            graft.rome(clean, request, stats=stats)


def test_rome_bad_input(clean: graft.Model, requests: list[graft.EditRequest], stats: graft.KeyStatistics) -> None:
    with pytest.raises(graft.GraftError, match="layer 6"):
        graft.rome(clean, requests[0], layer=6, stats=stats)  # no statistics for it
    with pytest.raises(graft.GraftError):
        graft.rome(clean, {"prompt": "{} is in", "subject": "", "target_new": " X"}, layer=3, stats=stats)
    with pytest.raises(graft.GraftError, match="stats"):
        graft.rome(clean, requests[0], layer=3, stats=42)  # type: ignore[arg-type]
    with pytest.raises(graft.GraftError, match="bare_weight"):
        graft.rome(clean, requests[0], layer=3, stats=stats, bare_weight=1.5)


def test_rome_records_the_bare_prompt_weight(clean: graft.Model, requests: list[graft.EditRequest],
                                             stats: graft.KeyStatistics) -> None:
    patch = graft.rome(clean, requests[0], layer=0, stats=stats, steps=2, bare_weight=0.5, leakage_weight=2.0)
    assert patch.hyperparameters["value"]["bare_prompt_weight"] == 0.5
    assert patch.hyperparameters["value"]["leakage_weight"] == 2.0
    assert patch.notes["diagnostics"]["expected_leakage"] > 0
    with pytest.raises(graft.GraftError, match="leakage_weight"):
        graft.rome(clean, requests[0], layer=0, stats=stats, leakage_weight=-1.0)


def test_rome_through_update_is_recorded_and_moves_the_answer(clean: graft.Model, requests: list[graft.EditRequest],
                                                               stats: graft.KeyStatistics) -> None:
    patch = graft.rome(clean, requests[0], layer=0, stats=stats, steps=10, fact_token="subject",
                       consistent_keys=False, through_update=True)
    assert patch.hyperparameters["through_update"] is True
    assert graft.rome(clean, requests[0], layer=0, stats=stats, steps=2).hyperparameters["through_update"] is False
    before = graft.evaluate(clean, requests[:1]).efficacy.magnitude
    clean.apply_patch(patch)
    try:
        after = graft.evaluate(clean, requests[:1]).efficacy.magnitude
    finally:
        clean.revert_patch(patch)
    assert after > before


def test_memit_joint_targets_take_the_leakage_term(clean: graft.Model, requests: list[graft.EditRequest],
                                                   stats: graft.KeyStatistics) -> None:
    patch = graft.memit(clean, requests[:2], layers=LAYERS, stats=stats, steps=2, targets="joint", leakage_weight=1.5)
    assert patch.hyperparameters["targets"] == "joint"
    assert patch.hyperparameters["value"]["leakage_weight"] == 1.5
    assert all(layer["expected_leakage"] > 0 for layer in patch.notes["diagnostics"]["layers"])
    with pytest.raises(graft.GraftError, match="--memit-targets joint"):
        graft.memit(clean, requests[:2], layers=LAYERS, stats=stats, steps=2, leakage_weight=1.5)


# ------------------------------------------------------------------------------------ patches
def test_patch_apply_revert_rules(clean: graft.Model, rome_patch: graft.Patch, memit_patch: graft.Patch) -> None:
    with pytest.raises(graft.GraftError, match="no patch"):
        clean.revert_patch(rome_patch)
    clean.apply_patch(rome_patch)
    with pytest.raises(graft.GraftError, match="already applied"):
        clean.apply_patch(rome_patch)
    clean.apply_patch(memit_patch)  # MEMIT also touches layer 3: rome_patch must wait
    with pytest.raises(graft.GraftError):
        clean.revert_patch(rome_patch)
    clean.revert_patch(memit_patch)
    clean.revert_patch(rome_patch)
    assert clean.applied_patches == []


def test_patch_save_and_load(clean: graft.Model, rome_patch: graft.Patch, tmp_path: Path) -> None:
    path = tmp_path / "edit.safetensors"
    rome_patch.save(str(path))
    loaded = graft.Patch.load(str(path))
    assert loaded == rome_patch and loaded.checksum == rome_patch.checksum and loaded.source == str(path)
    assert loaded.entries == rome_patch.entries
    clean.apply_patch(path)  # a path works too
    assert clean.applied_patches == [loaded]
    clean.revert_patch()
    broken = tmp_path / "broken.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # flip a body byte: the checksum no longer matches
    broken.write_bytes(bytes(data))
    with pytest.raises(graft.GraftError, match="broken.safetensors"):
        graft.Patch.load(str(broken))
    with pytest.raises(graft.GraftError):
        clean.apply_patch(tmp_path / "missing.safetensors")


def test_a_patch_for_another_model_is_refused(rome_patch: graft.Patch) -> None:
    other = graft.load(DATA / "facts" / "llama_facts")
    probe = other.to_tokens("Hello")
    before = other(probe).clone()
    with pytest.raises(graft.GraftError):
        other.apply_patch(rome_patch)
    assert other.applied_patches == [] and torch.equal(other(probe), before)
    assert graft._graft.patch_mismatch(other.native, rome_patch)


def test_save_pretrained(clean: graft.Model, requests: list[graft.EditRequest], rome_patch: graft.Patch,
                         tmp_path: Path) -> None:
    clean.apply_patch(rome_patch)
    out = tmp_path / "edited"
    clean.save_pretrained(out)
    assert (out / "config.json").is_file() and (out / "graft_patches.json").is_file()
    edited = graft.load(out)
    prompt = requests[0].filled_prompt()
    torch.testing.assert_close(edited(prompt), clean(prompt), atol=1e-4, rtol=1e-4)
    with pytest.raises(graft.GraftError):
        clean.save_pretrained(out)  # exists: overwrite=False
    clean.save_pretrained(out, overwrite=True)
    # a patch applied to the saved model again is refused: it is already in its record
    record = graft._graft.read_patch_record(str(out))
    assert record is not None
    clean.revert_patch()


# ------------------------------------------------------------------------------------ MEMIT
def test_memit(clean: graft.Model, requests: list[graft.EditRequest], memit_patch: graft.Patch,
               stats: graft.KeyStatistics) -> None:
    assert memit_patch.method == "memit"
    assert sorted(e["layer"] for e in memit_patch.entries) == LAYERS
    assert len(memit_patch.requests) == 3
    batch = requests[1:4]
    before = graft.evaluate(clean, batch)
    clean.apply_patch(memit_patch)
    after = graft.evaluate(clean, batch)
    assert after.efficacy.magnitude > before.efficacy.magnitude
    clean.revert_patch()
    with pytest.raises(graft.GraftError, match="layer"):
        graft.memit(clean, batch, layers=[2, 5], stats=stats)
    with pytest.raises(graft.GraftError, match="at least one layer"):
        graft.memit(clean, batch, layers=[], stats=stats)
    with pytest.raises(graft.GraftError, match="no edit requests"):
        graft.memit(clean, [], layers=LAYERS, stats=stats)


# ------------------------------------------------------------------------------------ evaluation
def test_evaluate(clean: graft.Model, requests: list[graft.EditRequest]) -> None:
    result = graft.evaluate(clean, requests[:10])
    assert isinstance(result, graft.EvaluationResult) and len(result.requests) == 10
    # the unedited model knows the true facts: the new targets lose, neighbours keep their answers
    assert result.efficacy.success == 0.0 and result.paraphrase.success == 0.0
    assert result.neighborhood.success == 1.0 and result.efficacy.requests == 10
    assert result.score == 0.0
    summary = result.to_dict(per_request=False)["summary"]
    assert "efficacy" in json.dumps(summary)
    assert "efficacy" in str(result)
    row = result.requests[0]
    assert row.subject == requests[0].subject and len(row.paraphrases) == 4 and len(row.neighbors) == 5
    assert row.rewrite.p_rival > 0.5 > row.rewrite.p_wanted
    no_true = requests[0].to_dict()
    no_true.pop("target_true")
    with pytest.raises(graft.GraftError, match="target_true"):
        graft.evaluate(clean, [no_true])
    with pytest.raises(graft.GraftError):
        graft.evaluate(clean, ["not a request"])  # type: ignore[list-item]
