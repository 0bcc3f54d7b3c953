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
    CrownScanOptions,
    CrownScanResult,
    EditRequest,
    EvaluateOptions,
    EvaluationResult,
    GraftError,
    KeyStatistics,
    MemitOptions,
    Patch,
    RomeOptions,
    StatsOptions,
    Tokenizer,
    TraceOptions,
    ValueOptions,
    __version__,
    format_comparison,
)
from graft.edits import (
    collect_stats,
    crown_scan,
    crown_scan_options,
    evaluate,
    load_requests,
    memit,
    memit_options,
    rome,
    rome_options,
)
from graft.model import HookError, HookPoint, Model, load

__all__ = [
    "Architecture",
    "CrownScanOptions",
    "CrownScanResult",
    "EditRequest",
    "EvaluateOptions",
    "EvaluationResult",
    "GraftError",
    "HookError",
    "HookPoint",
    "KeyStatistics",
    "MemitOptions",
    "Model",
    "Patch",
    "RomeOptions",
    "StatsOptions",
    "Tokenizer",
    "TraceOptions",
    "ValueOptions",
    "__version__",
    "collect_stats",
    "crown_scan",
    "crown_scan_options",
    "evaluate",
    "format_comparison",
    "load",
    "load_requests",
    "memit",
    "memit_options",
    "rome",
    "rome_options",
]
