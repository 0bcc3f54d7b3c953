"""Writes the notebooks of this folder (without outputs) from the cells below: edit here, rerun."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = """\
import os
from pathlib import Path

import matplotlib
matplotlib.use("Agg")  # headless: figures are saved and shown inline where a frontend exists
import matplotlib.pyplot as plt
import torch

import graft

REPO = Path(os.environ.get("GRAFT_REPO", Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()))
MODEL_DIR = Path(os.environ.get("GRAFT_MODELS_DIR", REPO / "models")) / "gemma4_facts"
FIGURES = Path(os.environ.get("GRAFT_FIGURES", REPO / "build" / "figures"))
FIGURES.mkdir(parents=True, exist_ok=True)
model = graft.load(MODEL_DIR)
model"""

tour = [
    new_markdown_cell("# Hooks and caches\n\nA tour of `import graft` on the bundled model (`models/gemma4_facts`, a tiny "
                      "Gemma 4-shaped model that knows 520 made-up facts): hook points, the activation cache, "
                      "editing activations with hooks, and a logit lens over the residual stream."),
    new_code_cell(SETUP),
    new_markdown_cell("## Architecture and hook points\n\nEvery per-layer fact comes from `config.json`; "
                      "Gemma 4 layers differ (MLP width, KV sharing)."),
    new_code_cell("arch = model.arch\n"
                  "for i in range(arch.num_layers):\n"
                  "    print(i, 'mlp', arch.intermediate_size_for_layer(i), 'head_dim', arch.head_dim_for_layer(i),\n"
                  "          'kv_source', arch.kv_source(i), 'sliding', arch.is_sliding(i))\n"
                  "names = model.hook_names()\n"
                  "print(len(names), 'hook points, e.g.', names[:8])"),
    new_markdown_cell("## The cache\n\n`run_with_cache` returns the logits and a dict of torch tensors — the forward "
                      "pass's own tensors, on the model's device, no copies."),
    new_code_cell("prompt = 'The capital of Quianeimtum is'\n"
                  "tokens = model.to_tokens(prompt)\n"
                  "logits, cache = model.run_with_cache(tokens, names=lambda n: 'resid' in n or n.endswith('mlp.hook_post'))\n"
                  "print(model.to_str_tokens(prompt))\n"
                  "print('next token:', repr(model.to_string(logits[0, -1].argmax()[None])))\n"
                  "for name in ['blocks.0.hook_resid_pre', 'blocks.3.mlp.hook_post', 'blocks.7.mlp.hook_post']:\n"
                  "    print(name, tuple(cache[name].shape), cache[name].dtype, cache[name].device)"),
    new_markdown_cell("## Hooks\n\nA hook `fn(tensor, hook)` may return a replacement of the same shape. Zeroing one "
                      "layer's MLP output at the last subject token shows how much the answer depends on it."),
    new_code_cell("answer = logits[0, -1].argmax().item()\n"
                  "subject_last = len(model.to_tokens('The capital of Quianeimtum')[0]) - 1\n"
                  "def zero_at_subject(tensor, hook):\n"
                  "    out = tensor.clone()\n"
                  "    out[:, subject_last] = 0\n"
                  "    return out\n"
                  "base_p = logits[0, -1].softmax(-1)[answer].item()\n"
                  "for layer in range(model.num_layers):\n"
                  "    patched = model.run_with_hooks(tokens, [(f'blocks.{layer}.hook_mlp_out', zero_at_subject)])\n"
                  "    print(f'layer {layer}: p(answer) {base_p:.3f} -> {patched[0, -1].softmax(-1)[answer].item():.3f}')"),
    new_code_cell("# Hooks inside a `with` block apply to every run and are removed on exit.\n"
                  "seen = []\n"
                  "with model.hooks([('blocks.2.attn.hook_pattern', lambda t, h: seen.append((h.name, tuple(t.shape))))]):\n"
                  "    model(tokens)\n"
                  "print(seen)"),
    new_markdown_cell("## Logit lens\n\nWhat would the model say if the residual stream after layer *L* went straight to "
                      "the final norm and the LM head? A hook on the last layer's output swaps in layer *L*'s residual, "
                      "so the model's own final norm and head (soft-capping included) do the decoding."),
    new_code_cell("last = f'blocks.{model.num_layers - 1}.hook_resid_post'\n"
                  "lens = []\n"
                  "for layer in range(model.num_layers):\n"
                  "    resid = cache[f'blocks.{layer}.hook_resid_post']\n"
                  "    lens.append(model.run_with_hooks(tokens, [(last, lambda t, h, r=resid: r)])[0].softmax(-1))\n"
                  "lens = torch.stack(lens)  # [layer, position, vocab]\n"
                  "p_answer = lens[:, :, answer]\n"
                  "top = lens.argmax(-1)\n"
                  "fig, ax = plt.subplots(figsize=(8, 4))\n"
                  "im = ax.imshow(p_answer.T.numpy(), aspect='auto', cmap='viridis', vmin=0, vmax=1)\n"
                  "ax.set_xlabel('layer (residual stream after it)')\n"
                  "ax.set_yticks(range(tokens.shape[1]), model.to_str_tokens(prompt))\n"
                  "ax.set_title(f'logit lens: p({model.to_string([answer])!r})')\n"
                  "for l in range(model.num_layers):\n"
                  "    for pos in range(tokens.shape[1]):\n"
                  "        ax.text(l, pos, model.to_string(top[l, pos][None]).strip()[:6], ha='center', va='center', fontsize=6, color='w')\n"
                  "fig.colorbar(im)\n"
                  "fig.savefig(FIGURES / 'logit_lens.png', dpi=100)\n"
                  "assert torch.allclose(lens[-1], logits[0].softmax(-1), atol=1e-5)  # the last layer is the model itself\n"
                  "print('p(answer) at the last position by layer:', [round(p, 3) for p in p_answer[:, -1].tolist()])"),
    new_markdown_cell("## Weights\n\n`model.weight(name)` is the live tensor the forward pass reads."),
    new_code_cell("w = model.weight(model.arch.mlp_down_projection(3))\n"
                  "print(w.shape, w.dtype)\n"
                  "saved = w.clone()\n"
                  "w.zero_()\n"
                  "print('with layer 3 MLP off:', model.generate(prompt, max_new_tokens=3))\n"
                  "w.copy_(saved)\n"
                  "print('restored:', model.generate(prompt, max_new_tokens=3))"),
]

crown = [
    new_markdown_cell("# Crown-scan: where does the model keep a fact?\n\nPer layer, at the subject's last token: "
                      "ablation (zero the MLP output) and causal tracing (corrupt the subject's embeddings with noise, "
                      "restore one layer's clean state). The picked layer is where ROME edits."),
    new_code_cell(SETUP),
    new_code_cell("requests = graft.load_requests(REPO / 'tests' / 'data' / 'facts' / 'requests.json')\n"
                  "request = requests[0]\n"
                  "scan = graft.crown_scan(model, request.prompt, request.subject, expect=request.target_true)\n"
                  "print(scan)"),
    new_code_cell("layers = [l.layer for l in scan.layers]\n"
                  "fig, ax = plt.subplots(figsize=(7, 3.5))\n"
                  "ax.plot(layers, [l.indirect_effect for l in scan.layers], 'o-', label='hidden state restored')\n"
                  "ax.plot(layers, [l.mlp_indirect_effect for l in scan.layers], 's-', label='MLP outputs restored (window)')\n"
                  "ax.bar(layers, [l.ablation_delta for l in scan.layers], alpha=0.3, color='gray', label='ablation delta p')\n"
                  "ax.axvline(scan.picked_layer, color='red', linestyle=':', label=f'picked layer {scan.picked_layer}')\n"
                  "ax.set_xlabel('layer'); ax.set_ylabel('change in p(expect)')\n"
                  "ax.set_title(scan.prompt + ' ->' + scan.expect)\n"
                  "ax.legend(fontsize=7)\n"
                  "fig.tight_layout()\n"
                  "fig.savefig(FIGURES / 'crown_scan.png', dpi=100)\n"
                  "scan.picked_layer, scan.picked_by"),
    new_code_cell("# Several facts: which layer does each scan pick (ablation only, one forward each)?\n"
                  "picks = [graft.crown_scan(model, r.prompt, r.subject, r.target_true, trace=False).picked_layer for r in requests[:8]]\n"
                  "print(picks)"),
]

edit = [
    new_markdown_cell("# Editing facts with ROME and MEMIT\n\nStatistics of the MLP keys, a ROME edit of one fact and a "
                      "MEMIT edit of several, each scored CounterFact-style before and after, applied, saved and "
                      "reverted. Small settings keep this quick; the published ones are the defaults."),
    new_code_cell(SETUP),
    new_code_cell("requests = graft.load_requests(REPO / 'tests' / 'data' / 'facts' / 'requests.json')\n"
                  "LAYERS = [2, 3]\n"
                  "stats = graft.collect_stats(model, REPO / 'models' / 'facts_corpus.txt', layers=LAYERS, max_tokens=3000)\n"
                  "stats"),
    new_markdown_cell("## ROME: one fact"),
    new_code_cell("request = requests[0]\n"
                  "before = graft.evaluate(model, [request])\n"
                  "patch = graft.rome(model, request, layer=LAYERS[-1], stats=stats)\n"
                  "print(patch, patch.entries)\n"
                  "model.apply_patch(patch)\n"
                  "after = graft.evaluate(model, [request])\n"
                  "print(graft.format_comparison(before, after))\n"
                  "print(model.generate(request.filled_prompt(), max_new_tokens=4))"),
    new_code_cell("import tempfile\n"
                  "out = Path(tempfile.mkdtemp())\n"
                  "patch.save(out / 'rome.safetensors')\n"
                  "model.save_pretrained(out / 'edited')\n"
                  "edited = graft.load(out / 'edited')\n"
                  "print(sorted(p.name for p in (out / 'edited').iterdir()))\n"
                  "prompt = request.filled_prompt()\n"
                  "assert torch.allclose(edited(prompt), model(prompt), atol=1e-4)\n"
                  "model.revert_patch(patch)\n"
                  "print('reverted:', model.generate(prompt, max_new_tokens=4))"),
    new_markdown_cell("## MEMIT: several facts at once"),
    new_code_cell("batch = requests[1:5]\n"
                  "before = graft.evaluate(model, batch)\n"
                  "patch = graft.memit(model, batch, layers=LAYERS, stats=stats)\n"
                  "model.apply_patch(patch)\n"
                  "after = graft.evaluate(model, batch)\n"
                  "print(graft.format_comparison(before, after))\n"
                  "model.revert_patch()"),
    new_code_cell("metrics = ['efficacy', 'paraphrase', 'neighborhood']\n"
                  "fig, ax = plt.subplots(figsize=(6, 3))\n"
                  "x = range(len(metrics))\n"
                  "ax.bar([i - 0.2 for i in x], [getattr(before, m).success for m in metrics], width=0.4, label='before')\n"
                  "ax.bar([i + 0.2 for i in x], [getattr(after, m).success for m in metrics], width=0.4, label='after MEMIT')\n"
                  "ax.set_xticks(list(x), metrics); ax.set_ylim(0, 1); ax.legend()\n"
                  "fig.savefig(FIGURES / 'memit_scores.png', dpi=100)"),
]

for name, cells in [("01_hooks_and_caches", tour), ("02_crown_scan", crown), ("03_rome_memit", edit)]:
    notebook = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.validate(notebook)
    nbformat.write(notebook, HERE / f"{name}.ipynb")
