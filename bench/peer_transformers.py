#!/usr/bin/env python3
"""graft against HuggingFace transformers on the same random-weight models and the same inputs.

Run by ``graft bench --peer`` or standalone::

    python3 bench/peer_transformers.py --graft build-bench/graft [--quick] [--repeats 3] [--json] [--device cuda]

The random models are written by ``graft bench --write-models DIR`` (the same shapes as the C++
benchmark) and both libraries load that one directory: transformers in float32 with
``attn_implementation="sdpa"``. Timings: one warm-up, then the median of ``--repeats``, graft and
transformers alternated run by run. Ratios are
transformers time / graft time: above 1 means graft is faster. Peak memory is measured in a fresh
child process per (library, model): resident-set peak over the resident set after imports, or on
CUDA the allocator's peak (both libraries allocate through the same LibTorch). On an accelerator
every timed call ends with a synchronisation.
TransformerLens is not installed here and is not compared.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

MODELS = ["llama-1b", "gpt2-small", "gemma4-facts"]  # gemma4-e2b's config is the multimodal wrapper: graft only


def timed(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def timed_pair(fa, fb, repeats):
    """Medians of two functions timed alternately, so that load from elsewhere hits both alike."""
    fa()
    fb()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, times in ((fa, ta), (fb, tb)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def synchronizer(device):
    """A function that waits for the device's queued work (nothing to wait for on the CPU)."""
    import torch
    kind = torch.device(device).type
    return (lambda: None) if kind == "cpu" else getattr(torch, kind).synchronize


def synced(fn, sync):
    return lambda: (fn(), sync())


def rss_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def load_hf(path):
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    return model.eval()


def down_proj_modules(hf):
    """(layer, module) for each layer's MLP down projection (the module whose input is the key)."""
    out = []
    for name, module in hf.named_modules():
        parts = name.split(".")
        if parts[-1] in ("down_proj", "c_proj") and "mlp" in parts:
            layer = next(int(p) for p in parts if p.isdigit())
            out.append((layer, module))
    return out


def memory_child(library, path, threads, device):
    """Peak memory of load + prefill 1x128 + 16 decode steps: resident bytes above the post-import
    baseline, or on CUDA the allocator's peak bytes."""
    import torch

    import graft
    if threads > 0:
        torch.set_num_threads(threads)
    on_cuda = torch.device(device).type == "cuda"
    if on_cuda:
        torch.cuda.init()  # with an explicit index, resetting the stats does not start CUDA itself
        torch.cuda.reset_peak_memory_stats(device)
    base = rss_kb("VmRSS")
    ids = torch.randint(1, 100, (1, 128), device=device)
    with torch.inference_mode():
        if library == "graft":
            m = graft.load(path, device=device)
            m(ids)
            m.generate(ids, max_new_tokens=16, stop_tokens=[])
        else:
            m = load_hf(path).to(device)
            m(ids)
            m.generate(ids, max_new_tokens=16, min_new_tokens=16, do_sample=False)
    peak = torch.cuda.max_memory_allocated(device) if on_cuda else (rss_kb("VmHWM") - base) * 1024
    print(json.dumps({"peak_bytes": peak}))


def compare(name, path, repeats, quick, graft_bin, threads, device):
    import torch

    import graft
    g = graft.load(path, device=device)
    hf = load_hf(path).to(device)
    sync = synchronizer(device)
    vocab = hf.config.get_text_config().vocab_size
    gen = torch.Generator().manual_seed(5)
    rows = []

    def row(what, t_graft, t_hf):
        rows.append({"model": name, "row": what, "graft_s": t_graft, "transformers_s": t_hf, "ratio": t_hf / t_graft})

    with torch.inference_mode():
        for batch, tokens in [(1, 128), (1, 512)] if quick else [(1, 128), (1, 512), (8, 128)]:
            if tokens > hf.config.get_text_config().max_position_embeddings:
                continue
            ids = torch.randint(1, vocab, (batch, tokens), generator=gen).to(device)
            row(f"prefill {batch}x{tokens}", *timed_pair(synced(lambda: g(ids), sync),
                                                         synced(lambda: hf(ids, use_cache=False), sync), repeats))

        # Decode with the cache: generate(steps) - generate(1) over (steps - 1) tokens, greedy, no stop tokens.
        steps = 16 if quick else 32
        prompt = torch.randint(1, vocab, (1, 128), generator=gen).to(device)

        def g_gen(n):
            return synced(lambda: g.generate(prompt, max_new_tokens=n, stop_tokens=[]), sync)

        def hf_gen(n):
            return synced(lambda: hf.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False), sync)

        g_long, hf_long = timed_pair(g_gen(steps), hf_gen(steps), repeats)
        g_short, hf_short = timed_pair(g_gen(1), hf_gen(1), repeats)
        row("decode (s/token)", (g_long - g_short) / (steps - 1), (hf_long - hf_short) / (steps - 1))

        # A forward that keeps every layer's MLP key (graft: blocks.{i}.mlp.hook_post; transformers:
        # output_hidden_states plus forward pre-hooks on the down projections).
        ids = torch.randint(1, vocab, (1, 128), generator=gen).to(device)
        names = [f"blocks.{i}.mlp.hook_post" for i in range(g.num_layers)]
        store = {}
        handles = [m.register_forward_pre_hook(lambda mod, args, i=i: store.__setitem__(i, args[0].detach()))
                   for i, m in down_proj_modules(hf)]
        try:
            row("forward caching MLP keys 1x128",
                *timed_pair(synced(lambda: g.run_with_cache(ids, names), sync),
                            synced(lambda: hf(ids, use_cache=False, output_hidden_states=True), sync), repeats))
        finally:
            for h in handles:
                h.remove()
        assert len(store) == g.num_layers, "one key per layer"

    # Peak memory: a fresh process per library.
    peaks = {}
    for library in ("graft", "transformers"):
        out = subprocess.run([sys.executable, __file__, "--graft", graft_bin, "--memory-child", library, path,
                              "--threads", str(threads), "--device", device],
                             check=True, capture_output=True, text=True, env=child_env(graft_bin)).stdout
        peaks[library] = json.loads(out.strip().splitlines()[-1])["peak_bytes"]
    rows.append({"model": name, "row": "peak memory (bytes)", "graft_s": peaks["graft"],
                 "transformers_s": peaks["transformers"], "ratio": peaks["transformers"] / peaks["graft"]})
    return rows


def child_env(graft_bin):
    env = dict(os.environ)
    py = os.path.join(os.path.dirname(os.path.abspath(graft_bin)), "python")
    env["PYTHONPATH"] = py + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--graft", required=True, help="the graft binary (its python/ directory holds the module)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch's default)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (both libraries)")
    ap.add_argument("--memory-child", nargs=2, metavar=("LIBRARY", "DIR"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(a.graft)), "python"))
    if a.memory_child:
        return memory_child(*a.memory_child, a.threads, a.device)

    import torch
    import transformers
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    source = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rows = []
    with tempfile.TemporaryDirectory(prefix="graft-peer-") as tmp:
        models = a.models.split(",")
        random_models = [m for m in models if m != "gemma4-facts"]
        if random_models:
            cmd = [a.graft, "bench", "--write-models", tmp, "--models", ",".join(random_models)]
            subprocess.run(cmd + (["--quick"] if a.quick else []), check=True)
        for m in models:
            path = os.path.join(source, "models", "gemma4_facts") if m == "gemma4-facts" else os.path.join(tmp, m)
            print(f"peer: {m}", file=sys.stderr, flush=True)
            rows += compare(m, path, a.repeats, a.quick, a.graft, a.threads, a.device)

    info = {"torch": torch.__version__, "transformers": transformers.__version__, "threads": torch.get_num_threads(),
            "attention": "sdpa", "dtype": "float32", "python": platform.python_version(), "quick": a.quick,
            "device": a.device}
    if a.json:
        print(json.dumps({"info": info, "rows": rows}, indent=1))
        return
    print(f"\ngraft vs transformers {info['transformers']} (torch {info['torch']}, {info['threads']} threads, "
          f"float32, sdpa, {a.device}); ratio = transformers / graft, > 1: graft faster (or smaller)")
    print(f"{'model':<14}{'row':<34}{'graft':>12}{'transformers':>14}{'ratio':>8}  target")
    for r in rows:
        if r["row"].startswith("peak memory"):
            g, h, target = f"{r['graft_s'] / 2**20:.0f} MiB", f"{r['transformers_s'] / 2**20:.0f} MiB", 1.0
        else:
            g, h = f"{r['graft_s'] * 1e3:.1f} ms", f"{r['transformers_s'] * 1e3:.1f} ms"
            target = 1.3 if (r["row"].startswith("forward caching") or
                             (r["row"].startswith("decode") and r["model"] == "gpt2-small")) else 1.0
        verdict = "PASS" if r["ratio"] >= target else "MISS"
        print(f"{r['model']:<14}{r['row']:<34}{g:>12}{h:>14}{r['ratio']:>8.2f}  >= {target:.1f}: {verdict}")


if __name__ == "__main__":
    main()
