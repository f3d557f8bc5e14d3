"""Cross-field checks of the ``deployment`` section (docs/model.md §10): layouts that cannot
exist, limits the router cannot follow, losses that would act on nothing.

Called by :func:`moesim.scenario.checks.cross_problems` with its ``report.add``; each problem is
reported at the key to change, with the setting that needs it.
"""

from __future__ import annotations

from collections.abc import Callable

from moesim.scenario.schema import Scenario

D = "deployment"


def check_deployment(scenario: Scenario, add: Callable) -> None:
    """Add every problem of ``scenario.deployment`` through ``add(path, message, near=...)``."""
    deployment = scenario.deployment
    if not deployment.enabled:
        return
    _check_layout(scenario, add)
    _check_limit(scenario, add)
    v2_devices = (
        deployment.device_balance_alpha > 0
        or deployment.comm_balance_alpha > 0
        or deployment.device_capacity_factor is not None
    )
    if v2_devices and deployment.placement != "contiguous":
        add(
            (D, "placement"),
            "DeepSeek-V2's device losses and dropping count the experts of each GPU: they need "
            "placement: contiguous",
            near=(D, "device_capacity_factor"),
        )
    if (
        deployment.device_balance_alpha > 0 or deployment.comm_balance_alpha > 0
    ) and not scenario.learning.enabled:
        add(
            ("learning", "enabled"),
            "DeepSeek-V2's device and communication losses act through router learning: set "
            "learning.enabled: true",
            near=(D, "device_balance_alpha"),
        )


def _check_layout(scenario: Scenario, add: Callable) -> None:
    """Slots that split evenly over the GPUs; replicas only where a placement places them."""
    deployment = scenario.deployment
    n_gpus = deployment.nodes * deployment.gpus_per_node
    n_experts = scenario.router.experts
    slots = n_experts + deployment.redundant_experts
    if deployment.placement == "contiguous" and deployment.redundant_experts:
        add(
            (D, "redundant_experts"),
            f"replicas need a placement that places them: set {D}.placement: eplb (got "
            f"{deployment.redundant_experts} with contiguous placement)",
            near=(D, "placement"),
        )
    elif slots % n_gpus:
        add(
            (D, "redundant_experts") if deployment.redundant_experts else (D, "nodes"),
            f"router.experts + {D}.redundant_experts = {n_experts} + "
            f"{deployment.redundant_experts} = {slots} physical experts do not split evenly "
            f"over {deployment.nodes} nodes x {deployment.gpus_per_node} GPUs = {n_gpus} GPUs",
            near=("router", "experts"),
        )
    elif slots // n_gpus < 1:
        add((D, "nodes"), f"{n_gpus} GPUs for {slots} physical experts: some GPUs hold none")


def _check_limit(scenario: Scenario, add: Callable) -> None:
    """Node- or device-limited routing needs the experts laid out by target, one per slot."""
    deployment = scenario.deployment
    if deployment.limit == "none":
        return
    router = scenario.router
    targets = (
        deployment.nodes
        if deployment.limit == "nodes"
        else deployment.nodes * deployment.gpus_per_node
    )
    what = "nodes" if deployment.limit == "nodes" else "GPUs"
    path = (D, "max_targets")
    if deployment.placement != "contiguous" or deployment.redundant_experts:
        add(
            (D, "limit"),
            "a node or device limit routes by where experts are: it needs placement: contiguous "
            "and no redundant experts",
            near=(D, "placement"),
        )
    elif router.algorithm != "top_k":
        add(
            (D, "limit"),
            f"a node or device limit is group-limited top-K routing: it needs "
            f"router.algorithm: top_k (got {router.algorithm})",
            near=("router", "algorithm"),
        )
    elif router.groups != 1:
        add(
            ("router", "groups"),
            f"{D}.limit: {deployment.limit} sets the groups itself ({targets} {what}): leave "
            f"router.groups at 1 (got {router.groups})",
            near=(D, "limit"),
        )
    elif router.experts % targets:
        add(
            (D, "limit"),
            f"router.experts={router.experts} do not split evenly over {targets} {what}",
            near=("router", "experts"),
        )
    elif deployment.max_targets > targets:
        add(path, f"must be <= the {targets} {what} (got {deployment.max_targets})")
    elif deployment.max_targets * (router.experts // targets) < router.top_k:
        add(
            path,
            f"{deployment.max_targets} {what} of {router.experts // targets} experts hold fewer "
            f"than router.top_k={router.top_k}",
            near=("router", "top_k"),
        )
    elif deployment.limit == "nodes" and router.top_k % deployment.max_targets:
        add(
            path,
            f"DeepSeek-V3 scores a node by its top K/M experts: router.top_k={router.top_k} must "
            f"be a multiple of M={deployment.max_targets}",
            near=("router", "top_k"),
        )
