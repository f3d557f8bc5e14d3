"""Checks of the routing algorithm against the rest of the scenario (docs/model.md §2.3-§2.4).

Expert choice and Sinkhorn routing have fixed gates and their own balancing, so several settings
that top-K routing takes have no meaning for them; each is refused at the key to change, never
silently ignored. ``report`` is :mod:`moesim.scenario.checks`'s problem list (``add(path,
message, hint, near)``).
"""

from __future__ import annotations

import math

ALGORITHM = ("router", "algorithm")


def check_router_algorithm(scenario, report) -> None:
    """Every rule that ties ``router.algorithm`` and ``balance.bias.mode`` to other settings."""
    _check_bias_mode(scenario, report)
    algorithm = scenario.router.algorithm
    if algorithm in ("expert_choice", "sinkhorn"):
        _check_whole_batch_router(scenario, report)
    if algorithm == "expert_choice":
        _check_expert_choice(scenario, report)
    elif algorithm == "sinkhorn":
        _check_sinkhorn(scenario, report)


def _check_bias_mode(scenario, report) -> None:
    """A multiplicative bias scales positive scores; softmax_after_topk selects on raw logits."""
    bias = scenario.balance.bias
    if (
        bias.enabled
        and bias.mode == "multiplicative"
        and scenario.router.score
        not in (
            "sigmoid",
            "softmax",
        )
    ):
        report.add(
            ("balance", "bias", "mode"),
            "a multiplicative bias needs positive scores: router.score sigmoid or softmax "
            f"(got {scenario.router.score})",
            near=("router", "score"),
        )


def _check_whole_batch_router(scenario, report) -> None:
    """What expert choice and Sinkhorn share: no groups, no expert bias, unnormalised gates."""
    router, name = scenario.router, scenario.router.algorithm
    if router.groups > 1:
        report.add(
            ("router", "groups"),
            f"{name} routing has no expert groups: set router.groups: 1 (got {router.groups})",
            near=ALGORITHM,
        )
    if scenario.balance.bias.enabled:
        report.add(
            ("balance", "bias", "enabled"),
            f"{name} routing balances by itself and takes no expert bias: set "
            "balance.bias.enabled: false",
            near=ALGORITHM,
        )
    if router.normalize:
        report.add(
            ("router", "normalize"),
            f"{name} gates are the scores themselves, unnormalised: set router.normalize: null",
            near=ALGORITHM,
        )


def _check_expert_choice(scenario, report) -> None:
    """Softmax scores, a capacity factor that gives each expert 1..T tokens, no learning."""
    router, tokens = scenario.router, scenario.tokens
    if router.score != "softmax":
        report.add(
            ("router", "score"),
            "expert choice scores with a softmax over the experts (Zhou et al. 2022): set "
            f"router.score: softmax (got {router.score})",
            near=ALGORITHM,
        )
    factor = scenario.capacity.factor
    if factor is None:
        report.add(
            ("capacity", "factor"),
            "expert choice needs a capacity factor: each expert takes ceil(factor * T * top_k / "
            "E) tokens (1.0 = the compute of top-K routing)",
            near=ALGORITHM,
        )
        return
    bucket = math.ceil((tokens.tokens_per_step * router.top_k / router.experts) * factor)
    if bucket > tokens.tokens_per_step:
        report.add(
            ("capacity", "factor"),
            f"each expert would take ceil({factor:g} * {tokens.tokens_per_step} * "
            f"{router.top_k} / {router.experts}) = {bucket} tokens, more than the "
            f"{tokens.tokens_per_step} of a step: factor * top_k must be <= experts",
            near=ALGORITHM,
        )
    if scenario.learning.enabled:
        report.add(
            ("learning", "enabled"),
            "expert choice has no router learning in moesim (a token's gates have no fixed K): "
            "set learning.enabled: false",
            near=ALGORITHM,
        )


def _check_sinkhorn(scenario, report) -> None:
    """Megatron-Core's gates (sigmoid for K = 1, softmax above), no aux loss, no route scale."""
    router = scenario.router
    expected = "sigmoid" if router.top_k == 1 else "softmax"
    if router.score != expected:
        report.add(
            ("router", "score"),
            f"sinkhorn routing gates with the {expected} of the logits when top_k "
            f"{'is 1' if router.top_k == 1 else '> 1'} (Megatron-Core): set router.score: "
            f"{expected} (got {router.score})",
            near=ALGORITHM,
        )
    if scenario.balance.aux.terms():
        report.add(
            ("balance", "aux", "kind"),
            "sinkhorn routing takes no auxiliary balance loss (Megatron-Core refuses it): set "
            "balance.aux.kind: none",
            near=ALGORITHM,
        )
    if router.route_scale != 1.0:
        report.add(
            ("router", "route_scale"),
            f"sinkhorn gates are not scaled (Megatron-Core): set router.route_scale: 1 (got "
            f"{router.route_scale:g})",
            near=ALGORITHM,
        )
