"""The token stream section (docs/model.md §1)."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
)

from moesim.scenario.schema.base import _Section


class DriftConfig(_Section):
    """Non-stationary token data (docs/model.md §1)."""

    kind: Literal["none", "shift", "rotate", "walk"] = Field(
        "none",
        description="none; shift: weights re-permuted at `at_step`; rotate: weights rotate "
        "through the clusters once per `period`; walk: Gaussian random walk of log-weights.",
    )
    at_step: int = Field(
        0, ge=0, le=100_000_000, description="shift: step at which the weights are re-permuted."
    )
    period: int = Field(
        1000, ge=1, le=100_000_000, description="rotate: steps for one full rotation."
    )
    sigma: float = Field(
        0.01, ge=0, le=10, description="walk: std of the per-step log-weight change."
    )


class TokensConfig(_Section):
    """The token stream: synthetic clusters or a replayed trace (docs/model.md §1)."""

    source: Literal["clusters", "file"] = Field(
        "clusters", description="Synthetic clustered tokens, or rows of a .npy/.npz file."
    )
    tokens_per_step: int = Field(
        4096, ge=1, le=16_777_216, description="T, tokens routed per step (one global batch)."
    )
    dim: int = Field(64, ge=1, le=4096, description="d, embedding dimension (clusters only).")
    clusters: int = Field(32, ge=1, le=100_000, description="C, number of token domains.")
    cluster_weights: Literal["zipf", "dirichlet", "explicit", "uniform"] = Field(
        "zipf", description="How domain frequencies are drawn; skew drives imbalance."
    )
    zipf_exponent: float = Field(1.0, ge=0, le=10, description="Zipf exponent s (0 = uniform).")
    dirichlet_alpha: float = Field(
        1.0, gt=0, le=1e6, description="Dirichlet concentration (small = skewed)."
    )
    explicit_weights: list[float] | None = Field(
        None, description="Domain weights (non-negative, one per cluster) for `explicit`."
    )
    separation: float = Field(
        1.0, ge=0, le=100, description="Scale of the domain means mu_c ~ N(0, I) * separation."
    )
    noise: float = Field(1.0, ge=0, le=100, description="Within-domain noise scale.")
    seq_len: int = Field(
        512, ge=1, le=16_777_216, description="Tokens per sequence; must divide tokens_per_step."
    )
    seq_coherence: float = Field(
        0.5, ge=0, le=1, description="Probability a token keeps its sequence's domain."
    )
    drift: DriftConfig = Field(default_factory=DriftConfig, description="Data drift.")
    file: str | None = Field(
        None, description="Trace file (.npy/.npz, rows are tokens), relative to the scenario."
    )
    file_key: str | None = Field(None, description="Array name in a .npz (default: the only one).")
    file_order: Literal["cycle", "sample"] = Field(
        "cycle", description="Replay rows in order (wrapping) or sample them at random."
    )
    stream_version: int = Field(
        2,
        ge=1,
        le=2,
        description="Numerics of the token stream and the router's scores: 2 = float32 noise "
        "and float32 sigmoid scores (the default); 1 = float64 (moesim 0.1-0.2's results, bit "
        "for bit).",
    )
