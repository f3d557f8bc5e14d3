"""The router's cross-field checks: K of E, groups, noisy top-K (docs/model.md §2.1)."""

from __future__ import annotations

from moesim.scenario.checks.problems import Report
from moesim.scenario.schema import (
    SHAZEER_KINDS,
    RouterConfig,
    Scenario,
)


def check_router(router: RouterConfig, report: Report) -> None:
    """K experts out of E, and groups that divide the experts and can hold K of them."""
    if router.top_k > router.experts:
        report.add(
            ("router", "top_k"),
            f"must be <= router.experts (got top_k={router.top_k}, experts={router.experts})",
            near=("router", "experts"),
        )
    if router.experts % router.groups:
        report.add(
            ("router", "groups"),
            f"must divide router.experts={router.experts} (got {router.groups})",
            near=("router", "experts"),
        )
    elif router.topk_groups > router.groups:
        report.add(
            ("router", "topk_groups"),
            f"must be <= router.groups={router.groups} (got {router.topk_groups})",
            near=("router", "groups"),
        )
    elif router.groups > 1:
        group_size = router.experts // router.groups
        if router.topk_groups * group_size < router.top_k:
            report.add(
                ("router", "topk_groups"),
                f"kept groups hold {router.topk_groups} x "
                f"{group_size} = {router.topk_groups * group_size} experts, fewer than "
                f"router.top_k={router.top_k}",
                near=("router", "groups"),
            )
        if router.group_score_topk is not None and router.group_score_topk > group_size:
            report.add(
                ("router", "group_score_topk"),
                f"must be <= experts per group {group_size} (got {router.group_score_topk})",
            )


def check_noisy_top_k(scenario: Scenario, report: Report) -> None:
    """Noisy top-K gating (docs/model.md §2.1) with what it is defined with, and its options
    (zero init, the importance and load losses) only with it."""
    router, aux = scenario.router, scenario.balance.aux
    algorithm = ("router", "algorithm")
    shazeer = [kind for kind in aux.kinds if kind in SHAZEER_KINDS]
    if router.algorithm != "noisy_top_k":
        if router.zero_init:
            report.add(
                ("router", "zero_init"),
                "starts W_g and W_noise at zero, which only noisy_top_k has (with top_k every "
                "logit would be 0 and every token would pick experts 0..K-1)",
                "set router.algorithm: noisy_top_k, or leave zero_init out",
                near=algorithm,
            )
        if shazeer:
            report.add(
                ("balance", "aux", "kind"),
                f"{shazeer[0]!r} is a loss of Shazeer et al.'s noisy top-K gating, defined on "
                "its noisy gates (the load estimator needs the noise)",
                "set router.algorithm: noisy_top_k, or use batch, sequence or global",
                near=algorithm,
            )
        return
    if router.score != "softmax_after_topk":
        report.add(
            ("router", "score"),
            f"noisy_top_k gates with a softmax over the K kept noisy logits (got {router.score!r})",
            "set router.score: softmax_after_topk",
            near=algorithm,
        )
    if router.groups > 1:
        report.add(
            ("router", "groups"),
            "noisy_top_k chooses among all experts: group-limited routing is not defined for it "
            "(Shazeer et al.'s hierarchical MoE is a different model)",
            "set router.groups: 1",
            near=algorithm,
        )
    if router.top_k >= router.experts:
        report.add(
            ("router", "top_k"),
            f"noisy_top_k needs top_k < experts (got {router.top_k} of {router.experts}): with "
            "every expert kept the noise chooses nothing, and the load estimator's k-th "
            "largest of the other experts does not exist",
            near=algorithm,
        )
