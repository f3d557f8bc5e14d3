"""The scenario schema: one pydantic model per section, every field with a default, bounds and
a description (the source of docs/scenarios.md, written by ``moesim schema --markdown``).

Unknown keys are rejected; values are strict (YAML has already typed them). Checks that involve
several fields live in :mod:`moesim.scenario.checks`.
"""

from __future__ import annotations

import types
import typing
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)


def _accepts(annotation, kind: type) -> bool:
    """Whether a field annotation (possibly ``X | None``) admits values of type ``kind``."""
    if annotation is kind:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_accepts(member, kind) for member in typing.get_args(annotation))
    return False


class _Section(BaseModel):
    # Strict: `true` is not an integer and "8" is not a number (YAML already typed the values);
    # inf and nan are never meaningful settings.
    model_config = ConfigDict(
        extra="forbid", validate_default=True, strict=True, allow_inf_nan=False
    )

    @field_validator("*", mode="before")
    @classmethod
    def _integral_floats_are_integers(cls, value, info: ValidationInfo):
        # `steps: 1e4` reads as the float 10000.0; take it as the integer it names.
        if isinstance(value, float) and value.is_integer() and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            if _accepts(annotation, int) and not _accepts(annotation, float):
                return int(value)
        return value


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


class RouterConfig(_Section):
    """Scores and selection (docs/model.md §2)."""

    experts: int = Field(256, ge=1, le=65536, description="E, routed experts.")
    top_k: int = Field(8, ge=1, le=65536, description="K, experts per token.")
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


class BiasConfig(_Section):
    """Auxiliary-loss-free balancing with an expert bias (docs/model.md §4)."""

    enabled: bool = Field(True, description="Use the expert bias.")
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


class AuxConfig(_Section):
    """Auxiliary balance loss and z-loss (docs/model.md §5); they act through router learning."""

    kind: (
        Literal["none", "batch", "sequence", "global"]
        | list[Literal["none", "batch", "sequence", "global"]]
    ) = Field(
        "none",
        description="Balance over the batch, per sequence, or over the update window "
        "(`balance.bias.every` steps, so with the default every=1 global is the same as batch); "
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


class LearningConfig(_Section):
    """Router learning (docs/model.md §5); off = fixed router.

    The defaults are the calibrated model of docs/model.md §5.1-§5.3: the loss in nats of
    experts of finite capacity, AdamW with a warm-up and a cosine decay, and the two constants
    fitted on the Loss-Free paper (`rate`, `routing_sensitivity`). `reward: competence_affinity`
    with `optimizer: sgd`, `rate: 10`, `schedule: constant` and `warmup_steps: 0` is the model of
    moesim 0.1, bit for bit.
    """

    enabled: bool = Field(False, description="Train the router centroids.")
    rate: float = Field(
        3e-4,
        ge=0,
        le=1e6,
        description="Peak learning rate of the centroids, per step (fitted on Loss-Free "
        "Table 2, bias u=1e-3 -> MaxVio_global 0.04: docs/model.md §5.3).",
    )
    reward: Literal["capacity_nats", "competence_affinity"] = Field(
        "capacity_nats",
        description="What the router learns from (moesim.kernels.rewards.REWARD_MODELS): "
        "capacity_nats = the loss in nats of the routed mixture, experts of finite capacity, "
        "measured on held-out tokens (docs/model.md §5.1); competence_affinity = moesim 0.1's "
        "unitless reward, competence (rich get richer) x affinity to the expert's specialty.",
    )
    optimizer: Literal["adamw", "sgd"] = Field(
        "adamw",
        description="Router optimizer (docs/model.md §5.2): adamw = AdamW with `adam_*`, "
        "`weight_decay` and the `schedule`; sgd = a plain gradient step of size `rate`.",
    )
    schedule: Literal["cosine", "constant"] = Field(
        "cosine",
        description="Learning rate after the linear warm-up: cosine decay to `rate_floor` x "
        "`rate` at the last step, or constant.",
    )
    warmup_steps: int = Field(
        50, ge=0, le=100_000_000, description="Linear learning-rate warm-up, in steps (0: none)."
    )
    rate_floor: float = Field(
        0.1, ge=0, le=1, description="Cosine schedule: final rate as a fraction of `rate`."
    )
    adam_beta1: float = Field(0.9, ge=0, lt=1, description="AdamW first-moment decay.")
    adam_beta2: float = Field(0.95, ge=0, lt=1, description="AdamW second-moment decay.")
    adam_eps: float = Field(1e-8, gt=0, le=1, description="AdamW denominator guard.")
    weight_decay: float = Field(
        0.1, ge=0, le=10, description="AdamW decoupled weight decay (times the current rate)."
    )
    routing_sensitivity: float = Field(
        4e-3,
        gt=0,
        le=1e6,
        description="capacity_nats: D, nats of LM loss between a token served by perfectly "
        "matched experts and by experts that know nothing of it (fitted on Loss-Free Table 2, "
        "aux alpha=1e-3 -> MaxVio_global 0.72: docs/model.md §5.3).",
    )
    eval_tokens: int = Field(
        1024,
        ge=1,
        le=1 << 24,
        description="capacity_nats: held-out tokens per recorded step for the loss in nats.",
    )
    competence_tokens: float = Field(
        1e5, gt=0, le=1e12, description="tau: tokens for an expert to reach 63% competence."
    )
    knowledge_ema: float = Field(
        0.01, gt=0, le=1, description="rho: EMA rate of an expert's specialty direction."
    )


class MetricsConfig(_Section):
    """Recording and verdict thresholds (docs/model.md §6)."""

    record_every: int | None = Field(
        None,
        ge=1,
        le=100_000_000,
        description="Steps between recorded rows; null = about 1000 rows per run.",
    )
    window: int | None = Field(
        None,
        ge=1,
        le=100_000_000,
        description="Final window in steps (MaxVio_global, the verdict); null = last 10%.",
    )
    balance_threshold: float = Field(
        0.2,
        gt=0,
        le=65536,
        description="Steps to balance: the first step after which the MaxVio of the loads summed "
        "over the trailing `balance_window` steps stays below this.",
    )
    balance_window: int = Field(
        20, ge=1, le=100_000, description="Trailing steps summed to judge balance."
    )
    starved_fraction: float = Field(
        0.1, ge=0, le=1, description="An expert below this fraction of the mean load is starved."
    )
    balanced_max_vio: float = Field(
        0.1,
        gt=0,
        le=65536,
        description="Verdict: MaxVio_global (final window) below which, with no starved expert, "
        "the run is called balanced (docs/model.md §6).",
    )
    collapse_max_vio: float = Field(
        1.0,
        gt=0,
        le=65536,
        description="Verdict: MaxVio_global above which the run is called collapsed.",
    )
    collapse_starved_fraction: float = Field(
        0.25, ge=0, le=1, description="Verdict: or more than this fraction of experts starved."
    )
    fidelity: bool = Field(
        True, description="Measure routing fidelity (biased vs unbiased top-K) when recording."
    )


class OutputConfig(_Section):
    """Where results go."""

    dir: str | None = Field(
        None,
        description="Results folder, relative to where moesim runs; `~` is your home folder; "
        "null = results/<name>. Not empty; `moesim run -o` overrides it.",
    )
    save_loads: bool = Field(True, description="Write per-expert loads and biases (loads.npz).")


class SweepConfig(_Section):
    """Parameter sweep of `moesim sweep` (docs/sweeps.md); `moesim run` ignores it."""

    grid: dict[str, list | str] = Field(
        default_factory=dict,
        description="Key path -> list of values, or logspace(a,b,n), linspace(a,b,n), "
        "range(a,b[,step]).",
    )
    zip: list[list[str]] = Field(
        default_factory=list,
        description="Groups of grid keys varied together (equal lengths) instead of crossed.",
    )
    seeds: int = Field(1, ge=1, le=1_000_000, description="Seeds per point: seed, seed+1, ...")
    metric: str = Field("max_vio_global", description="Summary metric that picks the best point.")
    minimize: bool = Field(True, description="Best is the smallest metric (false: the largest).")


class PublishedPoint(_Section):
    """A number a paper published for this scenario's setting (docs/fidelity.md, `moesim papers`).

    moesim's value is the summary ``metric`` of ``variant`` (minus that of ``relative_to`` when
    given), averaged over seeds; a trend compares the means over ``variants`` in their order.
    """

    source: str = Field(..., min_length=1, description="Paper and where: table, figure, model.")
    setting: str = Field(..., min_length=1, description="The setting in the paper's words.")
    variant: str | None = Field(
        None, description="The variant that has this setting (none: a scenario without variants)."
    )
    metric: str = Field(..., description="The summary metric the number corresponds to.")
    value: float | None = Field(
        None, allow_inf_nan=False, description="The published number (none for a trend)."
    )
    value_text: str | None = Field(
        None, description="How the table shows the published value (default: the number)."
    )
    relative_to: str | None = Field(
        None, description="Compare with this variant's metric: a published difference."
    )
    compare: Literal["difference", "perplexity_gap"] = Field(
        "difference",
        description="With `relative_to`: difference = metric(variant) - metric(relative_to); "
        "perplexity_gap = exp(that difference) - 1, for a loss in nats against a published "
        "PPL ratio minus one.",
    )
    divide_by: str | None = Field(
        None,
        description="Divide the metric by this other summary metric of the same variant (e.g. "
        "MaxVio over the final window by the final per-batch MaxVio).",
    )
    expect: Literal["value", "at_least", "at_most", "increasing", "decreasing"] = Field(
        "value",
        description="value: within 2x / right order / miss; at_least, at_most: a bound; "
        "increasing, decreasing: the trend over `variants`.",
    )
    variants: list[str] = Field(
        default_factory=list, description="Variants of a trend, in the published order."
    )
    role: Literal["fit", "predicted", "pending"] = Field(
        "predicted",
        description="fit: a calibration constant was chosen on it; predicted: nothing was "
        "tuned on it; pending: needs a model moesim does not have yet.",
    )
    note: str | None = Field(None, description="A short qualifier shown after the metric.")


#: A name is a folder name: no separators, and no leading dot (".", ".." and hidden folders).
NAME_PATTERN = r"^[A-Za-z0-9_+-][A-Za-z0-9_.+-]*$"


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
    tokens: TokensConfig = Field(default_factory=TokensConfig, description="Token stream.")
    router: RouterConfig = Field(default_factory=RouterConfig, description="Router.")
    balance: BalanceConfig = Field(default_factory=BalanceConfig, description="Balancing.")
    capacity: CapacityConfig = Field(default_factory=CapacityConfig, description="Capacity.")
    learning: LearningConfig = Field(default_factory=LearningConfig, description="Learning.")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="Metrics.")
    output: OutputConfig = Field(default_factory=OutputConfig, description="Output.")
    sweep: SweepConfig = Field(default_factory=SweepConfig, description="Parameter sweep.")
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
SECTIONS = ("tokens", "router", "balance", "capacity", "learning", "metrics", "output")
