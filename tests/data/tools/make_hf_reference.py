"""Regenerates tests/data/hf-parity/*/reference.safetensors with HuggingFace transformers itself.

Why this exists: the shared fixtures' Gemma references were produced with the non-persistent
`embed_scale` buffers perturbed (like every other parameter). Those buffers are not written to
model.safetensors, so transformers, reloading the saved model, does not reproduce them (max logit
error 0.03 to 1.1). This script runs the saved model as transformers loads it and records the same
tensors the fixture README describes. On the families without such buffers (llama3, qwen2, qwen3,
gpt2) it reproduces the shared references bit for bit, which checks the method.

Usage: python3 tests/data/tools/make_hf_reference.py tests/data/hf-parity/NAME [--check]
(transformers==5.17.0, float32, eager attention, CPU).
"""

import argparse
import sys
from pathlib import Path

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file


def decoder_layers(model):
    for name, module in model.named_modules():
        if name.endswith(".layers") or name.endswith(".h"):
            if isinstance(module, torch.nn.ModuleList):
                return module
    raise SystemExit("no decoder layer list found")


def capture(model, input_ids):
    out, handles = {}, []
    for i, layer in enumerate(decoder_layers(model)):
        def pre(module, args, kwargs, i=i):
            hidden = args[0] if args else kwargs["hidden_states"]
            out[f"resid_pre.{i}"] = hidden.detach().clone()
        def post(module, args, kwargs, output, i=i):
            hidden = output[0] if isinstance(output, tuple) else output
            out[f"resid_post.{i}"] = hidden.detach().clone()
        handles.append(layer.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(layer.register_forward_hook(post, with_kwargs=True))
        mlp = layer.mlp
        down = getattr(mlp, "down_proj", None) or getattr(mlp, "c_proj")
        handles.append(down.register_forward_pre_hook(lambda m, a, i=i: out.__setitem__(f"mlp_key.{i}", a[0].detach().clone())))
        attention = getattr(layer, "self_attn", None) or getattr(layer, "attn")
        o_proj = getattr(attention, "o_proj", None) or getattr(attention, "c_proj")
        handles.append(o_proj.register_forward_pre_hook(lambda m, a, i=i: out.__setitem__(f"attn_z.{i}", a[0].detach().clone())))
    head = model.get_output_embeddings()
    handles.append(head.register_forward_pre_hook(lambda m, a: out.__setitem__("final_norm", a[0].detach().clone())))
    with torch.no_grad():
        result = model(input_ids, output_hidden_states=True)
    for h in handles:
        h.remove()
    out["logits"] = result.logits.detach().clone()
    for i, hidden in enumerate(result.hidden_states):
        out[f"hidden_states.{i}"] = hidden.detach().clone()
    return out


def greedy(model, prompt, steps):
    with torch.no_grad():
        generated = model.generate(prompt, max_new_tokens=steps, min_new_tokens=steps, do_sample=False,
                                   eos_token_id=None, pad_token_id=0, use_cache=True)
    return generated


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--check", action="store_true", help="compare with the existing file instead of writing")
    args = parser.parse_args()
    assert transformers.__version__ == "5.17.0", transformers.__version__
    torch.manual_seed(0)
    reference_path = args.model_dir / "reference.safetensors"
    with safe_open(reference_path, "pt") as existing:
        old = {k: existing.get_tensor(k) for k in existing.keys()}
    model = transformers.AutoModelForCausalLM.from_pretrained(args.model_dir, attn_implementation="eager",
                                                              dtype=torch.float32).eval()
    tensors = capture(model, old["input_ids"])
    tensors["input_ids"] = old["input_ids"]
    steps = old["greedy_ids"].shape[1] - old["input_ids"].shape[1]
    tensors["greedy_ids"] = greedy(model, old["input_ids"][:1], steps)
    missing = sorted(set(old) - set(tensors))
    if missing:
        raise SystemExit(f"{args.model_dir}: not regenerated: {missing}")
    worst = max(((tensors[k].double() - old[k].double()).abs().max().item(), k) for k in old)
    print(f"{args.model_dir.name}: largest change against the previous file: {worst[0]:.3g} ({worst[1]})")
    if not args.check:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(reference_path),
                  metadata={"transformers": transformers.__version__, "torch": torch.__version__,
                            "made_by": "tests/data/tools/make_hf_reference.py"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
