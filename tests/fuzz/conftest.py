"""The fuzzer's session: one worker process, a scratch folder, a real tiny results folder to
damage, and the count of cases and violations printed at the end."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from .artifacts import restore_permissions
from .budget import LOG
from .harness import Outcome, Worker, run_case
from .scenarios import TINY, to_yaml

COUNTS: dict[str, list] = {}  # family -> [cases, violations, seconds]


class Fuzz:
    """Runs cases of one session, each in a fresh folder under ``root``, and keeps violations."""

    def __init__(self, root: Path, worker: Worker, template: Path):
        self.root, self.worker, self.template = root, worker, template
        self.cases = 0
        self.outcomes: list[Outcome] = []  # since the last check

    def case_dir(self, family: str) -> Path:
        """A fresh ``<root>/<family>-<n>/case`` beside a sentinel file (its parent is watched)."""
        self.cases += 1
        parent = self.root / f"{family}-{self.cases}"
        parent.mkdir()
        (parent / "sentinel").write_text("nothing may touch this")
        case = parent / "case"
        (case / "work" / "home").mkdir(parents=True)
        return case

    def run(
        self, family: str, argv: list[str], case: Path, inputs: dict, record: bool = True
    ) -> Outcome:
        """Run a case; with ``record=False`` the caller adds checks, then records it."""
        start = time.perf_counter()
        outcome = run_case(self.worker, family, argv, case, inputs)
        outcome.seconds = time.perf_counter() - start
        if record:
            self.record(outcome)
        return outcome

    def record(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        counts = COUNTS.setdefault(outcome.family, [0, 0, 0.0, Counter()])
        counts[0] += 1
        counts[1] += bool(outcome.violations)
        counts[2] += outcome.seconds
        counts[3][outcome.reply.get("exit_code", "died")] += 1
        if LOG and sum(c[0] for c in COUNTS.values()) % 100 == 0:
            with open(f"{LOG}.progress", "w") as progress:
                json.dump({f: c[:3] for f, c in COUNTS.items()}, progress)
        if outcome.violations and LOG:
            with open(LOG, "a") as log:
                log.write(json.dumps({**outcome.__dict__, "text": outcome.describe()}) + "\n")

    def check(self) -> None:
        """Fail with every case since the last check that broke an invariant."""
        outcomes, self.outcomes = self.outcomes, []
        bad = [o for o in outcomes if o.violations]
        assert not bad, f"{len(bad)} of {len(outcomes)} cases broke an invariant:\n" + "\n".join(
            o.describe() for o in bad[:10]
        )

    def clean(self, case: Path, outcome: Outcome | None = None) -> None:
        """Remove a case's folder (a violating case's is kept while few are)."""
        if outcome is not None and outcome.violations and self.cases < 200:
            return
        restore_permissions(case)
        shutil.rmtree(case.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def fuzz(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    worker = Worker()
    template = root / "template"
    (template / "work").mkdir(parents=True)
    (template / "work" / "tiny.yaml").write_text(to_yaml(TINY))
    # A real run to damage, which also loads the kernels before any case is timed.
    # A first run after the kernels changed compiles them: minutes on a busy machine.
    reply = worker.invoke(["run", "tiny.yaml", "-o", "run", "-q"], template / "work", {}, 1800)
    assert reply.get("exit_code") == 0, reply
    try:
        yield Fuzz(root, worker, template / "work" / "run")
    finally:
        worker.close()


def pytest_terminal_summary(terminalreporter):
    if not COUNTS:
        return
    terminalreporter.section("moesim fuzz")
    total = [0, 0, 0.0]
    for family, (cases, bad, seconds, codes) in sorted(COUNTS.items()):
        exits = ", ".join(f"{code}: {n}" for code, n in sorted(codes.items(), key=str))
        terminalreporter.line(
            f"{family:10s} {cases:6d} cases {bad:5d} violating {seconds:8.1f} s  exit {exits}"
        )
        total = [total[0] + cases, total[1] + bad, total[2] + seconds]
    terminalreporter.line(
        f"{'total':10s} {total[0]:6d} cases {total[1]:5d} violating {total[2]:8.1f} s"
    )
