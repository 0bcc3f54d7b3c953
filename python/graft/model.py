"""The Pythonic model: forward passes with TransformerLens-style hooks and caches, and generation.

Everything runs in the C++ core; tensors cross as torch.Tensor without copies.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

import torch

from graft import _graft

HookFn = Callable[[torch.Tensor, "HookPoint"], Optional[torch.Tensor]]
NamesFilter = Union[None, str, Sequence[str], Callable[[str], bool]]


class HookError(RuntimeError):
    """An exception raised inside a user's hook; the message names the hook, ``__cause__`` is the original."""


@dataclass(frozen=True)
class HookPoint:
    """Passed to hook functions as their second argument (``hook.name``, ``hook.layer``)."""

    name: str

    @property
    def layer(self) -> Optional[int]:
        """The block index, or None for model-level points (hook_embed, ln_final, hook_logits)."""
        parts = self.name.split(".")
        return int(parts[1]) if parts[0] == "blocks" else None


def _wrap(name: str, fn: HookFn):
    point = HookPoint(name)

    def call(tensor: torch.Tensor, _native_name: str):
        try:
            return fn(tensor, point)
        except Exception as error:  # re-raised with the hook's name; the original is the cause
            raise HookError(f"hook {name!r} raised {type(error).__name__}: {error}") from error

    return call


class Model:
    """A model loaded by :func:`graft.load`. Call it like a function to get logits."""

    def __init__(self, native: "_graft.Model"):
        self._native = native
        self._context_hooks: list[tuple[str, HookFn]] = []

    # ------------------------------------------------------------------ facts
    @property
    def arch(self) -> "_graft.Architecture":
        """Every per-layer fact (``intermediate_size_for_layer(i)``, ``kv_source(i)``, ...)."""
        return self._native.arch

    @property
    def tokenizer(self) -> Optional["_graft.Tokenizer"]:
        return self._native.tokenizer

    @property
    def device(self) -> torch.device:
        return torch.device(self._native.device)

    @property
    def dtype(self) -> torch.dtype:
        return getattr(torch, self._native.dtype)

    @property
    def path(self) -> str:
        return self._native.dir

    def hook_names(self) -> list[str]:
        """The hook point names this model offers, in forward order."""
        return list(self._native.hook_names())

    def __repr__(self) -> str:
        return (f"graft.Model({self.path!r}, family={self.arch.family!r}, layers={self.arch.num_layers}, "
                f"device={self._native.device!r}, dtype={self._native.dtype!r})")

    # ------------------------------------------------------------------ text
    def to_tokens(self, text: Union[str, Sequence[str]], prepend_bos: Optional[bool] = None) -> torch.Tensor:
        """Token ids [batch, seq] for a prompt (or a list of prompts, left-padded).

        BOS is added as the model's tokenizer config asks unless ``prepend_bos`` says otherwise.
        """
        ids, _ = self._encode_batch([text] if isinstance(text, str) else list(text), prepend_bos)
        return ids

    def _encode_batch(self, texts: list[str], prepend_bos: Optional[bool]):
        tokenizer = self._require_tokenizer()
        rows = []
        for text in texts:
            ids = tokenizer.encode(text, add_special_tokens=False)
            bos = tokenizer.bos_id
            add = tokenizer.adds_bos if prepend_bos is None else prepend_bos
            if add and bos is not None:
                ids = [bos] + ids
            rows.append(ids)
        width = max(len(r) for r in rows)
        pad = tokenizer.pad_id if tokenizer.pad_id is not None else 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            if row:
                ids[i, width - len(row):] = torch.tensor(row)
                mask[i, width - len(row):] = 1
        return ids, mask

    def _require_tokenizer(self):
        if self.tokenizer is None:
            raise _graft.GraftError(f"{self.path}: no tokenizer.json in the model directory")
        return self.tokenizer

    # ------------------------------------------------------------------ forward
    def __call__(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                 position_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits [batch, seq, vocab] for ``input_ids`` [batch, seq] (or [seq])."""
        logits, _ = self._forward(input_ids, attention_mask, position_ids, [], [])
        return logits

    def run_with_cache(self, input_ids: torch.Tensor, names: NamesFilter = None,
                       attention_mask: Optional[torch.Tensor] = None,
                       position_ids: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Run and record activations: ``(logits, cache)`` with ``cache["blocks.3.mlp.hook_post"]``.

        ``names``: None (every hook point), one name, a list of names, or a predicate on names.
        """
        return self._forward(input_ids, attention_mask, position_ids, [], self._select(names))

    def run_with_hooks(self, input_ids: torch.Tensor, fwd_hooks: Iterable[tuple[str, HookFn]] = (),
                       attention_mask: Optional[torch.Tensor] = None,
                       position_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Run with hooks ``fn(tensor, hook)`` that may return a replacement of the same shape."""
        logits, _ = self._forward(input_ids, attention_mask, position_ids, list(fwd_hooks), [])
        return logits

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple[str, HookFn]]) -> Iterator["Model"]:
        """``with model.hooks([(name, fn)]):`` applies the hooks to every run inside the block."""
        added = list(fwd_hooks)
        for name, _ in added:
            self._check_name(name)
        self._context_hooks.extend(added)
        try:
            yield self
        finally:
            del self._context_hooks[len(self._context_hooks) - len(added):]

    def _check_name(self, name: str) -> None:
        if name not in set(self.hook_names()):
            # The native parser gives the precise reason (unknown, out of range, KV-shared layer).
            self._native.forward(torch.zeros((1, 1), dtype=torch.long), cache=[name])

    def _select(self, names: NamesFilter) -> list[str]:
        available = self.hook_names()
        if names is None:
            return available
        if isinstance(names, str):
            return [names]
        if callable(names):
            return [n for n in available if names(n)]
        return list(names)

    def _forward(self, input_ids, attention_mask, position_ids, hooks, cache):
        ids = torch.as_tensor(input_ids)
        all_hooks = [(name, _wrap(name, fn)) for name, fn in [*self._context_hooks, *hooks]]
        logits, recorded = self._native.forward(ids, attention_mask, position_ids, all_hooks, cache)
        return logits, dict(recorded)

    # ------------------------------------------------------------------ generation
    def generate(self, prompt: Union[str, Sequence[str], torch.Tensor], max_new_tokens: int = 32,
                 temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
                 stop_tokens: Optional[Sequence[int]] = None) -> Union[str, list[str], torch.Tensor]:
        """Continue a prompt with the KV cache: greedy (temperature 0) or sampled.

        A string (or list of strings) gives text back, prompt included; token ids give ids back.
        Stops at the model's EOS unless ``stop_tokens`` says otherwise.
        """
        if isinstance(prompt, torch.Tensor):
            ids, _ = self._native.generate(prompt, None, max_new_tokens, temperature, top_k, top_p, seed,
                                           None if stop_tokens is None else list(stop_tokens))
            return ids
        texts = [prompt] if isinstance(prompt, str) else list(prompt)
        ids, mask = self._encode_batch(texts, None)
        out, out_mask = self._native.generate(ids, mask, max_new_tokens, temperature, top_k, top_p, seed,
                                              None if stop_tokens is None else list(stop_tokens))
        tokenizer = self._require_tokenizer()
        decoded = [tokenizer.decode(row[m.bool()].tolist(), skip_special_tokens=True) for row, m in zip(out, out_mask)]
        return decoded[0] if isinstance(prompt, str) else decoded


def load(path: str, device: str = "cpu", dtype: Optional[Union[str, torch.dtype]] = None) -> Model:
    """Load a HuggingFace model directory (config.json, safetensors, tokenizer.json).

    ``device``: "cpu", "cuda", "cuda:N" or "mps". ``dtype``: None (the checkpoint's), or
    float32 / bfloat16 / float16 (a string or a torch.dtype).
    """
    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).replace("torch.", "")
    return Model(_graft.Model.load(str(path), device, dtype))
