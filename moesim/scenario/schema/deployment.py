"""The ``deployment`` section: experts on GPUs and nodes, node- and device-limited routing,
DeepSeek-V2's device losses and dropping, and the hardware the step time is priced on
(docs/model.md §10). Off by default: a scenario without it runs as before, bit for bit.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from moesim.scenario.schema.base import _Section

#: DeepSeek-V3 expert: three matrices of 7168 x 2048, two FLOPs per multiply-add (forward).
V3_EXPERT_FLOPS = 2 * 3 * 7168 * 2048


class DeploymentConfig(_Section):
    """Expert-parallel deployment (docs/model.md §10); `enabled: false` leaves every result
    unchanged."""

    enabled: bool = Field(False, description="Model the deployment (GPUs, traffic, step time).")
    nodes: int = Field(1, ge=1, le=4096, description="N, nodes.")
    gpus_per_node: int = Field(8, ge=1, le=1024, description="GPUs per node.")
    placement: Literal["contiguous", "eplb"] = Field(
        "contiguous",
        description="contiguous: expert e on GPU e // (E/G), no replicas; eplb: deepseek-ai/EPLB "
        "on the loads of the rebalance window (uniform loads before the first window).",
    )
    redundant_experts: int = Field(
        0,
        ge=0,
        le=65536,
        description="R, extra physical experts (replicas of loaded ones; eplb placement only); "
        "E + R must split evenly over the GPUs.",
    )
    replica_choice: Literal["round_robin", "least_loaded"] = Field(
        "round_robin",
        description="How an assignment picks among its expert's replicas: in turn, or the "
        "replica on the GPU with the fewest assignments so far in the step.",
    )
    rebalance_interval: int | None = Field(
        None,
        ge=1,
        le=100_000_000,
        description="eplb: steps between new placements after the first, which is made when the "
        "first window is complete (vLLM: 3000; SGLang: 1000); null = keep the first (a stale "
        "plan).",
    )
    rebalance_window: int = Field(
        1000,
        ge=1,
        le=100_000_000,
        description="eplb: steps of loads a placement is computed from (vLLM: 1000).",
    )
    expert_bytes: float = Field(
        3 * 7168 * 2048,
        ge=0,
        le=1e15,
        description="Bytes of one expert's weights, the cost of moving it (DeepSeek-V3, FP8).",
    )
    limit: Literal["none", "nodes", "devices"] = Field(
        "none",
        description="Routing limit that follows the placement: nodes = DeepSeek-V3 (at most "
        "`max_targets` nodes, chosen by the sum of each node's top K/M scores); devices = "
        "DeepSeek-V2 (at most `max_targets` GPUs, by each GPU's best score). Needs contiguous "
        "placement and router.groups 1.",
    )
    max_targets: int = Field(
        4, ge=1, le=65536, description="M, nodes (or devices) a token may reach under `limit`."
    )
    device_balance_alpha: float = Field(
        0.0,
        ge=0,
        le=1e6,
        description="alpha2 of DeepSeek-V2's device-level balance loss (V2: 0.05); needs learning.",
    )
    comm_balance_alpha: float = Field(
        0.0,
        ge=0,
        le=1e6,
        description="alpha3 of DeepSeek-V2's communication balance loss (V2: 0.02); needs "
        "learning.",
    )
    device_capacity_factor: float | None = Field(
        None,
        gt=0,
        le=1e6,
        description="DeepSeek-V2's device-level dropping: a GPU keeps at most this times T*K/G "
        "assignments, its lowest gate weights dropped first (V2: 1.0); null drops nothing.",
    )
    hidden_size: int = Field(7168, ge=1, le=1 << 20, description="h, elements per token.")
    dispatch_bytes: float = Field(
        1.0, gt=0, le=16, description="Bytes per element dispatched (DeepSeek-V3: FP8, 1)."
    )
    combine_bytes: float = Field(
        2.0, gt=0, le=16, description="Bytes per element combined (DeepSeek-V3: BF16, 2)."
    )
    nvlink_gbps: float = Field(
        160.0, gt=0, le=1e6, description="NVLink GB/s per GPU and direction (DeepSeek-V3: 160)."
    )
    ib_gbps: float = Field(
        50.0, gt=0, le=1e6, description="InfiniBand GB/s per GPU and direction (DeepSeek-V3: 50)."
    )
    expert_flops_per_token: float = Field(
        float(V3_EXPERT_FLOPS),
        gt=0,
        le=1e15,
        description="FLOPs of one token through one expert (DeepSeek-V3 forward: 2*3*7168*2048; "
        "x3 for forward and backward).",
    )
    gpu_tflops: float = Field(
        400.0,
        gt=0,
        le=1e6,
        description="Achieved TFLOP/s of one GPU on expert GEMMs (not the peak).",
    )
    load_trace: str | None = Field(
        None,
        description="A per-expert load trace to replay instead of routing tokens (docs/eplb.md, "
        "'Load traces'; relative to the scenario): each step's loads of each MoE layer come "
        "from it; traffic needs token-level routing and is not reported.",
    )
    load_trace_format: Literal["auto", "megatron", "npy", "csv"] = Field(
        "auto", description="The trace's format (`moesim trace eplb --format`)."
    )
    load_trace_expert_parallel: int | None = Field(
        None,
        ge=1,
        le=65536,
        description="Megatron traces: expert-parallel ranks (`moesim trace eplb "
        "--expert-parallel`; null: every rank file is one).",
    )
    overlap: bool = Field(
        True,
        description="Compute and communication overlap (DeepSeek-V3's DualPipe, two-batch "
        "overlap): a GPU is busy max(compute, comm); false: compute + comm.",
    )
