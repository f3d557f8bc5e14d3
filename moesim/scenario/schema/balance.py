"""Balancing and capacity: the expert bias, auxiliary losses and token dropping (docs/model.md
§3-§4).
"""

from __future__ import annotations

import typing
from typing import Literal

from pydantic import (
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from moesim.scenario.schema.base import _Section


class BiasConfig(_Section):
    """Auxiliary-loss-free balancing with an expert bias (docs/model.md §4)."""

    enabled: bool = Field(True, description="Use the expert bias.")
    mode: Literal["additive", "multiplicative"] = Field(
        "additive",
        description="additive: select by S + b, b from 0 (DeepSeek-V3); multiplicative: select "
        "by S * b, b from 1 (Loss-Free Table 4); the same update rules.",
    )
    rate: float = Field(1e-3, ge=0, le=10, description="u, bias change per update (bias units).")
    rule: Literal["sign", "proportional"] = Field(
        "sign", description="sign: u * sign(mean - c); proportional: u * (mean - c) / mean."
    )
    every: int = Field(1, ge=1, le=1_000_000, description="Steps per update window.")
    center: bool = Field(False, description="Subtract the mean of each update (no drift).")
    counts: Literal["kept", "demand"] = Field(
        "kept", description="Count assignments after drops (Megatron) or before."
    )
    schedule: Literal["constant", "freeze", "warmup", "decay"] = Field(
        "constant",
        description="constant; freeze after `freeze_at` of the run; linear warm-up over, or "
        "decay to zero over the last, `warmup_steps`.",
    )
    freeze_at: float = Field(
        0.97, ge=0, le=1, description="Fraction of the run after which a frozen bias stops."
    )
    warmup_steps: int = Field(
        0, ge=0, le=100_000_000, description="Length of the warm-up or decay, in steps."
    )


#: Aux-loss kinds of noisy top-K gating (Shazeer et al. 2017): CV^2 of importance and of load.
SHAZEER_KINDS = ("importance", "load")


class AuxConfig(_Section):
    """Auxiliary balance loss and z-loss (docs/model.md §5); they act through router learning."""

    kind: (
        Literal["none", "batch", "sequence", "global", "importance", "load"]
        | list[Literal["none", "batch", "sequence", "global", "importance", "load"]]
    ) = Field(
        "none",
        description="Balance over the batch, per sequence, or over the update window "
        "(`balance.bias.every` steps, so with the default every=1 global is the same as batch); "
        "importance, load: Shazeer et al.'s w CV(Importance)^2 and w CV(Load)^2, with "
        "`router.algorithm: noisy_top_k` only (docs/model.md §5.5); "
        "a list sums several kinds, as Megatron-Core does.",
    )
    alpha: float | list[float] = Field(
        0.0,
        ge=0,
        le=1e6,
        description="Coefficient of the balance loss; with a list of kinds, a list of one "
        "coefficient per kind.",
    )
    z_loss: float = Field(0.0, ge=0, le=1e3, description="beta, coefficient of the z-loss.")

    @field_validator("kind", "alpha", mode="wrap")
    @classmethod
    def _one_or_a_list(cls, value, handler, info: ValidationInfo):
        # Each item is checked as a single value would be (the field's bounds included), so a
        # bad item is reported at its own index rather than once per member of the union.
        field = cls.model_fields[info.field_name]
        single = typing.get_args(field.annotation)[0]
        if field.metadata:
            single = typing.Annotated[(single, *field.metadata)]
        item = TypeAdapter(single, config=ConfigDict(strict=True, allow_inf_nan=False))
        if not isinstance(value, list):
            return item.validate_python(value)
        items, errors = [], []
        for index, entry in enumerate(value):
            try:
                items.append(item.validate_python(entry))
            except ValidationError as error:
                errors.extend({**e, "loc": (index, *e["loc"])} for e in error.errors())
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return items

    @property
    def kinds(self) -> list[str]:
        """The kinds as a list (one entry for the single-value form)."""
        return [self.kind] if isinstance(self.kind, str) else list(self.kind)

    @property
    def alphas(self) -> list[float]:
        """The coefficients as a list (one entry for the single-value form)."""
        return [self.alpha] if isinstance(self.alpha, float) else list(self.alpha)

    def shazeer_terms(self) -> list[tuple[str, float]]:
        """``(kind, w)`` of Shazeer et al.'s importance and load losses in effect, in order."""
        return [(kind, alpha) for kind, alpha in self.terms() if kind in SHAZEER_KINDS]

    def switch_terms(self) -> list[tuple[str, float]]:
        """``(kind, alpha)`` of the ``alpha sum f_i P_i`` losses in effect (batch, sequence,
        global), in order."""
        return [(kind, alpha) for kind, alpha in self.terms() if kind not in SHAZEER_KINDS]

    def terms(self) -> list[tuple[str, float]]:
        """``(kind, alpha)`` of every balance loss in effect, in order; empty for none."""
        return [
            (kind, alpha)
            for kind, alpha in zip(self.kinds, self.alphas, strict=False)
            if kind != "none" and alpha > 0
        ]


class BalanceConfig(_Section):
    """Load balancing: expert bias and/or auxiliary losses."""

    bias: BiasConfig = Field(default_factory=BiasConfig, description="Expert bias.")
    aux: AuxConfig = Field(default_factory=AuxConfig, description="Auxiliary losses.")


class CapacityConfig(_Section):
    """Expert capacity and token dropping (docs/model.md §3)."""

    factor: float | None = Field(
        None, gt=0, le=1e6, description="Capacity in units of T*K/E; null drops nothing."
    )
    policy: Literal["probs", "position"] = Field(
        "probs", description="Keep the highest gate weights, or the earliest tokens."
    )
    pad_to_capacity: bool = Field(
        False, description="Every expert computes a full capacity (padding waste reported)."
    )
