"""Random small configurations for the differential sweep against transformers.

Each family has one generator ``fn(rng) -> dict`` that draws a point of that family's configuration
space (the keyword arguments of its transformers config class). A case is
``{"id", "family", "seed", "config"}``: the seed fixes both the draw and the weights, so a case can
be rebuilt from its JSON alone (`GRAFT_SWEEP_ONLY=<id>`, or the regression file).
"""

from __future__ import annotations

import random
from typing import Any, Callable

VOCAB = 128
BASE_SEED = 20_261_123

Config = dict[str, Any]


# ------------------------------------------------------------------------------------------- helpers
def _heads(rng: random.Random, ratios: tuple[int, ...] = (1, 2, 4)) -> tuple[int, int]:
    """(query heads, KV heads) with a GQA ratio from `ratios` (ratio 1: MHA)."""
    ratio = rng.choice(ratios)
    kv = rng.choice([1, 2]) if ratio > 1 else rng.choice([2, 3, 4])
    return kv * ratio, kv


def _layer_types(rng: random.Random, layers: int) -> list[str]:
    """A random sliding/full pattern whose last layer is full (transformers forces that on Gemma 4)."""
    types = [rng.choice(["sliding_attention", "full_attention"]) for _ in range(layers - 1)]
    return types + ["full_attention"]


def _hidden(rng: random.Random, heads: int) -> int:
    """A hidden size between 24 and 96 that the head count divides (transformers validates that)."""
    return heads * rng.choice([w for w in (4, 6, 8, 12, 16, 24, 32) if 24 <= heads * w <= 96])


def _kv_shared_layers(rng: random.Random, types: list[str]) -> int:
    """A num_kv_shared_layers from 0 to most of the depth such that every shared layer finds an earlier
    unshared layer of its type (transformers' forward fails otherwise, and graft rejects the config)."""
    shared = rng.randint(0, len(types) - 1)
    while shared and not set(types[len(types) - shared:]) <= set(types[:len(types) - shared]):
        shared -= 1
    return shared


def _common(rng: random.Random, heads: int) -> Config:
    return {
        "vocab_size": VOCAB,
        "hidden_size": _hidden(rng, heads),
        "intermediate_size": rng.choice([40, 64, 96]),
        "num_hidden_layers": rng.randint(2, 5),
        "max_position_embeddings": 256,
        "initializer_range": 0.1,
        "tie_word_embeddings": rng.random() < 0.5,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }


def _rope_scaling(rng: random.Random, theta: float, max_positions: int) -> tuple[dict, int]:
    """A Llama-family rope_parameters dict (every scaling kind graft reads) and the max_position_embeddings
    that goes with it: dynamic NTK only acts past max_position_embeddings, so it gets a short one."""
    kind = rng.choice(["default", "linear", "dynamic", "llama3", "yarn"])
    rope: dict[str, Any] = {"rope_type": kind, "rope_theta": theta}
    if kind == "linear":
        rope["factor"] = rng.choice([2.0, 4.0, 8.0])
    elif kind == "dynamic":
        rope["factor"] = rng.choice([2.0, 4.0])
        max_positions = rng.choice([8, 12, 16])  # shorter than the prompt and the decode
    elif kind == "llama3":
        rope.update(factor=rng.choice([4.0, 8.0]), low_freq_factor=1.0, high_freq_factor=rng.choice([2.0, 4.0]),
                    original_max_position_embeddings=rng.choice([8, 16, 32]))
    elif kind == "yarn":
        rope.update(factor=rng.choice([2.0, 4.0, 8.0]), original_max_position_embeddings=rng.choice([8, 16, 32]))
        if rng.random() < 0.3:
            rope.update(beta_fast=rng.choice([16.0, 32.0]), beta_slow=rng.choice([1.0, 2.0]))
        if rng.random() < 0.3:
            rope["attention_factor"] = rng.choice([0.8, 1.2])
        elif rng.random() < 0.3:
            rope.update(mscale=rng.choice([0.5, 1.0]), mscale_all_dim=rng.choice([0.5, 1.0, 2.0]))
    return rope, max_positions


# ------------------------------------------------------------------------------------------ families
def llama(rng: random.Random) -> Config:
    q, kv = _heads(rng)
    c = _common(rng, q)
    c.update(num_attention_heads=q, num_key_value_heads=kv, hidden_act="silu", rms_norm_eps=1e-5,
             attention_bias=rng.random() < 0.4, mlp_bias=rng.random() < 0.4)
    if rng.random() < 0.4:
        c["head_dim"] = rng.choice([8, 12, 16, 24])
    theta = rng.choice([10_000.0, 500_000.0])
    c["rope_parameters"], c["max_position_embeddings"] = _rope_scaling(rng, theta, c["max_position_embeddings"])
    return c


def mistral(rng: random.Random) -> Config:
    q, kv = _heads(rng)
    c = _common(rng, q)
    c.update(num_attention_heads=q, num_key_value_heads=kv, hidden_act="silu", rms_norm_eps=1e-5,
             sliding_window=rng.choice([3, 5, 8]), rope_parameters={"rope_type": "default", "rope_theta": 10_000.0})
    if rng.random() < 0.3:
        c["head_dim"] = rng.choice([8, 16])
    return c


def qwen2(rng: random.Random) -> Config:
    q, kv = _heads(rng)
    c = _common(rng, q)
    c.update(num_attention_heads=q, num_key_value_heads=kv, hidden_act="silu", rms_norm_eps=1e-6,
             use_sliding_window=False, rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0})
    return c


def qwen3(rng: random.Random) -> Config:
    q, kv = _heads(rng)
    c = _common(rng, q)
    c.update(num_attention_heads=q, num_key_value_heads=kv, hidden_act="silu", rms_norm_eps=1e-6,
             head_dim=rng.choice([8, 16, 24]), attention_bias=rng.random() < 0.3, use_sliding_window=False,
             rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0})
    return c


def gemma2(rng: random.Random) -> Config:
    q, kv = _heads(rng)
    c = _common(rng, q)
    c.update(num_attention_heads=q, num_key_value_heads=kv, head_dim=rng.choice([8, 16]),
             hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6, sliding_window=rng.choice([3, 5, 8]),
             query_pre_attn_scalar=rng.choice([8, 16, 24]), attention_bias=rng.random() < 0.3,
             attn_logit_softcapping=rng.choice([None, 5.0, 50.0]),
             final_logit_softcapping=rng.choice([None, 3.0, 30.0]),
             layer_types=[rng.choice(["sliding_attention", "full_attention"]) for _ in range(c["num_hidden_layers"])],
             rope_parameters={"rope_type": "default", "rope_theta": 10_000.0})
    return c


def gemma3(rng: random.Random) -> Config:
    q, kv = _heads(rng)
    c = _common(rng, q)
    full = {"rope_type": "default", "rope_theta": 1_000_000.0}
    if rng.random() < 0.5:
        full = {"rope_type": "linear", "factor": rng.choice([2.0, 8.0]), "rope_theta": 1_000_000.0}
    c.update(num_attention_heads=q, num_key_value_heads=kv, head_dim=rng.choice([8, 16]),
             hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6, sliding_window=rng.choice([3, 5, 8]),
             query_pre_attn_scalar=rng.choice([8, 16, 24]), attention_bias=rng.random() < 0.3,
             attn_logit_softcapping=rng.choice([None, 5.0]), final_logit_softcapping=rng.choice([None, 3.0]),
             layer_types=[rng.choice(["sliding_attention", "full_attention"]) for _ in range(c["num_hidden_layers"])],
             rope_parameters={"full_attention": full,
                              "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0}})
    return c


def gpt2(rng: random.Random) -> Config:
    heads = rng.choice([1, 3, 5, 7])
    return {"vocab_size": VOCAB, "n_embd": heads * rng.choice([4, 8, 12]), "n_head": heads,
            "n_layer": rng.randint(2, 5), "n_positions": 64, "n_inner": rng.choice([None, 40, 96]),
            "activation_function": rng.choice(["gelu_new", "gelu_new", "relu", "gelu"]),
            "initializer_range": 0.1, "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2}


def gemma4(rng: random.Random) -> Config:
    layers = rng.randint(2, 6)
    q, kv = _heads(rng)
    head_dim = rng.choice([8, 16])
    types = _layer_types(rng, layers)
    c: Config = {
        "vocab_size": VOCAB, "hidden_size": _hidden(rng, q), "intermediate_size": rng.choice([32, 48, 64]),
        "num_hidden_layers": layers, "num_attention_heads": q, "num_key_value_heads": kv, "head_dim": head_dim,
        "global_head_dim": rng.choice([head_dim, 2 * head_dim, 32]), "hidden_activation": "gelu_pytorch_tanh",
        "max_position_embeddings": 256, "initializer_range": 0.1, "rms_norm_eps": 1e-6,
        "tie_word_embeddings": rng.random() < 0.7, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
        "sliding_window": rng.choice([3, 5, 8]), "layer_types": types,
        "final_logit_softcapping": rng.choice([None, 3.0, 30.0]),
        "num_kv_shared_layers": _kv_shared_layers(rng, types),
        "use_double_wide_mlp": rng.random() < 0.5,
        "hidden_size_per_layer_input": rng.choice([0, 4, 8]),
        "vocab_size_per_layer_input": VOCAB,
        "rope_parameters": {
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
            "full_attention": {"rope_type": "proportional", "rope_theta": 1_000_000.0,
                               "partial_rotary_factor": rng.choice([0.25, 0.5, 1.0])},
        },
    }
    if rng.random() < 0.3:
        c["rope_parameters"]["full_attention"]["factor"] = rng.choice([2.0, 8.0])
    if rng.random() < 0.35:
        c["attention_k_eq_v"] = True
        if rng.random() < 0.7:
            c["num_global_key_value_heads"] = rng.choice([h for h in (1, 2, 4) if q % h == 0])
    if rng.random() < 0.2:
        c["attention_bias"] = True
    if rng.random() < 0.35:
        experts = rng.choice([2, 3, 4, 8])
        c.update(enable_moe_block=True, num_experts=experts, top_k_experts=rng.randint(1, min(experts, 3)),
                 moe_intermediate_size=rng.choice([16, 24, 32]))
    return c


def gemma4_multimodal(rng: random.Random) -> Config:
    """The text config of a Gemma4ForConditionalGeneration (no vision or audio tower)."""
    return gemma4(rng)


def gemma3_multimodal(rng: random.Random) -> Config:
    """The text config of a Gemma3ForConditionalGeneration (with a one-layer vision tower graft ignores)."""
    return gemma3(rng)


FAMILIES: dict[str, Callable[[random.Random], Config]] = {
    "llama": llama, "mistral": mistral, "qwen2": qwen2, "qwen3": qwen3, "gemma2": gemma2, "gemma3": gemma3,
    "gpt2": gpt2, "gemma4": gemma4, "gemma4_multimodal": gemma4_multimodal, "gemma3_multimodal": gemma3_multimodal,
}
# How often each family is drawn (Llama and Gemma 4 have the largest spaces).
WEIGHTS = {"llama": 3, "mistral": 1, "qwen2": 1, "qwen3": 1, "gemma2": 1, "gemma3": 1, "gpt2": 1, "gemma4": 3,
           "gemma4_multimodal": 1, "gemma3_multimodal": 1}


def make_case(index: int) -> dict[str, Any]:
    """Case `index` of the sweep: its family (round robin, weighted) and configuration (seeded)."""
    order = [name for name, weight in WEIGHTS.items() for _ in range(weight)]
    family = order[index % len(order)]
    seed = BASE_SEED + index
    return {"id": f"{family}-{index}", "family": family, "seed": seed,
            "config": FAMILIES[family](random.Random(seed))}


def make_cases(count: int) -> list[dict[str, Any]]:
    return [make_case(i) for i in range(count)]
