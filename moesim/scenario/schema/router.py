"""The router section: experts, top-K, scores, groups (docs/model.md §2)."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
)

from moesim.scenario.schema.base import _Section


class RouterConfig(_Section):
    """Scores and selection (docs/model.md §2)."""

    input_jitter: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="eps: the router input is multiplied element-wise by Uniform(1 - eps, "
        "1 + eps), fresh each step (Switch Transformer, Megatron-Core moe_input_jitter_eps; "
        "1e-2 is usual); 0 = off.",
    )
    experts: int = Field(256, ge=1, le=65536, description="E, routed experts.")
    top_k: int = Field(8, ge=1, le=65536, description="K, experts per token.")
    algorithm: Literal["top_k", "noisy_top_k", "expert_choice", "sinkhorn"] = Field(
        "top_k",
        description="top_k: token-choice top-K of the scores (+ bias); noisy_top_k: Shazeer et "
        "al. 2017, top-K of x W_g + N(0, 1) softplus(x W_noise), softmax over the K "
        "(needs score: softmax_after_topk; docs/model.md §2.1); expert_choice: each expert "
        "takes its best ceil(capacity.factor * T * K / E) tokens of the batch (Zhou et al. "
        "2022; §2.3); sinkhorn: top-K of the Sinkhorn-balanced token-expert matrix, as "
        "Megatron-Core trains (§2.4).",
    )
    score: Literal["sigmoid", "softmax", "softmax_after_topk"] = Field(
        "sigmoid",
        description="sigmoid (DeepSeek-V3), softmax over all experts (DeepSeek-V2, Switch), or "
        "softmax over the K selected logits (Mixtral, Megatron default).",
    )
    groups: int = Field(1, ge=1, le=65536, description="Expert groups G (group-limited routing).")
    topk_groups: int = Field(1, ge=1, le=65536, description="Groups kept per token, G_k.")
    group_score_topk: int | None = Field(
        None,
        ge=1,
        le=65536,
        description="Scores summed for a group's score; null = DeepSeek-V3 rule (2 with a "
        "bias, 1 without). Megatron-Core uses top_k // topk_groups.",
    )
    normalize: bool | None = Field(
        None, description="Normalise the selected weights; null = true for sigmoid only."
    )
    route_scale: float = Field(
        1.0, gt=0, le=1e6, description="Multiplier of the gate weights (DeepSeek-V3: 2.5)."
    )
    shared_experts: int = Field(
        0, ge=0, le=1024, description="Shared experts (compute accounting only; never routed)."
    )
    init_scale: float = Field(
        1.0, ge=0, le=1e3, description="Initial centroids W ~ N(0, 1) * init_scale."
    )
    init_skew: float = Field(
        0.0,
        ge=0,
        le=1e3,
        description="Head start of the first E/16 experts along a common direction (a collapse "
        "seed).",
    )
    zero_init: bool = Field(
        False,
        description="noisy_top_k: W_g and W_noise start at zero (no signal, some noise: loads "
        "start balanced), as Shazeer et al. 2017 appendix A; else W_noise ~ N(0, 1) * "
        "init_scale like W_g.",
    )
