"""The Pythonic model: forward passes with TransformerLens-style hooks and caches, and generation.

Everything runs in the C++ core. Tensors cross the boundary as ``torch.Tensor`` without copies: the
logits, every cached activation and every tensor a hook sees live on the model's device, and
:meth:`Model.weight` is the very tensor the forward pass reads.
"""

from __future__ import annotations

import contextlib
import difflib
import os
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

import torch

from graft import _graft

__all__ = ["HookError", "HookFn", "HookPoint", "Model", "NamesFilter", "load"]

HookFn = Callable[[torch.Tensor, "HookPoint"], Optional[torch.Tensor]]
"""A hook: ``fn(tensor, hook) -> None | torch.Tensor`` (a replacement of the same shape)."""

NamesFilter = Union[None, str, Sequence[str], Callable[[str], bool]]
"""Which hook points to cache: None (all), one name, a list of names, or a predicate on names."""

PathLike = Union[str, "os.PathLike[str]"]


class HookError(RuntimeError):
    """A user's hook raised. The message names the hook point; ``__cause__`` is the original exception."""


@dataclass(frozen=True)
class HookPoint:
    """The second argument of every hook: which point it runs at (``hook.name``, ``hook.layer``)."""

    name: str

    @property
    def layer(self) -> Optional[int]:
        """The block index, or None for model-level points (hook_embed, ln_final, hook_logits)."""
        parts = self.name.split(".")
        return int(parts[1]) if parts[0] == "blocks" else None


def _wrap(name: str, fn: HookFn) -> Callable[[torch.Tensor, str], Optional[torch.Tensor]]:
    """Adapts a user hook to the native calling convention and names the hook in its errors."""
    point = HookPoint(name)

    def call(tensor: torch.Tensor, _native_name: str) -> Optional[torch.Tensor]:
        try:
            return fn(tensor, point)
        except Exception as error:  # re-raised with the hook's name; the original is the cause
            raise HookError(f"hook {name!r} ({getattr(fn, '__name__', type(fn).__name__)}) raised "
                            f"{type(error).__name__}: {error}") from error

    return call


class Model:
    """A model loaded by :func:`graft.load`. Call it like a function to get logits.

    The object wraps the native ``graft._graft.Model``; hooks registered with :meth:`hooks` apply to
    every forward pass inside the ``with`` block. Nothing a forward pass does (a hook that raises, a
    replacement of the wrong shape, an unknown hook name) changes the model.
    """

    def __init__(self, native: _graft.Model) -> None:
        self._native = native
        self._context_hooks: list[tuple[str, HookFn]] = []
        self._hook_names: list[str] = list(native.hook_names())
        self._hook_name_set = frozenset(self._hook_names)
        self._patch_stack: Optional[_graft.PatchStack] = None
        self._applied: list[_graft.Patch] = []

    # ------------------------------------------------------------------ facts
    @property
    def native(self) -> _graft.Model:
        """The native model object (``graft._graft.Model``) this wraps."""
        return self._native

    @property
    def arch(self) -> _graft.Architecture:
        """Every per-layer fact (``intermediate_size_for_layer(i)``, ``kv_source(i)``, ...)."""
        return self._native.arch

    @property
    def tokenizer(self) -> Optional[_graft.Tokenizer]:
        """The model's tokenizer, or None when the directory has no tokenizer.json."""
        return self._native.tokenizer

    @property
    def device(self) -> torch.device:
        """Where the weights live and every output tensor is returned."""
        return torch.device(self._native.device)

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype (the checkpoint's unless :func:`load` was given another)."""
        return getattr(torch, self._native.dtype)

    @property
    def path(self) -> str:
        """The model directory this was loaded from."""
        return self._native.dir

    @property
    def num_layers(self) -> int:
        """Number of decoder blocks (``arch.num_layers``)."""
        return self.arch.num_layers

    def hook_names(self) -> list[str]:
        """The hook point names this model offers, in forward order."""
        return list(self._hook_names)

    def weight(self, name: str) -> torch.Tensor:
        """The live weight tensor behind a HuggingFace tensor name.

        It shares memory with what the forward pass reads: an in-place change shows in the next run
        (the checkpoint file on disk is never written). GraftError naming the tensor when the model
        has no such weight.
        """
        return self._native.weight(name)

    def weight_names(self) -> list[str]:
        """The HuggingFace names of every weight the model uses, sorted."""
        return list(self._native.weight_names())

    def __repr__(self) -> str:
        return (f"graft.Model({self.path!r}, family={self.arch.family!r}, layers={self.arch.num_layers}, "
                f"device={self._native.device!r}, dtype={self._native.dtype!r})")

    # ------------------------------------------------------------------ text
    def to_tokens(self, text: Union[str, Sequence[str]], prepend_bos: Optional[bool] = None) -> torch.Tensor:
        """Token ids ``[batch, seq]`` (int64, on the model's device) for a prompt or a list of prompts.

        A list is left-padded with the tokenizer's pad id. BOS is added as the model's tokenizer
        config asks, and always where the architecture needs it (``arch.always_prepend_bos``: Gemma),
        as the editors encode prompts, unless ``prepend_bos`` says otherwise.
        """
        ids, _ = self._encode_batch([text] if isinstance(text, str) else list(text), prepend_bos)
        return ids

    def to_str_tokens(self, text: str, prepend_bos: Optional[bool] = None) -> list[str]:
        """The token strings of one prompt, as :meth:`to_tokens` splits it (for plot labels)."""
        tokenizer = self._require_tokenizer()
        ids = self.to_tokens(text, prepend_bos)[0].tolist()
        # Each token's text is what it adds to the decoded prefix: decoding a token alone would drop
        # the leading space a Metaspace (SentencePiece-style) decoder strips from the first token.
        pieces, previous = [], ""
        for end in range(1, len(ids) + 1):
            decoded = tokenizer.decode(ids[:end])
            pieces.append(decoded[len(previous):] if decoded.startswith(previous) else tokenizer.decode([ids[end - 1]]))
            previous = decoded
        return pieces

    def to_string(self, ids: Union[torch.Tensor, Sequence[int]], skip_special_tokens: bool = False) -> str:
        """The text of a 1-D sequence of token ids."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise _graft.GraftError(f"to_string takes one sequence of ids, got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        return self._require_tokenizer().decode(list(ids), skip_special_tokens=skip_special_tokens)

    def _encode_batch(self, texts: list[str], prepend_bos: Optional[bool]) -> tuple[torch.Tensor, torch.Tensor]:
        if not texts:
            raise _graft.GraftError("no prompt given")
        tokenizer = self._require_tokenizer()
        add = (tokenizer.adds_bos or self.arch.always_prepend_bos) if prepend_bos is None else prepend_bos
        bos = tokenizer.bos_id
        rows = []
        for text in texts:
            if not isinstance(text, str):
                raise _graft.GraftError(f"a prompt must be a str, got {type(text).__name__}")
            ids = tokenizer.encode(text, add_special_tokens=False)
            rows.append(([bos] if add and bos is not None else []) + ids)
        width = max(len(r) for r in rows)
        if width == 0:
            raise _graft.GraftError("the prompt encodes to no tokens")
        pad = tokenizer.pad_id if tokenizer.pad_id is not None else 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            if row:
                ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
                mask[i, width - len(row):] = 1
        return ids.to(self.device), mask.to(self.device)

    def _require_tokenizer(self) -> _graft.Tokenizer:
        tokenizer = self.tokenizer
        if tokenizer is None:
            raise _graft.GraftError(f"{self.path}: no tokenizer.json in the model directory")
        return tokenizer

    # ------------------------------------------------------------------ forward
    def __call__(self, input_ids: Union[torch.Tensor, str, Sequence[int]],
                 attention_mask: Optional[torch.Tensor] = None,
                 position_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits ``[batch, seq, vocab]`` for ``input_ids`` ``[batch, seq]`` (or ``[seq]``, or a string)."""
        logits, _ = self._forward(input_ids, attention_mask, position_ids, [], [])
        return logits

    def run_with_cache(self, input_ids: Union[torch.Tensor, str, Sequence[int]], names: NamesFilter = None,
                       attention_mask: Optional[torch.Tensor] = None, position_ids: Optional[torch.Tensor] = None,
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Run and record activations: ``(logits, cache)`` with ``cache["blocks.3.mlp.hook_post"]``.

        ``names``: None (every hook point), one name, a list of names, or a predicate on names.
        The cached tensors are the forward pass's own (detached, no copy), on the model's device.
        Hooks active through :meth:`hooks` run too; the cache holds what they saw.
        """
        return self._forward(input_ids, attention_mask, position_ids, [], self._select(names))

    def run_with_hooks(self, input_ids: Union[torch.Tensor, str, Sequence[int]],
                       fwd_hooks: Iterable[tuple[str, HookFn]] = (),
                       attention_mask: Optional[torch.Tensor] = None,
                       position_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits of a run with hooks ``fn(tensor, hook)`` that may return a replacement of the same shape.

        Several hooks at one point run in order. A hook that raises surfaces as :class:`HookError`
        naming the hook; a replacement of the wrong shape as :class:`GraftError` naming it.
        """
        logits, _ = self._forward(input_ids, attention_mask, position_ids, list(fwd_hooks), [])
        return logits

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple[str, HookFn]]) -> Iterator[Model]:
        """``with model.hooks([(name, fn)]):`` applies the hooks to every run inside the block.

        Names are checked on entry (GraftError for an unknown name); the hooks are removed on exit,
        also when the block raises.
        """
        added = list(fwd_hooks)
        self._validate([name for name, _ in added])
        self._context_hooks.extend(added)
        try:
            yield self
        finally:
            del self._context_hooks[len(self._context_hooks) - len(added):]

    def _validate(self, names: Iterable[str]) -> None:
        """GraftError for a name the model does not offer: the native reason plus close matches."""
        for name in names:
            if not isinstance(name, str):
                raise _graft.GraftError(f"a hook name must be a str, got {type(name).__name__}")
            if name in self._hook_name_set:
                continue
            try:  # the native parser gives the precise reason (unknown, out of range, KV-shared layer)
                self._native.check_hook_name(name)
                message = f"hook {name!r} is not offered by this model"
            except _graft.GraftError as error:
                message = str(error)
            close = difflib.get_close_matches(name, self._hook_names, n=3)
            if close:
                message += "; did you mean " + ", ".join(repr(c) for c in close) + "?"
            raise _graft.GraftError(message)

    def _select(self, names: NamesFilter) -> list[str]:
        if names is None:
            return self.hook_names()
        if isinstance(names, str):
            return [names]
        if callable(names):
            return [n for n in self._hook_names if names(n)]
        return list(names)

    def _as_ids(self, input_ids: Union[torch.Tensor, str, Sequence[int]]) -> torch.Tensor:
        if isinstance(input_ids, str):
            return self.to_tokens(input_ids)
        ids = torch.as_tensor(input_ids)
        if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.is_complex():
            raise _graft.GraftError(f"input_ids must hold integers, got {ids.dtype}")
        if ids.dim() not in (1, 2) or ids.numel() == 0:
            raise _graft.GraftError(
                f"input_ids must be [seq] or [batch, seq] and non-empty, got shape {tuple(ids.shape)}")
        return ids.long()

    def _forward(self, input_ids: Union[torch.Tensor, str, Sequence[int]], attention_mask: Optional[torch.Tensor],
                 position_ids: Optional[torch.Tensor], hooks: list[tuple[str, HookFn]],
                 cache: list[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        all_hooks = [*self._context_hooks, *hooks]
        self._validate([name for name, _ in all_hooks])
        self._validate(cache)
        for name, fn in all_hooks:
            if not callable(fn):
                raise _graft.GraftError(f"the hook for {name!r} is not callable ({type(fn).__name__})")
        ids = self._as_ids(input_ids)
        wrapped = [(name, _wrap(name, fn)) for name, fn in all_hooks]
        logits, recorded = self._native.forward(ids, attention_mask, position_ids, wrapped, cache)
        return logits, dict(recorded)

    # ------------------------------------------------------------------ patches
    def apply_patch(self, patch: Union[_graft.Patch, PathLike]) -> None:
        """Apply an edit (a :class:`graft.Patch` or the path of a patch file) to the weights in memory.

        GraftError saying why when the patch was made for another model (model type, tensor shapes,
        fingerprint of the base weights) or is already applied; the model is then unchanged.
        """
        if not isinstance(patch, _graft.Patch):
            patch = _graft.Patch.load(os.fspath(patch))
        if self._patch_stack is None:
            self._patch_stack = _graft.PatchStack(self._native)
        if self._patch_stack.is_applied(patch):
            raise _graft.GraftError(f"patch {patch.checksum[:12]} is already applied")
        self._patch_stack.apply(patch)
        self._applied.append(patch)

    def revert_patch(self, patch: Optional[_graft.Patch] = None) -> None:
        """Undo an applied patch bit for bit (None: every applied patch, newest first).

        GraftError when it is not applied, or when a patch applied after it touches the same tensors
        (revert that one first).
        """
        if self._patch_stack is None or not self._applied:
            raise _graft.GraftError("no patch is applied to this model")
        if patch is None:
            self._patch_stack.revert_all()
            self._applied.clear()
            return
        self._patch_stack.revert(patch)
        self._applied = [p for p in self._applied if p.checksum != patch.checksum]

    @property
    def applied_patches(self) -> list[_graft.Patch]:
        """The patches applied in memory, oldest first."""
        return list(self._applied)

    def save_pretrained(self, out_dir: PathLike, overwrite: bool = False) -> None:
        """Write a HuggingFace model directory: this model's files with the applied patches in its weights.

        The weights are computed from the checkpoint on disk plus every applied patch (in float64,
        cast once to the stored dtype) and the directory records the patches (graft_patches.json),
        so it loads in graft and in transformers and reverts to its base exactly. Only patches are
        saved: other in-place changes to :meth:`weight` tensors are not. The directory is written
        under a temporary name and renamed; ``overwrite`` replaces an existing one.
        """
        _graft.apply_patches_to_directory(self.path, self._applied, os.fspath(out_dir), overwrite)

    # ------------------------------------------------------------------ generation
    def generate(self, prompt: Union[str, Sequence[str], torch.Tensor], max_new_tokens: int = 32,
                 temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
                 stop_tokens: Optional[Sequence[int]] = None) -> Union[str, list[str], torch.Tensor]:
        """Continue a prompt with the KV cache: greedy (temperature 0) or sampled (top-k, top-p, seed).

        A string (or list of strings) gives text back, prompt included; token ids ``[batch, seq]``
        give ids back. Stops at the model's EOS unless ``stop_tokens`` says otherwise.
        Hooks active through :meth:`hooks` do not apply to generation.
        """
        stops = None if stop_tokens is None else [int(t) for t in stop_tokens]
        if isinstance(prompt, torch.Tensor):
            ids, _ = self._native.generate(self._as_ids(prompt), None, max_new_tokens, temperature, top_k, top_p,
                                           seed, stops)
            return ids
        texts = [prompt] if isinstance(prompt, str) else list(prompt)
        ids, mask = self._encode_batch(texts, None)
        out, out_mask = self._native.generate(ids, mask, max_new_tokens, temperature, top_k, top_p, seed, stops)
        tokenizer = self._require_tokenizer()
        decoded = [tokenizer.decode(row[m.bool()].tolist(), skip_special_tokens=True) for row, m in zip(out, out_mask)]
        return decoded[0] if isinstance(prompt, str) else decoded


def load(path: PathLike, device: Union[str, torch.device] = "cpu",
         dtype: Optional[Union[str, torch.dtype]] = None) -> Model:
    """Load a HuggingFace model directory (config.json, safetensors weights, tokenizer.json).

    ``device``: "cpu", "cuda", "cuda:N" or "mps" (or a torch.device). ``dtype``: None (the
    checkpoint's own), or float32 / bfloat16 / float16, as a string or a torch.dtype.
    Raises GraftError (a ValueError) naming the file or tensor when ``path`` is not a model graft
    can load.
    """
    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).replace("torch.", "")
    return Model(_graft.Model.load(os.fspath(path), str(device), dtype))
