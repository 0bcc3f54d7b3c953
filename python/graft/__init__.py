"""graft: look inside transformer language models and edit what they know.

>>> import graft
>>> model = graft.load("models/gemma4_facts")
>>> logits, cache = model.run_with_cache(model.to_tokens("The capital of Quianeimtum is"))
>>> cache["blocks.3.mlp.hook_post"].shape[-1] == model.arch.intermediate_size_for_layer(3)
True

Hooks and caches: :meth:`Model.run_with_cache`, :meth:`Model.run_with_hooks`, ``with model.hooks(...)``.
Edits: :func:`crown_scan`, :func:`collect_stats`, :func:`rome`, :func:`memit` give a :class:`Patch`;
:meth:`Model.apply_patch`, :meth:`Model.revert_patch`, :meth:`Model.save_pretrained`, :func:`evaluate`.

The native module ``graft._graft`` holds the C++ core; this package is its Pythonic face.
"""

import torch  # noqa: F401  (first: the extension uses torch's own tensor types)

from graft._graft import (
    Architecture,
    CrownScanResult,
    EditRequest,
    EvaluationResult,
    GraftError,
    KeyStatistics,
    Patch,
    Tokenizer,
    __version__,
    format_comparison,
)
from graft.edits import collect_stats, crown_scan, evaluate, load_requests, memit, rome
from graft.model import HookError, HookPoint, Model, load

__all__ = [
    "Architecture",
    "CrownScanResult",
    "EditRequest",
    "EvaluationResult",
    "GraftError",
    "HookError",
    "HookPoint",
    "KeyStatistics",
    "Model",
    "Patch",
    "Tokenizer",
    "__version__",
    "collect_stats",
    "crown_scan",
    "evaluate",
    "format_comparison",
    "load",
    "load_requests",
    "memit",
    "rome",
]
