"""Routing options: the score codes, the kernels' ``RouterSpec``, and the checks behind it.

:func:`resolve_router_spec` is the one declaration of the routing options and their defaults
(docs/model.md §2); :func:`prepare_routing` checks logits, bias and options for
:func:`moesim.route` and ``moesim.routing_step``. Plain Python: nothing here is compiled.
"""

from __future__ import annotations

import inspect
from typing import NamedTuple

import numpy as np

from moesim.errors import suggest
from moesim.kernels.checks import (
    check_choice,
    check_finite,
    check_float_array,
    check_integer,
    check_real,
)

SCORE_SIGMOID = 0
SCORE_SOFTMAX = 1
SCORE_SOFTMAX_AFTER_TOPK = 2
SCORE_CODES = {
    "sigmoid": SCORE_SIGMOID,
    "softmax": SCORE_SOFTMAX,
    "softmax_after_topk": SCORE_SOFTMAX_AFTER_TOPK,
}
#: How the expert bias enters selection: ``S + b`` (DeepSeek-V3) or ``S * b`` (Loss-Free Table 4).
BIAS_MODES = ("additive", "multiplicative")


class RouterSpec(NamedTuple):
    """Resolved routing options, as the kernels take them (all defaults applied)."""

    top_k: int
    score_code: int
    n_groups: int
    topk_groups: int
    group_score_topk: int
    normalize: bool
    route_scale: float
    #: sigmoid scores of float32 logits computed in float32 (token stream version 2 on, and
    #: ``moesim.route``), not in float64 and rounded (stream version 1); docs/model.md §2.
    float32_scores: bool = False
    multiplicative_bias: bool = False


def _check_logits(logits) -> np.ndarray:
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(
            f"logits is {logits.ndim}-dimensional and must be 2-dimensional [tokens, experts]"
        )
    if logits.dtype not in (np.float32, np.float64):
        raise ValueError(f"logits has dtype {logits.dtype}; it must be float32 or float64")
    if logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"logits has shape {logits.shape}; it needs at least one token and expert")
    check_finite("logits", logits)
    return np.ascontiguousarray(logits)


def _check_bias(bias, n_experts: int, dtype) -> tuple[np.ndarray, bool]:
    if bias is None:
        return np.zeros(n_experts, dtype=dtype), False
    bias = np.asarray(bias)
    if bias.shape != (n_experts,):
        raise ValueError(f"bias has shape {bias.shape}; it must have shape ({n_experts},)")
    # A finite float64 bias can still overflow the float32 logits' dtype (1e39 -> inf).
    return check_float_array("bias", bias, dtype, "the logits' dtype"), True


def resolve_router_spec(
    n_experts: int,
    *,
    top_k: int,
    score: str = "sigmoid",
    n_groups: int = 1,
    topk_groups: int = 1,
    group_score_topk: int | None = None,
    normalize: bool | None = None,
    route_scale: float = 1.0,
    bias_mode: str = "additive",
    has_bias: bool = False,
) -> RouterSpec:
    """Check routing options against ``n_experts`` and fill in the DeepSeek defaults.

    The one declaration of the routing options and their defaults on the kernels' side:
    :func:`moesim.route` spells the same keywords out for its documented signature (a test keeps the
    two equal), ``routing_step`` and :func:`prepare_routing` forward them, and the engine maps a
    scenario's ``router`` section onto them.

    Parameters
    ----------
    n_experts : int
        E, the number of experts the options are checked against.
    top_k, score, n_groups, topk_groups, group_score_topk, normalize, route_scale, bias_mode
        As for :func:`moesim.route`.
    has_bias : bool
        Whether selection adds an expert bias (DeepSeek-V3's default ``group_score_topk``
        depends on it).

    Returns
    -------
    RouterSpec
        The options as the kernels take them, every default applied.

    Raises
    ------
    ValueError
        Naming the argument and the constraint it breaks.
    """
    score = check_choice("score", score, SCORE_CODES)
    top_k = check_integer("top_k", top_k)
    n_groups = check_integer("n_groups", n_groups)
    topk_groups = check_integer("topk_groups", topk_groups)
    if not 1 <= top_k <= n_experts:
        raise ValueError(f"top_k is {top_k}; it must be between 1 and the {n_experts} experts")
    group_score_topk = _resolve_groups(
        n_experts, top_k, n_groups, topk_groups, group_score_topk, has_bias
    )
    if normalize is None:
        normalize = score == "sigmoid"
    elif not isinstance(normalize, (bool, np.bool_)):
        raise ValueError(f"normalize is {normalize!r}; it must be True, False or None")
    route_scale = check_real("route_scale", route_scale, positive=True)
    bias_mode = check_choice("bias_mode", bias_mode, BIAS_MODES)
    if bias_mode == "multiplicative" and score == "softmax_after_topk":
        raise ValueError(
            "bias_mode 'multiplicative' needs positive scores (sigmoid or softmax): "
            "softmax_after_topk selects on raw logits, which a factor b cannot rank"
        )
    return RouterSpec(
        top_k,
        SCORE_CODES[score],
        n_groups,
        topk_groups,
        group_score_topk,
        bool(normalize),
        route_scale,
        multiplicative_bias=bias_mode == "multiplicative",
    )


def _resolve_groups(
    n_experts: int,
    top_k: int,
    n_groups: int,
    topk_groups: int,
    group_score_topk: int | None,
    has_bias: bool,
) -> int:
    """Check the group options against each other; returns ``group_score_topk`` resolved."""
    if n_groups < 1 or n_experts % n_groups:
        raise ValueError(
            f"n_groups is {n_groups}; it must divide the number of experts {n_experts}"
        )
    if not 1 <= topk_groups <= n_groups:
        raise ValueError(
            f"topk_groups is {topk_groups}; it must be between 1 and n_groups={n_groups}"
        )
    group_size = n_experts // n_groups
    if n_groups > 1 and topk_groups * group_size < top_k:
        raise ValueError(
            f"topk_groups * experts per group = {topk_groups} * {group_size} < top_k = {top_k}: "
            "the kept groups hold too few experts"
        )
    if group_score_topk is None:
        # DeepSeek-V3 Gate: sum of the top two with a bias, the max without.
        group_score_topk = 2 if has_bias else 1
        group_score_topk = min(group_score_topk, group_size)
    group_score_topk = check_integer("group_score_topk", group_score_topk)
    if n_groups > 1 and not 1 <= group_score_topk <= group_size:
        raise ValueError(
            f"group_score_topk is {group_score_topk}; it must be between 1 and the {group_size} "
            "experts of a group"
        )
    return group_score_topk


#: Names of the routing options, the keyword arguments of :func:`moesim.route` (read from
#: :func:`resolve_router_spec`, where they are declared).
ROUTER_OPTIONS = tuple(
    name
    for name, parameter in inspect.signature(resolve_router_spec).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name != "has_bias"
)


def prepare_routing(logits, bias, **router_options):
    """Validate logits, bias and routing options; returns ``(logits, bias, has_bias, spec)``.

    The logits come back C-contiguous, the bias in the logits' dtype (zeros when absent), and
    ``spec`` with every default resolved (float32 logits get float32 sigmoid scores). Shared by
    :func:`moesim.route` and ``routing_step``.

    Raises
    ------
    TypeError
        For a keyword that is not one of :data:`ROUTER_OPTIONS` (with the closest one).
    ValueError
        Naming the argument and the constraint it breaks.
    """
    for name in router_options:
        if name not in ROUTER_OPTIONS:
            hint = suggest(name, ROUTER_OPTIONS)
            raise TypeError(
                f"{name!r} is not a routing option"
                + (f"; {hint}" if hint else f"; the options are {', '.join(ROUTER_OPTIONS)}")
            )
    logits = _check_logits(logits)
    bias, has_bias = _check_bias(bias, logits.shape[1], logits.dtype)
    spec = resolve_router_spec(logits.shape[1], has_bias=has_bias, **router_options)
    return logits, bias, has_bias, spec._replace(float32_scores=logits.dtype == np.float32)
