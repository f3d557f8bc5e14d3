"""The auxiliary losses' cross-field checks."""

from __future__ import annotations

from moesim.scenario.checks.problems import Report
from moesim.scenario.schema import AuxConfig, Scenario


def check_aux_losses(aux: AuxConfig, report: Report) -> None:
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


def check_aux_needs_learning(scenario: Scenario, report: Report) -> None:
    """Auxiliary losses train the router: without learning they would silently do nothing."""
    aux = scenario.balance.aux
    balancing = any(kind != "none" for kind in aux.kinds)
    if (balancing or aux.z_loss > 0) and not scenario.learning.enabled:
        report.add(
            ("learning", "enabled"),
            "auxiliary losses act through router learning: set learning.enabled: true",
            near=("balance", "aux", "kind" if balancing else "z_loss"),
        )
