"""graft: look inside transformer language models and edit what they know.

>>> import graft
>>> model = graft.load("models/gemma4_facts")
>>> logits, cache = model.run_with_cache(model.to_tokens("The capital of Quianeimtum is"))
>>> cache["blocks.3.mlp.hook_post"].shape[-1] == model.arch.intermediate_size_for_layer(3)
True

The native module ``graft._graft`` holds the C++ core; this package is its Pythonic face.
"""

from graft._graft import Architecture, GraftError, Tokenizer, __version__
from graft.model import HookError, HookPoint, Model, load

__all__ = ["Architecture", "GraftError", "HookError", "HookPoint", "Model", "Tokenizer", "__version__", "load"]
