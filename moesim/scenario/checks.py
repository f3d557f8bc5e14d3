"""Validating a scenario: pydantic's errors as readable problems, then the checks that involve
several fields, each reported at the field to change.

:func:`validate` is the one entry point; :func:`cross_problems` runs the named checks
(``_check_router``, ``_check_token_stream``, ...), each a rule a reader can find by its name.
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path

from pydantic import BaseModel, ValidationError

from moesim.errors import Problem, ScenarioError, suggest
from moesim.results.metrics import metric_problem
from moesim.scenario import memory
from moesim.scenario.algorithm_checks import check_router_algorithm
from moesim.scenario.deployment_checks import check_deployment
from moesim.scenario.grid import SweepError, check_size
from moesim.scenario.layer_checks import check_by_layer
from moesim.scenario.schema import (
    SHAZEER_KINDS,
    AuxConfig,
    MetricsConfig,
    OutputConfig,
    RouterConfig,
    Scenario,
    SweepConfig,
    TokensConfig,
)
from moesim.scenario.source import Source

# ----------------------------------------------------------------------------------------------
# pydantic's errors as problems

_EXPECTED = {
    "int_parsing": "expected an integer",
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected text",
    "list_type": "expected a list",
    "model_type": "expected a mapping of keys",
    "dict_type": "expected a mapping of keys",
    "model_attributes_type": "expected a mapping of keys",
    "finite_number": "expected a finite number",
}

_BOUNDS = {
    "greater_than_equal": ">=",
    "greater_than": ">",
    "less_than_equal": "<=",
    "less_than": "<",
}


def _model_at(path: tuple):
    """The pydantic model class holding the last key of ``path`` (for suggestions)."""
    model = Scenario
    for part in path[:-1]:
        if isinstance(part, int):
            continue
        if part == "variants":  # a variant holds the same keys as the scenario
            model = Scenario
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return None
    return model


def _message(error: dict, path: tuple) -> tuple[str, str | None]:
    """(message, hint) for one pydantic error at ``path``."""
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        model = _model_at(path)
        fields = list(model.model_fields) if model is not None else []
        return "unknown key", suggest(path[-1], fields)
    if kind == "missing":
        return "required", None
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        choices = re.findall(r"'([^']*)'", expected)
        return f"expected one of {expected}, got {value!r}", suggest(value, choices)
    if kind in _EXPECTED:
        return f"{_EXPECTED[kind]}, got {value!r}", None
    if kind in _BOUNDS:
        limit = next(iter(error.get("ctx", {}).values()), "?")
        return f"must be {_BOUNDS[kind]} {limit} (got {value!r})", None
    if kind == "string_pattern_mismatch":
        return (
            f"must contain only letters, digits and _ . + -, and not start with . (got {value!r})",
            None,
        )
    return f"{error['msg'][0].lower()}{error['msg'][1:]} (got {value!r})", None


def _validation_problems(error: ValidationError, source: Source, prefix=()) -> list[Problem]:
    problems = []
    for item in error.errors():
        path = tuple(part for part in item["loc"] if not str(part).startswith("function-"))
        # Optional fields report the failed member type as an extra location part; drop it.
        path = tuple(p for p in path if p not in ("float", "int", "bool", "str", "list[float]"))
        message, hint = _message(item, path)
        problems.append(source.problem((*prefix, *path), message, hint))
    return problems


# ----------------------------------------------------------------------------------------------
# Checks that involve several fields


class _Report:
    """The problems of one scenario (or of ``variants[i]``, given as ``prefix``)."""

    def __init__(self, source: Source, prefix: tuple):
        self.source = source
        self.prefix = prefix
        self.problems: list[Problem] = []

    def add(self, path: tuple, message: str, hint=None, near: tuple | None = None) -> None:
        """A problem at ``path``; ``near`` is the setting that needs it, where ``path`` is not
        given (see :meth:`Source.problem`)."""
        near = (*self.prefix, *near) if near else None
        self.problems.append(self.source.problem((*self.prefix, *path), message, hint, near))


def _check_router(router: RouterConfig, report: _Report) -> None:
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


def _check_noisy_top_k(scenario: Scenario, report: _Report) -> None:
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


def _check_token_stream(tokens: TokensConfig, report: _Report) -> None:
    """Whole sequences per step, and explicit cluster weights that are usable."""
    if tokens.tokens_per_step % tokens.seq_len:
        report.add(
            ("tokens", "seq_len"),
            f"must divide tokens.tokens_per_step={tokens.tokens_per_step} (got {tokens.seq_len})",
            near=("tokens", "tokens_per_step"),
        )
    if tokens.cluster_weights != "explicit":
        return
    weights = tokens.explicit_weights
    if weights is None:
        report.add(
            ("tokens", "explicit_weights"),
            "required when cluster_weights is explicit",
            f"give {tokens.clusters} non-negative weights, one per cluster",
            near=("tokens", "cluster_weights"),
        )
    elif len(weights) != tokens.clusters:
        report.add(
            ("tokens", "explicit_weights"),
            f"needs one weight per cluster ({tokens.clusters}), got {len(weights)}",
        )
    elif min(weights) < 0 or not 0 < sum(weights) < math.inf:
        report.add(
            ("tokens", "explicit_weights"), "must be non-negative with a positive, finite sum"
        )


#: Settings that only one choice of another uses: (setting, the choosing setting, its values
#: that use it). Set to anything but its default otherwise, it would be silently ignored.
_USED_ONLY_WITH = (
    ("file", "source", ("file",)),
    ("file_key", "source", ("file",)),
    ("file_order", "source", ("file",)),
    ("dim", "source", ("clusters",)),
    ("cluster_weights", "source", ("clusters",)),
    ("separation", "source", ("clusters",)),
    ("noise", "source", ("clusters",)),
    ("seq_coherence", "source", ("clusters",)),
    ("zipf_exponent", "cluster_weights", ("zipf",)),
    ("dirichlet_alpha", "cluster_weights", ("dirichlet",)),
    ("explicit_weights", "cluster_weights", ("explicit",)),
)


def _check_unused_settings(tokens: TokensConfig, report: _Report) -> None:
    """No token setting is given where the stream would ignore it (a trap: it looks applied)."""
    defaults = TokensConfig.model_fields
    for name, chooser, users in _USED_ONLY_WITH:
        chosen = getattr(tokens, chooser)
        if chosen in users or getattr(tokens, name) == defaults[name].default:
            continue
        if chooser == "cluster_weights" and tokens.source != "clusters":
            continue  # reported once, at cluster_weights or the setting itself
        choice = " or ".join(users)
        report.add(
            ("tokens", name),
            f"used only when tokens.{chooser} is {choice} (it is {chosen}), so it would be ignored",
            f"set tokens.{chooser}: {users[0]}, or remove tokens.{name}",
        )
    if tokens.source == "file" and tokens.drift.kind != "none":
        report.add(
            ("tokens", "drift", "kind"),
            "a replayed trace has no cluster weights to drift, so drift would be ignored",
            "remove tokens.drift, or use source: clusters",
        )


def _check_trace_file(tokens: TokensConfig, report: _Report) -> tuple[int, int] | None:
    """A replayed trace is named and readable; its ``(rows, dim)``, or None."""
    if tokens.source != "file":
        return None
    if tokens.file is None:
        report.add(
            ("tokens", "file"),
            "required when tokens.source is file",
            "give the path of a .npy or .npz file of token embeddings (rows are tokens)",
            near=("tokens", "source"),
        )
        return None
    # Imported here: moesim.tokens loads Numba, which validating a scenario without a trace
    # (moesim validate, init, schema) does not need.
    from moesim.tokens import TraceError

    try:
        return _check_trace_once(tokens.file, tokens.file_key, tokens.clusters)
    except TraceError as error:
        report.add(("tokens", error.field), str(error))
        return None


def _check_trace_once(file: str, key: str | None, n_clusters: int) -> tuple[int, int]:
    """``moesim.tokens.check_trace``, once per file version (variants re-validate the base)."""
    stat = Path(file).stat() if Path(file).is_file() else None
    signature = (stat.st_size, stat.st_mtime_ns) if stat else None
    return _checked_trace(file, key, n_clusters, signature)


@functools.lru_cache(maxsize=16)
def _checked_trace(file: str, key: str | None, n_clusters: int, signature) -> tuple[int, int]:
    from moesim.tokens import check_trace

    return check_trace(file, key, n_clusters)


def _check_sweep_metric(sweep: SweepConfig, report: _Report) -> None:
    """``sweep.metric`` names a summary metric."""
    if sweep.metric != SweepConfig.model_fields["metric"].default:
        problem = metric_problem(sweep.metric)
        if problem is not None:
            report.add(("sweep", "metric"), *problem)


def _check_sweep_grid(scenario: Scenario, report: _Report) -> None:
    """``sweep.grid`` reads as values and stays within the limit on points (counted only)."""
    sweep = scenario.sweep
    if report.prefix or not sweep.grid:
        return
    try:
        check_size(sweep.grid, sweep.zip, sweep.seeds, len(scenario.variants))
    except SweepError as error:
        for problem in error.problems:
            at = ("grid", problem.path) if problem.path in sweep.grid else ("grid",)
            report.add(("sweep", *at), problem.message)


def _check_published(scenario: Scenario, report: _Report) -> None:
    """Every published point names variants and a metric that exist, and has what it needs.

    Checked on the whole scenario only: a variant run carries its base's points unchanged.
    """
    if report.prefix:
        return
    names = [v.name for v in scenario.variants] or [scenario.name]
    for index, point in enumerate(scenario.published):
        at = ("published", index)
        for key in ("metric", "divide_by"):
            problem = metric_problem(getattr(point, key)) if getattr(point, key) else None
            if problem is not None:
                report.add((*at, key), *problem)
        if point.compare != "difference" and point.relative_to is None:
            report.add((*at, "compare"), f"compare: {point.compare} needs relative_to")
        trend = point.expect in ("increasing", "decreasing")
        if not trend and point.variant is None and scenario.variants:
            report.add((*at, "variant"), "name the variant this number is for", names[0])
        named = [("variant", point.variant)] if not trend and point.variant else []
        named += [("relative_to", point.relative_to)] if point.relative_to else []
        named += [(("variants", i), name) for i, name in enumerate(point.variants)]
        for key, name in named:
            if name not in names:
                path = (*at, *key) if isinstance(key, tuple) else (*at, key)
                message = f"no variant {name!r} (variants: {', '.join(names)})"
                report.add(path, message, suggest(name, names))
        if trend and len(point.variants) < 2:
            report.add((*at, "variants"), f"a trend ({point.expect}) needs two or more variants")
        if not trend and point.value is None and point.role != "pending":
            report.add((*at, "value"), f"expect: {point.expect} needs the published value")


def _check_memory(scenario: Scenario, trace_shape, report: _Report) -> None:
    """A run that cannot fit in memory should fail now, not after an hour of swapping; the
    problem is at the key of the largest part (:data:`memory.PART_FIXES`)."""
    needed = memory.estimated_memory(scenario, trace_shape)
    available = memory.physical_memory()
    if available is None or sum(needed.values()) <= 0.9 * available:
        return
    gib = 2.0**30
    parts = ", ".join(f"{name} {size / gib:.1f} GiB" for name, size in needed.items() if size)
    path, hint = memory.PART_FIXES[max(needed, key=needed.get)]
    report.add(
        path,
        f"the run would need about {sum(needed.values()) / gib:.1f} GiB ({parts}), more "
        f"than this machine's {available / gib:.1f} GiB",
        hint,
    )


def _check_output(output: OutputConfig, report: _Report) -> None:
    """``output.dir`` names a folder: not empty (the current folder by accident) and with any
    ``~`` expanded (loading expands it; what is left is a ``~user`` with no such user)."""
    if output.dir is None:
        return
    if not output.dir.strip():
        report.add(
            ("output", "dir"),
            "an empty path",
            "leave output.dir out (or null) for results/<name>, or write . for this folder",
        )
    elif output.dir.startswith("~"):
        user = output.dir[1:].split("/", 1)[0]
        report.add(("output", "dir"), f"cannot expand ~{user}: no such user", "write the path out")


def _check_aux_losses(aux: AuxConfig, report: _Report) -> None:
    """Each balance-loss kind once, ``none`` alone, and one positive coefficient per kind."""
    kinds, alphas = aux.kinds, aux.alphas
    kind_path, alpha_path = ("balance", "aux", "kind"), ("balance", "aux", "alpha")
    repeated = sorted({kind for kind in kinds if kinds.count(kind) > 1})
    if not kinds:
        report.add(kind_path, "an empty list: give one kind or more, or none")
    elif len(kinds) > 1 and "none" in kinds:
        report.add(kind_path, f"none cannot be combined with other kinds (got {kinds})")
    elif repeated:
        report.add(
            kind_path,
            f"{repeated[0]!r} is listed twice",
            "list each kind once and add their coefficients",
        )
    elif len(alphas) != len(kinds):
        report.add(
            alpha_path,
            f"needs one coefficient per kind of balance.aux.kind ({len(kinds)}), got {len(alphas)}",
            f"e.g. alpha: [{', '.join(['1.0e-2'] * len(kinds))}]",
            near=kind_path,
        )
    else:
        for index, (kind, alpha) in enumerate(zip(kinds, alphas, strict=True)):
            at = (index,) if isinstance(aux.alpha, list) else ()
            if kind != "none" and alpha == 0:
                report.add(
                    (*alpha_path, *at),
                    f"set balance.aux.alpha > 0 for kind {kind!r}",
                    near=kind_path,
                )
            if kind == "none" and alpha > 0:
                report.add(
                    kind_path,
                    "set batch, sequence or global to use balance.aux.alpha",
                    near=alpha_path,
                )


def _check_aux_needs_learning(scenario: Scenario, report: _Report) -> None:
    """Auxiliary losses train the router: without learning they would silently do nothing."""
    aux = scenario.balance.aux
    balancing = any(kind != "none" for kind in aux.kinds)
    if (balancing or aux.z_loss > 0) and not scenario.learning.enabled:
        report.add(
            ("learning", "enabled"),
            "auxiliary losses act through router learning: set learning.enabled: true",
            near=("balance", "aux", "kind" if balancing else "z_loss"),
        )


def _check_verdict_bars(metrics: MetricsConfig, report: _Report) -> None:
    """The balanced bar is below the collapsed one (docs/model.md §6, the verdict)."""
    if metrics.balanced_max_vio > metrics.collapse_max_vio:
        report.add(
            ("metrics", "balanced_max_vio"),
            f"must be <= metrics.collapse_max_vio={metrics.collapse_max_vio:g} "
            f"(got {metrics.balanced_max_vio:g})",
            near=("metrics", "collapse_max_vio"),
        )


def cross_problems(scenario: Scenario, source: Source, prefix=()) -> list[Problem]:
    """Every check that involves several fields, in a fixed order.

    Parameters
    ----------
    scenario : Scenario
        A scenario that passed the schema.
    source : Source
        Where its keys are, to locate the problems.
    prefix : tuple
        ``("variants", i)`` for a variant, else empty.
    """
    report = _Report(source, prefix)
    _check_router(scenario.router, report)
    _check_noisy_top_k(scenario, report)
    check_router_algorithm(scenario, report)
    _check_token_stream(scenario.tokens, report)
    _check_unused_settings(scenario.tokens, report)
    trace_shape = _check_trace_file(scenario.tokens, report)
    _check_sweep_metric(scenario.sweep, report)
    _check_sweep_grid(scenario, report)
    _check_published(scenario, report)
    _check_output(scenario.output, report)
    _check_memory(scenario, trace_shape, report)
    _check_aux_losses(scenario.balance.aux, report)
    _check_aux_needs_learning(scenario, report)
    _check_verdict_bars(scenario.metrics, report)
    check_deployment(scenario, report.add)
    check_by_layer(scenario, report, _validation_problems, _check_layer)
    return report.problems


def _check_layer(layer: Scenario, report: _Report) -> None:
    """The cross-field rules of the sections a ``by_layer`` entry may change, on one layer."""
    _check_router(layer.router, report)
    _check_noisy_top_k(layer, report)
    _check_aux_losses(layer.balance.aux, report)
    _check_aux_needs_learning(layer, report)


def _in_file_order(problems: list[Problem]) -> list[Problem]:
    """Problems sorted by position; those without one (overrides) last, in the order found."""
    return sorted(problems, key=lambda p: (p.line is None, p.line or 0, p.column or 0))


def validate(data: dict, source: Source, prefix=()) -> Scenario:
    """The scenario ``data`` describes, or every problem with it.

    Parameters
    ----------
    data : dict
        A scenario as nested mappings (a file's content, overrides applied).
    source : Source
        Where its keys came from, to locate the problems.
    prefix : tuple
        ``("variants", i)`` when ``data`` is a variant merged into the base, else empty.

    Raises
    ------
    ScenarioError
        The schema's problems, or else the cross-field checks', in file order.
    """
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as error:
        problems = _validation_problems(error, source, prefix)
        raise ScenarioError(_in_file_order(problems)) from None
    problems = cross_problems(scenario, source, prefix)
    if problems:
        raise ScenarioError(_in_file_order(problems))
    return scenario
