"""Cross-field checks of the ``deployment`` section (docs/model.md §10): layouts that cannot
exist, limits the router cannot follow, losses that would act on nothing.

Called by :func:`moesim.scenario.checks.cross_problems` with its ``report.add``; each problem is
reported at the key to change, with the setting that needs it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from moesim.scenario.layers import moe_layer_numbers
from moesim.scenario.schema import Scenario

D = "deployment"


def check_deployment(scenario: Scenario, add: Callable) -> None:
    """Add every problem of ``scenario.deployment`` through ``add(path, message, near=...)``."""
    deployment = scenario.deployment
    if not deployment.enabled:
        if deployment.load_trace is not None:
            add(
                (D, "enabled"),
                f"{D}.load_trace replays loads through the deployment: set {D}.enabled: true",
                near=(D, "load_trace"),
            )
        return
    _check_layout(scenario, add)
    if deployment.load_trace is not None:
        check_load_trace_replay(scenario, add)
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


def check_load_trace_replay(scenario: Scenario, add: Callable) -> None:
    """A replayed load trace (docs/eplb.md, "Replaying a trace in a scenario"): settings that
    act on routed tokens refused, and the trace readable with the scenario's sizes.

    A trace holds per-expert counts only: no scores to bias, no tokens to learn from, drop or
    limit, and no record of which experts each token chose.
    """
    deployment = scenario.deployment
    here = (D, "load_trace")
    acting = [
        (("learning", "enabled"), scenario.learning.enabled, "learning.enabled: false"),
        (
            ("balance", "bias", "enabled"),
            scenario.balance.bias.enabled,
            "balance.bias.enabled: false",
        ),
        (("balance", "aux", "alpha"), bool(scenario.balance.aux.terms()), "balance.aux.kind: none"),
        (("capacity", "factor"), scenario.capacity.factor is not None, "capacity.factor: null"),
        ((D, "limit"), deployment.limit != "none", f"{D}.limit: none"),
        (
            (D, "device_capacity_factor"),
            deployment.device_capacity_factor is not None,
            f"{D}.device_capacity_factor: null",
        ),
        (
            (D, "replica_choice"),
            deployment.replica_choice != "round_robin",
            f"{D}.replica_choice: round_robin (a replayed load is split evenly over its replicas: "
            "least_loaded needs the order of the assignments)",
        ),
        (("tokens", "source"), scenario.tokens.source != "clusters", "tokens.source: clusters"),
    ]
    for path, refused, fix in acting:
        if refused:
            add(
                path,
                f"a replayed load trace has per-expert counts, not routed tokens, so this would "
                f"act on nothing: set {fix}",
                near=here,
            )
    for i, entry in enumerate(scenario.by_layer):
        if entry.overrides():
            add(
                ("by_layer", i),
                "a replayed load trace routes nothing, so per-layer router, balance, capacity or "
                "learning settings would act on nothing: keep only `layers` and `dense`",
                near=here,
            )
    # Imported here: the readers are only needed by scenarios that replay a trace.
    from moesim.deployment.traces import LoadTraceError

    try:
        n_steps, n_layers, n_experts = checked_load_trace_once(
            deployment.load_trace,
            deployment.load_trace_format,
            deployment.load_trace_expert_parallel,
        )
    except LoadTraceError as error:
        add(here, str(error))
        return
    held = f"the trace holds {n_steps} steps x {n_layers} MoE layers x {n_experts} experts"
    moe_layers = len(moe_layer_numbers(scenario))
    if n_layers != moe_layers:
        add(("layers",), f"{held}, but the scenario has {moe_layers} MoE layer(s)", near=here)
    if n_experts != scenario.router.experts:
        add(
            ("router", "experts"),
            f"{held}, but router.experts is {scenario.router.experts}",
            near=here,
        )
    if scenario.steps > n_steps:
        add(
            ("steps",),
            f"{held}, but the scenario runs {scenario.steps} steps: set steps <= {n_steps}",
            near=here,
        )


def checked_load_trace_once(file: str, format: str, expert_parallel: int | None) -> tuple:
    """``(steps, layers, experts)`` of a trace, read once per file version (variants and sweep
    runs re-validate the base)."""
    path = Path(file)
    stat = path.stat() if path.is_file() else None
    signature = (stat.st_size, stat.st_mtime_ns) if stat else None
    if path.is_dir():
        signature = tuple(
            (f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(path.iterdir())
        )
    return _checked_load_trace(file, format, expert_parallel, signature)


@functools.lru_cache(maxsize=16)
def _checked_load_trace(file: str, format: str, expert_parallel: int | None, signature) -> tuple:
    from moesim.deployment.traces import MegatronLayout, check_load_trace

    return check_load_trace(file, format, MegatronLayout(expert_parallel=expert_parallel))
