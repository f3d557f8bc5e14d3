"""The scenario schema: one pydantic model per section, every field with a default, bounds and
a description (the source of docs/scenarios.md, written by ``moesim schema --markdown``).

One module per group of sections; this package puts them together into :class:`Scenario`.
Unknown keys are rejected; values are strict (YAML has already typed them). Checks that involve
several fields live in :mod:`moesim.scenario.checks`.
"""

from __future__ import annotations

import yaml
from pydantic import ConfigDict, Field

from moesim.scenario.schema.balance import (
    SHAZEER_KINDS,
    AuxConfig,
    BalanceConfig,
    BiasConfig,
    CapacityConfig,
)
from moesim.scenario.schema.base import NAME_PATTERN, _Section
from moesim.scenario.schema.deployment import DeploymentConfig
from moesim.scenario.schema.layers import (
    LAYER_SECTIONS,
    MAX_LAYERS,
    LayerSettings,
    TokenPathsConfig,
)
from moesim.scenario.schema.learning import LearningConfig
from moesim.scenario.schema.output import MetricsConfig, OutputConfig, PublishedPoint, SweepConfig
from moesim.scenario.schema.router import RouterConfig
from moesim.scenario.schema.tokens import DriftConfig, TokensConfig

__all__ = [
    "AuxConfig",
    "BalanceConfig",
    "BiasConfig",
    "CapacityConfig",
    "DeploymentConfig",
    "DriftConfig",
    "LAYER_SECTIONS",
    "LayerSettings",
    "LearningConfig",
    "MAX_LAYERS",
    "MetricsConfig",
    "NAME_PATTERN",
    "OutputConfig",
    "PublishedPoint",
    "RouterConfig",
    "SECTIONS",
    "SHAZEER_KINDS",
    "Scenario",
    "SweepConfig",
    "TokenPathsConfig",
    "TokensConfig",
    "Variant",
]


class Variant(_Section):
    """A named partial override of the base scenario."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(..., pattern=NAME_PATTERN, description="Unique variant name.")


class Scenario(_Section):
    """A complete scenario: every section has defaults."""

    name: str = Field(
        "scenario", pattern=NAME_PATTERN, description="Name; the default results folder."
    )
    description: str = Field("", description="Free text.")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Seed of every random stream.")
    steps: int = Field(1000, ge=1, le=100_000_000, description="Steps to simulate.")
    layers: int = Field(
        1,
        ge=1,
        le=MAX_LAYERS,
        description="Layers of the model, each with its own router, bias and learning state "
        "(docs/model.md §1.1); 1 is the single layer of moesim 0.1.",
    )
    tokens: TokensConfig = Field(default_factory=TokensConfig, description="Token stream.")
    router: RouterConfig = Field(default_factory=RouterConfig, description="Router.")
    balance: BalanceConfig = Field(default_factory=BalanceConfig, description="Balancing.")
    capacity: CapacityConfig = Field(default_factory=CapacityConfig, description="Capacity.")
    learning: LearningConfig = Field(default_factory=LearningConfig, description="Learning.")
    token_paths: TokenPathsConfig = Field(
        default_factory=TokenPathsConfig,
        description="How router inputs carry from layer to layer (with `layers` > 1).",
    )
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="Metrics.")
    output: OutputConfig = Field(default_factory=OutputConfig, description="Output.")
    deployment: DeploymentConfig = Field(
        default_factory=DeploymentConfig, description="Expert-parallel deployment (default off)."
    )
    sweep: SweepConfig = Field(default_factory=SweepConfig, description="Parameter sweep.")
    by_layer: list[LayerSettings] = Field(
        default_factory=list,
        description="Settings that differ by layer (docs/model.md §1.1): dense layers, and "
        "partial router, balance, capacity and learning sections for chosen layers.",
    )
    variants: list[Variant] = Field(
        default_factory=list, description="Named partial overrides, run on the same tokens."
    )
    published: list[PublishedPoint] = Field(
        default_factory=list,
        description="Published numbers this scenario reproduces (`moesim papers`); `moesim run` "
        "ignores them.",
    )

    def resolved_dict(self) -> dict:
        """Every field, defaults filled in (JSON-compatible)."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        """The resolved scenario as YAML (every default filled in, keys in schema order)."""
        return yaml.safe_dump(self.resolved_dict(), sort_keys=False, default_flow_style=None)


#: The sections of a scenario, in schema order (variants and the sweep aside).
SECTIONS = (
    "tokens",
    "router",
    "balance",
    "capacity",
    "learning",
    "metrics",
    "output",
    "deployment",
)
