"""Editing what a model knows: crown-scan, key statistics, ROME, MEMIT, patches and evaluation.

>>> import graft
>>> model = graft.load("models/gemma4_facts")
>>> request = graft.load_requests("tests/data/facts/requests.json")[0]
>>> stats = graft.collect_stats(model, "models/facts_corpus.txt")
>>> patch = graft.rome(model, request, stats=stats)      # layer picked by crown-scan
>>> model.apply_patch(patch)
>>> print(graft.evaluate(model, [request]))           # efficacy, paraphrase, neighborhood

Every editor returns a :class:`graft.Patch` and leaves the model as it was; applying the patch is a
separate, revertible step (:meth:`graft.Model.apply_patch`, :meth:`graft.Model.revert_patch`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterable, Mapping, Optional, Sequence, Union

from graft import _graft
from graft._graft import CrownScanResult, EditRequest, EvaluationResult, KeyStatistics, Patch

if TYPE_CHECKING:
    from graft.model import Model

__all__ = ["collect_stats", "crown_scan", "crown_scan_options", "evaluate", "load_requests", "memit", "memit_options",
           "rome", "rome_options"]

PathLike = Union[str, "os.PathLike[str]"]
RequestLike = Union[EditRequest, Mapping[str, object]]
StatsLike = Union[KeyStatistics, PathLike]


def load_requests(path: PathLike) -> list[EditRequest]:
    """Read CounterFact-style edit requests from a JSON file (an array, or one object).

    GraftError naming the file, the index and the key for a missing ``{}``, an empty subject or
    target, or a value of the wrong type.
    """
    return list(EditRequest.load(os.fspath(path)))


def _request(request: RequestLike) -> EditRequest:
    if isinstance(request, EditRequest):
        return request
    if isinstance(request, Mapping):
        return EditRequest.from_dict(dict(request))
    raise _graft.GraftError(f"an edit request must be a graft.EditRequest or a dict, got {type(request).__name__}")


def _requests(requests: Union[RequestLike, Iterable[RequestLike]]) -> list[EditRequest]:
    if isinstance(requests, (EditRequest, Mapping)):
        return [_request(requests)]
    out = [_request(r) for r in requests]
    if not out:
        raise _graft.GraftError("no edit requests given")
    return out


def _stats(model: Model, stats: StatsLike) -> KeyStatistics:
    if isinstance(stats, KeyStatistics):
        return stats
    if isinstance(stats, (str, os.PathLike)):
        return KeyStatistics.load(os.fspath(stats), model.native)
    raise _graft.GraftError(
        f"stats must be graft.KeyStatistics or the path of saved statistics, got {type(stats).__name__}")


def _options(options: object, overrides: Mapping[str, object], renamed: Mapping[str, str]) -> object:
    """Set each override that is not None on ``options`` (a default-constructed graft.*Options).

    ``renamed`` maps a keyword to its field path ("bare_weight" -> "value.bare_prompt_weight").
    Every default therefore comes from the C++ struct; None means "the default".
    """
    for keyword, value in overrides.items():
        if value is None:
            continue
        target, path = options, renamed.get(keyword, keyword).split(".")
        for part in path[:-1]:
            target = getattr(target, part)
        if not hasattr(target, path[-1]):
            raise _graft.GraftError(f"{keyword}: not an option of {type(options).__name__}")
        setattr(target, path[-1], value)
    return options


# Keyword -> field of the options struct, where the two names differ.
_CROWN_SCAN_FIELDS = {"samples": "tracing.samples", "noise": "tracing.noise", "seed": "tracing.seed"}
_VALUE_FIELDS = {"steps": "value.steps", "learning_rate": "value.learning_rate", "kl_factor": "value.kl_factor",
                 "clamp_norm_factor": "value.clamp_norm_factor", "weight_decay": "value.weight_decay",
                 "bare_weight": "value.bare_prompt_weight", "leakage_weight": "value.leakage_weight"}


def crown_scan_options(**overrides: object) -> _graft.CrownScanOptions:
    """The options :func:`crown_scan` runs with: graft's defaults with ``overrides`` (its keywords) set."""
    return _options(_graft.CrownScanOptions(), overrides, _CROWN_SCAN_FIELDS)


def rome_options(**overrides: object) -> _graft.RomeOptions:
    """The options :func:`rome` runs with: graft's defaults with ``overrides`` (its keywords) set."""
    return _options(_graft.RomeOptions(), overrides, _VALUE_FIELDS)


def memit_options(**overrides: object) -> _graft.MemitOptions:
    """The options :func:`memit` runs with: graft's defaults with ``overrides`` (its keywords) set."""
    return _options(_graft.MemitOptions(), overrides, _VALUE_FIELDS)


def crown_scan(model: Model, prompt: str, subject: str, expect: Optional[str] = None, *, samples: Optional[int] = None,
               noise: Optional[float] = None, seed: Optional[int] = None, window: Optional[int] = None,
               trace: Optional[bool] = None) -> CrownScanResult:
    """Where does the model keep a fact? Per-layer ablation and causal tracing at the subject's last token.

    ``prompt`` holds ``{}`` where ``subject`` goes; ``expect`` is the answer to watch (None: the
    model's own top-1 next token). ``result.layers[i]`` has each layer's effects and
    ``result.picked_layer`` the layer ROME should edit (largest MLP-window indirect effect when
    ``trace``, else the largest ablation drop). ``str(result)`` is the text report. Options left at
    None take graft's defaults (``graft.CrownScanOptions()``: 10 samples, noise 3 sigma, seed 1,
    window 0 = 10 layers but at most half the depth, traced), the same as the CLI's.
    """
    options = crown_scan_options(samples=samples, noise=noise, seed=seed, window=window, trace=trace)
    return _graft.crown_scan(model.native, prompt, subject, expect, options)


def collect_stats(model: Model, texts: Union[Sequence[str], PathLike], layers: Optional[Iterable[int]] = None, *,
                  max_tokens: Optional[int] = None, window: Optional[int] = None,
                  batch_size: Optional[int] = None) -> KeyStatistics:
    """Second moments E[k k^T] of the MLP keys (``blocks.{i}.mlp.hook_post``) over a corpus.

    ``texts``: a list of strings, or the path of a UTF-8 file with one text per line. ``layers``:
    the layers to collect (None: every layer). ROME and MEMIT need the layers they edit; save the
    result with ``stats.save(path)`` and pass the path (or the object) as ``stats=`` later. Options
    left at None take graft's defaults (``graft.StatsOptions()``).
    """
    if isinstance(texts, (str, os.PathLike)):
        corpus = KeyStatistics.read_corpus(os.fspath(texts))
    else:
        corpus = list(texts)
        if not all(isinstance(t, str) for t in corpus):
            raise _graft.GraftError("texts must be strings (or one path)")
    overrides = {"max_tokens": max_tokens, "window": window, "batch_size": batch_size}
    options = _options(_graft.StatsOptions(), overrides, {})
    options.layers = sorted(set(layers or []))
    return KeyStatistics.collect(model.native, corpus, options)


def rome(model: Model, request: RequestLike, layer: Optional[int] = None, *, stats: StatsLike,
         covariance_adjustment: Optional[bool] = None, consistent_keys: Optional[bool] = None,
         seed: Optional[int] = None, steps: Optional[int] = None, learning_rate: Optional[float] = None,
         kl_factor: Optional[float] = None, clamp_norm_factor: Optional[float] = None, fact_token: Optional[str] = None,
         traced_tokens: Optional[int] = None, bare_weight: Optional[float] = None,
         leakage_weight: Optional[float] = None, through_update: Optional[bool] = None) -> Patch:
    """ROME: rewrite one fact with a rank-1 update of one layer's MLP down projection.

    ``request``: a :class:`graft.EditRequest` or a dict like the entries of requests.json.
    ``layer``: the layer to edit; None picks it with :func:`crown_scan` (watching ``target_true``).
    ``stats``: :class:`graft.KeyStatistics` holding that layer (or the path of saved ones).
    ``fact_token``: "last" (the subject's last token, as published), "traced" (the subject token
    whose hidden state causal tracing finds carries the fact) or "subject" (every subject token, one
    key and value each: a rank-P update; what small models that spread a fact over a name need).
    ``traced_tokens``: with "traced", how many of the best-restoring subject tokens to edit.
    ``consistent_keys=False`` puts the bare prompt's keys in the constraint, as the original code.
    ``bare_weight``: the bare prompt's share of the target likelihood the values are optimised for
    (the prefixed contexts share the rest); -1: every context counts the same, as published.
    ``leakage_weight``: adds the update's expected squared change of the MLP output over the
    statistics' tokens (relative to the output) to the value objective, times this weight; 0: off.
    ``through_update``: optimise the values through the rank-P update they imply, applied at every
    position of every prompt (the target's own tokens included), instead of as vectors added at the
    fact tokens alone; the update written is the one optimised.
    Options left at None take graft's defaults, ``graft.RomeOptions()`` (what the CLI uses too);
    :func:`rome_options` shows what a call resolves to. Returns a :class:`graft.Patch`; the model
    itself is not changed (apply the patch with :meth:`graft.Model.apply_patch`).
    """
    edit = _request(request)
    if layer is None:
        layer = crown_scan(model, edit.prompt, edit.subject, edit.target_true).picked_layer
    options = rome_options(layer=int(layer), covariance_adjustment=covariance_adjustment,
                           consistent_keys=consistent_keys, seed=seed, steps=steps, learning_rate=learning_rate,
                           kl_factor=kl_factor, clamp_norm_factor=clamp_norm_factor, fact_token=fact_token,
                           traced_tokens=traced_tokens, bare_weight=bare_weight, leakage_weight=leakage_weight,
                           through_update=through_update)
    return _graft.rome(model.native, edit, _stats(model, stats), options)


def memit(model: Model, requests: Union[RequestLike, Iterable[RequestLike]], layers: Iterable[int], *,
          stats: StatsLike, covariance_weight: Optional[float] = None, seed: Optional[int] = None,
          steps: Optional[int] = None, learning_rate: Optional[float] = None, kl_factor: Optional[float] = None,
          clamp_norm_factor: Optional[float] = None, fact_token: Optional[str] = None, targets: Optional[str] = None,
          traced_tokens: Optional[int] = None, bare_weight: Optional[float] = None,
          leakage_weight: Optional[float] = None) -> Patch:
    """MEMIT: rewrite many facts at once, spreading the change over ``layers`` (e.g. ``range(2, 6)``).

    ``stats`` must hold every one of the layers; ``covariance_weight`` is MEMIT's lambda.
    ``fact_token`` as for :func:`rome` ("subject": keys and values at every subject token).
    ``targets``: "residual" (published: z* at the last layer's residual, split over the layers),
    "per-layer" (v* re-optimised at each layer's MLP output; needed where the MLP output is normalised
    before the residual, as in Gemma), "joint" (the values optimised through the update the solve
    makes of them: every layer edited at once, the requests' changes crossing) or "auto" (per-layer
    exactly for sandwich-norm models, else residual). ``bare_weight`` as for :func:`rome`;
    ``leakage_weight`` as for :func:`rome`, with ``targets="joint"`` only. Requests about the same
    subject share its vectors. Options left at None take graft's defaults, ``graft.MemitOptions()``.
    Returns a :class:`graft.Patch` with one update per layer; the model itself is not changed.
    """
    layer_list = [int(layer) for layer in layers]
    if not layer_list:
        raise _graft.GraftError("memit needs at least one layer")
    options = memit_options(layers=layer_list, covariance_weight=covariance_weight, seed=seed, steps=steps,
                            learning_rate=learning_rate, kl_factor=kl_factor, clamp_norm_factor=clamp_norm_factor,
                            fact_token=fact_token, targets=targets, traced_tokens=traced_tokens,
                            bare_weight=bare_weight, leakage_weight=leakage_weight)
    return _graft.memit(model.native, _requests(requests), _stats(model, stats), options)


def evaluate(model: Model, requests: Union[RequestLike, Iterable[RequestLike]], *,
             batch_size: Optional[int] = None) -> EvaluationResult:
    """CounterFact-style scores of the model as it is (patches applied included).

    ``result.efficacy``, ``result.paraphrase`` and ``result.neighborhood`` hold the success rates
    (new target beats the true one; neighbours keep their answers), the probability margins and
    top-1 accuracies; ``result.score`` is their harmonic mean. Every request needs ``target_true``.
    ``str(result)`` is a table; :func:`graft.format_comparison` puts two results side by side.
    """
    options = _options(_graft.EvaluateOptions(), {"batch_size": batch_size}, {})
    return _graft.evaluate(model.native, _requests(requests), options)
