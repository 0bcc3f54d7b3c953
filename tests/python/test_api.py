"""The Python API of `import graft`: loading, forward passes, caches, hooks, generation and errors.

Every bad input must be a clear Python exception and leave the model as it was; tensors must be
real torch tensors on the model's device that share memory with the forward pass (no copies).
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

import graft
from graft import _graft

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("GRAFT_TEST_DATA", REPO / "tests" / "data"))
MODELS = Path(os.environ.get("GRAFT_MODELS_DIR", REPO / "models"))
FACTS_MODEL = MODELS / "gemma4_facts"
PARITY = DATA / "hf-parity"
PROMPT = "The capital of Quianeimtum is"
GRAFT = os.environ.get("GRAFT_BIN", "graft")


@pytest.fixture(scope="module")
def model() -> graft.Model:
    return graft.load(FACTS_MODEL)


@pytest.fixture(scope="module")
def ids(model: graft.Model) -> torch.Tensor:
    return model.to_tokens(PROMPT)


@pytest.fixture(scope="module")
def baseline(model: graft.Model, ids: torch.Tensor) -> torch.Tensor:
    return model(ids).clone()


def assert_unchanged(model: graft.Model, ids: torch.Tensor, baseline: torch.Tensor) -> None:
    """The model still runs and gives exactly the logits it gave before."""
    assert torch.equal(model(ids), baseline)
    assert model._context_hooks == []


# ---------------------------------------------------------------------------------------- loading
def test_load_gives_a_model_with_its_facts(model: graft.Model) -> None:
    assert isinstance(model, graft.Model)
    assert model.arch.family == "gemma4"
    assert model.num_layers == model.arch.num_layers == 8
    assert model.device == torch.device("cpu")
    assert model.dtype == torch.float32
    assert Path(model.path) == FACTS_MODEL
    assert isinstance(model.tokenizer, graft.Tokenizer)
    assert "gemma4" in repr(model)
    names = model.hook_names()
    assert names[0] == "hook_embed" and names[-1] == "hook_logits"
    assert "blocks.7.mlp.hook_post" in names and len(names) == len(set(names))


def test_rope_reads_the_same_in_python_and_graft_info() -> None:
    # One name per field: rotated_pairs counts the frequencies that rotate (a pair of dims each).
    info = subprocess.run([GRAFT, "info", str(FACTS_MODEL), "--json"], check=True, capture_output=True, text=True)
    arch = _graft.Architecture.from_model_dir(str(FACTS_MODEL))
    for row in json.loads(info.stdout)["layers"]:
        assert row["rope"] == arch.rope_for_layer(row["layer"])
        assert row["rope"]["rotated_pairs"] <= row["rope"]["dim"] // 2


def test_load_with_dtype(ids: torch.Tensor) -> None:
    for dtype in (torch.bfloat16, "bfloat16"):
        model = graft.load(str(FACTS_MODEL), device="cpu", dtype=dtype)
        assert model.dtype == torch.bfloat16
        assert model(ids).dtype == torch.bfloat16


def test_load_rejects_what_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(graft.GraftError, match="config.json"):
        graft.load(tmp_path)  # an empty directory
    with pytest.raises(graft.GraftError, match="does-not-exist"):
        graft.load(tmp_path / "does-not-exist")
    (tmp_path / "config.json").write_text('{"model_type": "no_such_family"}')
    with pytest.raises(graft.GraftError, match="no_such_family"):
        graft.load(tmp_path)
    (tmp_path / "config.json").write_text("{ not json")
    with pytest.raises(ValueError, match="config.json"):  # GraftError is a ValueError
        graft.load(tmp_path)


def test_load_rejects_a_truncated_checkpoint(tmp_path: Path) -> None:
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((FACTS_MODEL / name).read_bytes())
    data = (FACTS_MODEL / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(graft.GraftError, match="model.safetensors"):
        graft.load(tmp_path)


def test_load_rejects_a_bad_dtype_and_device() -> None:
    with pytest.raises(graft.GraftError):
        graft.load(FACTS_MODEL, dtype="float8")
    with pytest.raises((graft.GraftError, RuntimeError)):
        graft.load(FACTS_MODEL, device="no-such-device")


# ------------------------------------------------------------------------------- forward and cache
def test_logits_are_torch_tensors_on_the_device(model: graft.Model, ids: torch.Tensor) -> None:
    logits = model(ids)
    assert isinstance(logits, torch.Tensor)
    assert logits.device == model.device and logits.dtype == model.dtype
    assert logits.shape == (1, ids.shape[1], model.arch.vocab_size)
    assert ids.dtype == torch.long and ids.device == model.device
    # [seq], a list of ids and a string give the same
    assert torch.equal(model(ids[0]), logits)
    assert torch.equal(model(ids[0].tolist()), logits)
    assert torch.equal(model(PROMPT), logits)


def test_the_model_knows_its_facts(model: graft.Model) -> None:
    requests = json.loads((DATA / "facts" / "requests.json").read_text())[:20]
    prompts = [r["prompt"].format(r["subject"]) for r in requests]
    answers = [r["target_true"] for r in requests]
    completions = model.generate(prompts, max_new_tokens=6)
    assert isinstance(completions, list) and len(completions) == len(prompts)
    for prompt, answer, completion in zip(prompts, answers, completions):
        assert completion.startswith(prompt + answer), (prompt, answer, completion)


@pytest.mark.parametrize("name", sorted(p.name for p in PARITY.iterdir() if (p / "reference.safetensors").exists()))
def test_forward_and_cache_match_huggingface(name: str) -> None:
    safetensors = pytest.importorskip("safetensors.torch")
    reference = safetensors.load_file(str(PARITY / name / "reference.safetensors"))
    model = graft.load(PARITY / name)
    logits, cache = model.run_with_cache(reference["input_ids"],
                                         names=lambda n: n.endswith(("hook_resid_post", "mlp.hook_post")))
    torch.testing.assert_close(logits, reference["logits"], atol=2e-4, rtol=1e-4)
    for i in range(model.num_layers):
        torch.testing.assert_close(cache[f"blocks.{i}.hook_resid_post"], reference[f"resid_post.{i}"],
                                   atol=5e-4, rtol=1e-4)
        torch.testing.assert_close(cache[f"blocks.{i}.mlp.hook_post"], reference[f"mlp_key.{i}"], atol=2e-4, rtol=1e-4)
    greedy = reference["greedy_ids"]
    prompt = reference["input_ids"][:1]
    out = model.generate(prompt, max_new_tokens=greedy.shape[1] - prompt.shape[1], stop_tokens=[])
    assert torch.equal(out, greedy)


def test_run_with_cache_selects_names(model: graft.Model, ids: torch.Tensor, baseline: torch.Tensor) -> None:
    logits, everything = model.run_with_cache(ids)
    # caching attention patterns takes the explicit-softmax path: equal up to rounding
    torch.testing.assert_close(logits, baseline, atol=1e-5, rtol=1e-5)
    assert set(everything) == set(model.hook_names())
    _, one = model.run_with_cache(ids, names="blocks.3.mlp.hook_post")
    assert list(one) == ["blocks.3.mlp.hook_post"]
    assert one["blocks.3.mlp.hook_post"].shape == (1, ids.shape[1], model.arch.intermediate_size_for_layer(3))
    _, some = model.run_with_cache(ids, names=["hook_embed", "hook_logits"])
    assert set(some) == {"hook_embed", "hook_logits"}
    assert torch.equal(some["hook_logits"], baseline)
    _, resid = model.run_with_cache(ids, names=lambda n: n.endswith("hook_resid_post"))
    assert sorted(resid) == sorted(f"blocks.{i}.hook_resid_post" for i in range(model.num_layers))
    for tensor in everything.values():
        assert isinstance(tensor, torch.Tensor) and tensor.device == model.device and not tensor.requires_grad
    # the first block's input is the embedding
    torch.testing.assert_close(everything["blocks.0.hook_resid_pre"], everything["hook_embed"])


def test_cached_tensors_are_the_forward_pass_tensors(model: graft.Model, ids: torch.Tensor) -> None:
    seen: dict[str, torch.Tensor] = {}

    def keep(tensor: torch.Tensor, hook: graft.HookPoint) -> None:
        seen[hook.name] = tensor

    names = ["blocks.2.hook_resid_post", "blocks.5.mlp.hook_post", "hook_logits"]
    with model.hooks([(n, keep) for n in names]):
        logits, cache = model.run_with_cache(ids, names=names[:2])
    for name in names[:2]:
        assert cache[name].data_ptr() == seen[name].data_ptr(), name  # no copy into the cache
    assert logits.data_ptr() == seen["hook_logits"].data_ptr()  # no copy of the logits


def test_weight_is_the_tensor_the_forward_pass_reads(model: graft.Model, ids: torch.Tensor,
                                                     baseline: torch.Tensor) -> None:
    name = model.arch.mlp_down_projection(3)
    assert name in model.weight_names()
    weight = model.weight(name)
    assert isinstance(weight, torch.Tensor)
    assert weight.data_ptr() == model.weight(name).data_ptr()
    assert weight.shape == (model.arch.hidden_size, model.arch.intermediate_size_for_layer(3))
    original = weight.clone()
    try:
        weight.zero_()
        assert not torch.equal(model(ids), baseline)
    finally:
        weight.copy_(original)
    assert_unchanged(model, ids, baseline)
    with pytest.raises(graft.GraftError, match="no.such.tensor"):
        model.weight("no.such.tensor")


# ------------------------------------------------------------------------------------------- hooks
def test_a_hook_can_replace_an_activation(model: graft.Model, ids: torch.Tensor, baseline: torch.Tensor) -> None:
    points: list[graft.HookPoint] = []

    def zero_mlp(tensor: torch.Tensor, hook: graft.HookPoint) -> torch.Tensor:
        points.append(hook)
        return torch.zeros_like(tensor)

    patched = model.run_with_hooks(ids, fwd_hooks=[("blocks.4.hook_mlp_out", zero_mlp)])
    assert points == [graft.HookPoint("blocks.4.hook_mlp_out")] and points[0].layer == 4
    assert not torch.equal(patched, baseline)
    # a hook that returns None changes nothing
    assert torch.equal(model.run_with_hooks(ids, [("blocks.4.hook_mlp_out", lambda t, h: None)]), baseline)
    assert graft.HookPoint("hook_logits").layer is None
    assert_unchanged(model, ids, baseline)


def test_hooks_at_one_point_run_in_order(model: graft.Model, ids: torch.Tensor) -> None:
    order: list[str] = []
    hooks = [("blocks.1.hook_resid_post", lambda t, h: order.append("a")),
             ("blocks.1.hook_resid_post", lambda t, h: order.append("b"))]
    model.run_with_hooks(ids, hooks)
    assert order == ["a", "b"]


def test_hooks_context_manager(model: graft.Model, ids: torch.Tensor, baseline: torch.Tensor) -> None:
    calls: list[str] = []

    def double(tensor: torch.Tensor, hook: graft.HookPoint) -> torch.Tensor:
        calls.append(hook.name)
        return tensor * 2

    with model.hooks([("blocks.0.hook_resid_post", double)]) as same:
        assert same is model
        inside = model(ids)
        _, cache = model.run_with_cache(ids, names=["blocks.0.hook_resid_post"])
    assert calls == ["blocks.0.hook_resid_post"] * 2
    assert not torch.equal(inside, baseline)
    assert_unchanged(model, ids, baseline)
    # removed also when the block raises
    with pytest.raises(KeyError):
        with model.hooks([("blocks.0.hook_resid_post", double)]):
            raise KeyError("inside")
    assert_unchanged(model, ids, baseline)


def test_unknown_hook_names_are_graft_errors(model: graft.Model, ids: torch.Tensor, baseline: torch.Tensor) -> None:
    noop = lambda t, h: None  # noqa: E731
    with pytest.raises(graft.GraftError, match=r"hook names are: hook_embed, .*hook_logits.*did you mean 'hook_embed'"):
        model.run_with_hooks(ids, [("hook_embeds", noop)])
    with pytest.raises(graft.GraftError, match="blocks.0.hook_resd_post.*did you mean 'blocks.0.hook_resid_post'"):
        model.run_with_cache(ids, names=["blocks.0.hook_resd_post"])
    with pytest.raises(graft.GraftError, match="layer 99 out of range"):
        model.run_with_cache(ids, names="blocks.99.hook_resid_post")
    with pytest.raises(graft.GraftError, match="unknown hook name"):
        with model.hooks([("nope", noop)]):
            pytest.fail("entered the block")
    with pytest.raises(graft.GraftError, match="not callable"):
        model.run_with_hooks(ids, [("hook_embed", 42)])
    assert_unchanged(model, ids, baseline)


def test_kv_shared_layers_offer_no_k_or_v(model: graft.Model, ids: torch.Tensor) -> None:
    shared = [i for i in range(model.num_layers) if model.arch.kv_source(i) != i]
    assert shared, "the bundled Gemma 4 model shares KV in its last layers"
    assert f"blocks.{shared[0]}.attn.hook_k" not in model.hook_names()
    with pytest.raises(graft.GraftError, match="KV-shared"):
        model.run_with_cache(ids, names=f"blocks.{shared[0]}.attn.hook_k")


def test_a_hook_that_raises_names_the_hook(model: graft.Model, ids: torch.Tensor, baseline: torch.Tensor) -> None:
    def broken(tensor: torch.Tensor, hook: graft.HookPoint) -> None:
        raise ZeroDivisionError("inside the hook")

    with pytest.raises(graft.HookError,
                       match=r"hook 'blocks.2.attn.hook_pattern' \(broken\) raised ZeroDivisionError") as info:
        model.run_with_hooks(ids, [("blocks.2.attn.hook_pattern", broken)])
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    with pytest.raises(graft.HookError):
        with model.hooks([("hook_embed", broken)]):
            model.run_with_cache(ids)
    assert_unchanged(model, ids, baseline)


def test_a_replacement_of_the_wrong_shape_names_the_hook(model: graft.Model, ids: torch.Tensor,
                                                          baseline: torch.Tensor) -> None:
    with pytest.raises(graft.GraftError,
                       match=r'hook "blocks.1.hook_resid_post" returned shape \[1, 2, 128\], expected \[1, 6, 128\]'):
        model.run_with_hooks(ids, [("blocks.1.hook_resid_post", lambda t, h: t[:, :2])])
    with pytest.raises(graft.GraftError, match=r'hook "hook_embed" returned str, expected a torch.Tensor or None'):
        model.run_with_hooks(ids, [("hook_embed", lambda t, h: "not a tensor")])
    assert_unchanged(model, ids, baseline)


def test_a_replacement_keeps_dtype_and_device(model: graft.Model, ids: torch.Tensor, baseline: torch.Tensor) -> None:
    # a float64 replacement with the same values changes nothing
    same = model.run_with_hooks(ids, [("blocks.3.hook_resid_mid", lambda t, h: t.double())])
    assert same.dtype == model.dtype
    torch.testing.assert_close(same, baseline)


def test_bad_input_ids(model: graft.Model, ids: torch.Tensor, baseline: torch.Tensor) -> None:
    with pytest.raises(graft.GraftError, match="integers"):
        model(ids.float())
    with pytest.raises(graft.GraftError, match="shape"):
        model(ids[None])
    with pytest.raises(graft.GraftError):
        model(torch.tensor([[model.arch.vocab_size + 5]]))
    assert_unchanged(model, ids, baseline)


# ---------------------------------------------------------------------------------- text helpers
def test_tokens_and_generation(model: graft.Model, ids: torch.Tensor) -> None:
    assert ids[0, 0].item() == model.tokenizer.bos_id
    assert model.to_tokens(PROMPT, prepend_bos=False).shape[1] == ids.shape[1] - 1
    tokens = model.to_str_tokens(PROMPT)
    assert len(tokens) == ids.shape[1] and "".join(tokens[1:]).lstrip() == PROMPT
    assert model.to_string(ids[0], skip_special_tokens=True) == PROMPT
    batch = model.to_tokens([PROMPT, "Hi"])  # left-padded
    assert batch.shape == (2, ids.shape[1]) and torch.equal(batch[0], ids[0])
    text = model.generate(PROMPT, max_new_tokens=4)
    assert isinstance(text, str) and text.startswith(PROMPT) and len(text) > len(PROMPT)
    out = model.generate(ids, max_new_tokens=4, stop_tokens=[])
    assert isinstance(out, torch.Tensor) and out.shape == (1, ids.shape[1] + 4)
    assert torch.equal(out[:, : ids.shape[1]], ids)
    sampled = [model.generate(PROMPT, max_new_tokens=8, temperature=1.0, seed=7) for _ in range(2)]
    assert sampled[0] == sampled[1]  # seeded
    with pytest.raises(graft.GraftError):
        model.to_tokens([])


def _tokenizer_without_bos(model_dir: Path, tmp_path: Path) -> Path:
    """A copy of ``model_dir`` (weights linked) whose tokenizer config does not add BOS."""
    copy = tmp_path / model_dir.name
    copy.mkdir()
    for entry in model_dir.iterdir():
        if entry.name != "tokenizer_config.json":
            (copy / entry.name).symlink_to(entry.resolve())
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    (copy / "tokenizer_config.json").write_text(json.dumps({**config, "add_bos_token": False}))
    return copy


@pytest.mark.parametrize("model_dir, always_bos", [(FACTS_MODEL, True), (DATA / "facts" / "llama_facts", False)],
                         ids=["gemma4", "llama"])
def test_to_tokens_encodes_prompts_as_the_editors_do(model_dir: Path, always_bos: bool, tmp_path: Path) -> None:
    # A tokenizer that adds no BOS: Gemma's architecture still asks for one, Llama's does not.
    model = graft.load(_tokenizer_without_bos(model_dir, tmp_path))
    assert not model.tokenizer.adds_bos
    assert model.arch.always_prepend_bos == always_bos
    template, subject = "The capital of {} is", "Quianeimtum"
    ids = model.to_tokens(template.format(subject))[0].tolist()
    assert (ids[0] == model.tokenizer.bos_id) == always_bos
    # crown-scan reports the prompt's tokens as the C++ editors encode it (edits/tokens.cpp).
    scan = graft.crown_scan(model, template, subject, trace=False)
    assert scan.tokens == model.to_str_tokens(template.format(subject))
    assert len(scan.tokens) == len(ids)


# ----------------------------------------------------------------------------- typing and docs
def test_every_public_function_is_typed_and_documented() -> None:
    missing = []
    for name in graft.__all__:
        obj = getattr(graft, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        members = [(name, obj)]
        if inspect.isclass(obj) and obj.__module__.startswith("graft."):
            members += [(f"{name}.{m}", v) for m, v in vars(obj).items()
                        if not m.startswith("_") or m == "__call__"]
        for qualified, member in members:
            function = member.fget if isinstance(member, property) else member
            function = getattr(function, "__func__", function)
            if not (inspect.isfunction(function) or inspect.isclass(function)):
                continue
            if not inspect.getdoc(function):
                missing.append(f"{qualified}: no docstring")
            if inspect.isfunction(function) and obj.__module__.startswith("graft."):
                signature = inspect.signature(function)
                if signature.return_annotation is inspect.Signature.empty:
                    missing.append(f"{qualified}: no return annotation")
                for parameter in signature.parameters.values():
                    if parameter.name != "self" and parameter.annotation is inspect.Parameter.empty:
                        missing.append(f"{qualified}: parameter {parameter.name} has no annotation")
    assert not missing, "\n".join(missing)
    assert "HuggingFace model directory" in graft.load.__doc__
    assert graft._graft.Model.load.__doc__ and "GraftError" in graft._graft.Model.load.__doc__


def test_the_stub_matches_the_native_module() -> None:
    stub = ast.parse((Path(graft.__file__).resolve().parent / "_graft.pyi").read_text())
    classes = {node.name: node for node in stub.body if isinstance(node, ast.ClassDef)}
    native_classes = {n for n, v in vars(_graft).items() if inspect.isclass(v) and not n.startswith("_")}
    assert set(classes) == native_classes
    for name, node in classes.items():
        # Methods and properties as functions; read-write fields (the option classes) as annotated names.
        stubbed = {item.name for item in node.body
                   if isinstance(item, ast.FunctionDef) and not item.name.startswith("_")}
        stubbed |= {item.target.id for item in node.body
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)}
        native = {m for m in dir(getattr(_graft, name)) if not m.startswith("_")}
        if issubclass(getattr(_graft, name), BaseException):
            continue
        assert stubbed == native, (name, stubbed ^ native)
        for item in node.body:
            if isinstance(item, ast.FunctionDef):
                assert item.returns is not None, f"{name}.{item.name} has no return type in the stub"
    functions = {node.name for node in stub.body if isinstance(node, ast.FunctionDef)}
    native_functions = {n for n, v in vars(_graft).items()
                        if callable(v) and not inspect.isclass(v) and not n.startswith("_")}
    assert functions == native_functions
