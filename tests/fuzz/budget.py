"""How many cases each family of the fuzzer runs: a fixed small number in ``make test``, a share
of ``MOESIM_FUZZ_EXAMPLES`` in ``make fuzz``."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

TOTAL = int(os.environ.get("MOESIM_FUZZ_EXAMPLES") or 0)
#: ``make fuzz``: random generation, every generator; otherwise the deterministic CI budget.
FUZZING = TOTAL > 0
LOG = os.environ.get("MOESIM_FUZZ_LOG")

#: Generators of classes of issue 17 that are not fixed yet: left out of ``make test``'s budget
#: (so that it stays green) and run by ``make fuzz``. Remove a name once its class is fixed.
#: "control", "NUL", "random bytes": control characters in a scenario file (PyYAML's
#: ReaderError escapes as a traceback); also keeps them out of generated text values.
#: "init name too long": `moesim init` with a 300-character name (class 13: OSError traceback).
#: "sweep -o ~": `moesim sweep -o ~/x` makes a literal ./~/x (class 10, sweep side).
#: "nested": a file nested thousands of levels deep is refused in 0.6-1.0 s on an idle machine
#: (PyYAML's scanner reads ~1,000 "[" ahead, quadratically, before the depth limit is seen),
#: over the 1 s refusal limit under load (class 8).
#: "complex key": a mapping key that is a list (`? [a, b]`) gives a TypeError in
#: scenario/source.py's _marks (class 8).
OPEN_IN_SUITE: set[str] = {
    "nested",
    "complex key",
    "sweep -o ~",
    "random bytes",
    "control",
    "NUL",
    "init name too long",
}

_QUIET = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.large_base_example,
]
# No example database: a case found once must not make the next CI run differ.
settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, suppress_health_check=_QUIET
)
settings.register_profile("fuzz", database=None, deadline=None, suppress_health_check=_QUIET)

#: family -> (cases in make test, share of make fuzz's total)
FAMILIES = {
    "validate": (30, 0.25),
    "odd_yaml": (25, 0.15),
    "run": (8, 0.20),
    "sweep": (2, 0.045),
    "damaged": (5, 0.08),
    "traces": (10, 0.12),
    "init": (8, 0.05),
    "paths": (4, 0.103),
    "signals": (1, 0.002),
}


def allowed(name: str) -> bool:
    """Whether the generator ``name`` runs in this session."""
    return FUZZING or name not in OPEN_IN_SUITE


def examples(family: str) -> int:
    """Cases of ``family`` in this session."""
    fixed, share = FAMILIES[family]
    return max(1, round(TOTAL * share)) if FUZZING else fixed


def profile(family: str) -> settings:
    """Hypothesis settings of ``family``'s test."""
    parent = settings.get_profile("fuzz" if FUZZING else "ci")
    return settings(parent, max_examples=examples(family))
