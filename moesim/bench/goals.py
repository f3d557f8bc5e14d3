"""The performance goals (docs/performance.md): PASS, MISS, SKIP or BUSY from one run's results.

Ratios are taken between medians of the same run. A timing goal whose section ran while other
processes took more than :data:`~moesim.bench.common.BUSY_ELSEWHERE_LIMIT` of the machine's CPU
is ``BUSY``: a verdict from such timings would be noise either way.
"""

from __future__ import annotations

from moesim.bench.common import BUSY_ELSEWHERE_LIMIT


class GoalList:
    """Goals in the order they are added, each a dict ``{"goal", "value", "target", "unit",
    "status", "note"}``; ``busy`` is the share of CPU taken elsewhere per section."""

    def __init__(self, busy: dict[str, float | None]):
        self.busy = busy
        self.rows: list[dict] = []

    def add(self, name, value, target, passed, unit="", note=None, section=None) -> None:
        """One goal; ``value`` None (not measured) is SKIP, whatever ``passed`` says."""
        status = "SKIP" if value is None else ("PASS" if passed else "MISS")
        other = self.busy.get(section) if section else None
        if status != "SKIP" and other is not None and other > BUSY_ELSEWHERE_LIMIT:
            status = "BUSY"
            note = f"other processes used {other:.0%} of the CPU: rerun on a quiet machine"
        self.rows.append(
            {
                "goal": name,
                "value": value,
                "target": target,
                "unit": unit,
                "status": status,
                "note": note,
            }
        )


def evaluate_goals(results: dict) -> list[dict]:
    """PASS/MISS of each performance goal (ratios from this run's medians).

    A timing goal whose section ran while other processes took more than
    :data:`~moesim.bench.common.BUSY_ELSEWHERE_LIMIT` of the machine's CPU is ``BUSY``, not PASS
    or MISS. Sections that did not run add no goals.
    """
    goals = GoalList(results.get("meta", {}).get("busy_elsewhere", {}))
    for add_goals in (
        routing_goals,
        step_goals,
        startup_goals,
        scaling_goals,
        memory_goals,
        layers_goals,
    ):
        add_goals(results, goals)
    return goals.rows


def routing_row(results: dict, n_tokens: int = 4096) -> dict | None:
    """The routing row at ``n_tokens`` tokens, else the largest T measured, else None."""
    rows = results.get("routing", {}).get("rows", [])
    exact = [r for r in rows if r["tokens"] == n_tokens]
    return exact[0] if exact else (rows[-1] if rows else None)


def routing_goals(results: dict, goals: GoalList) -> None:
    """moesim's routing at least 4x faster than torch and 10x faster than the NumPy reference."""
    row = routing_row(results)
    if row is None:
        return
    at = f"T={row['tokens']}"
    moesim_time = row["moesim"]["median"]
    torch_ratio = row["torch"]["median"] / moesim_time if "torch" in row else None
    goals.add(
        f"routing vs torch ({at})",
        torch_ratio,
        ">= 4",
        (torch_ratio or 0) >= 4,
        "x",
        section="routing",
    )
    numpy_ratio = row["reference"]["median"] / moesim_time
    goals.add(
        f"routing vs NumPy reference ({at})",
        numpy_ratio,
        ">= 10",
        numpy_ratio >= 10,
        "x",
        section="routing",
    )
    rows = results["routing"]["rows"]
    agreements = [r["float32_twin_agreement"] for r in rows if "float32_twin_agreement" in r]
    if agreements:
        worst = min(agreements)
        sizes = f"T={rows[0]['tokens']:,}-{rows[-1]['tokens']:,}"
        goals.add(
            f"float32 scores: same experts as the float32 twin ({sizes})",
            100 * worst,
            ">= 99.99",
            worst >= 0.9999,
            "%",
        )
    fight = results["routing"].get("after_matmul")
    if fight:
        ratio = fight["after_numpy"]["median"] / fight["after_moesim"]["median"]
        goals.add(
            f"route(X @ W.T) / route(moesim logits) (T={fight['tokens']:,})",
            ratio,
            "<= 1.2",
            ratio <= 1.2,
            "x",
            section="routing",
        )


#: A step's budgets, in multiples of its matmuls (docs/performance.md).
STEP_GOAL_LEARNING_OFF = 4.0
STEP_GOAL_LEARNING_ON = 5.0


def step_goals(results: dict, goals: GoalList) -> None:
    """A step at most 4x ``X @ W.T`` (learning off) and 5x both matmuls (learning on); a MISS
    says where the step's time goes and how much must go."""
    step = results.get("step")
    if not step:
        return
    matmul = step["blas_logits"]["median"]
    blas_both = matmul + step["blas_gradient"]["median"]
    for which, name, baseline, limit in (
        ("learning_off", "step, learning off / X@W.T", matmul, STEP_GOAL_LEARNING_OFF),
        ("learning_on", "step, learning on / (X@W.T + G.T@X)", blas_both, STEP_GOAL_LEARNING_ON),
    ):
        ratio = step[which]["median"] / baseline
        goals.add(
            name,
            ratio,
            f"<= {limit:g}",
            ratio <= limit,
            "x",
            note=step_profile(step, which, limit * baseline) if ratio > limit else None,
            section="step",
        )


def step_profile(step: dict, which: str, budget: float) -> str:
    """Where a step's time goes (its pieces timed alone, the rest) against its budget, in ms."""
    total = step[which]["median"]
    pieces = {name: timing["median"] for name, timing in step.get("pieces", {}).items()}
    if which == "learning_on":
        pieces["learning"] = total - step["learning_off"]["median"]
    rest = total - sum(pieces.values())
    parts = ", ".join(f"{name} {seconds * 1e3:.2f}" for name, seconds in pieces.items())
    return (
        f"{total * 1e3:.2f} ms = {parts}, rest {rest * 1e3:.2f}; the budget is "
        f"{budget * 1e3:.2f} ms: {(total - budget) * 1e3:.2f} ms to go"
    )


def startup_goals(results: dict, goals: GoalList) -> None:
    """``moesim run`` within 3 s warm and 30 s cold (SKIP when the cold run was not made)."""
    startup = results.get("startup")
    if not startup:
        return
    warm = startup["warm"]["median"]
    goals.add(
        f"warm start, {startup['steps']} steps",
        warm,
        "<= 3",
        warm <= 3,
        "s",
        section="startup",
    )
    cold = startup["cold"]["median"] if startup.get("cold") else None
    goals.add(
        "cold start (empty Numba cache)",
        cold,
        "<= 30",
        (cold or 0) <= 30,
        "s",
        section="startup",
    )


def scaling_goals(results: dict, goals: GoalList) -> None:
    """The same results with 1 and 2 threads (not a timing: never BUSY)."""
    scaling = results.get("scaling")
    if scaling:
        same = scaling["identical"]
        goals.add("identical results, 1 vs 2 threads", same, "yes", same)


def memory_goals(results: dict, goals: GoalList) -> None:
    """A million-step run within 1 GB of peak RSS (not a timing: never BUSY)."""
    memory = results.get("memory")
    if memory:
        peak = memory["peak_rss_mb"]
        note = "extrapolated" if memory["extrapolated"] else None
        goals.add("peak RSS, 1M-step run", peak, "<= 1024", peak <= 1024, "MB", note)


def layers_goals(results: dict, goals: GoalList) -> None:
    """A step's time linear in the number of MoE layers: every L within 25% of the fitted line."""
    layers = results.get("layers")
    if not layers or layers.get("largest_misfit") is None:
        return
    misfit = layers["largest_misfit"]
    goals.add(
        "step time linear in layers (largest misfit)",
        misfit * 100,
        "<= 25",
        misfit <= 0.25,
        "%",
        section="layers",
    )
