"""Input errors a user can act on: where, which key, what was expected and what was found."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario.

    Attributes
    ----------
    file : str or None
        The scenario file, or ``--set KEY=VALUE`` for a command-line override.
    line, column : int or None
        1-based position of the offending key in the file, when known.
    path : str
        Key path, e.g. ``router.top_k`` or ``variants[2].router.score``.
    message : str
        What was expected and what was found, with a suggestion when one is likely.
    """

    file: str | None
    line: int | None
    column: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file or "<scenario>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ScenarioError(ValueError):
    """A scenario that cannot be used; ``str()`` gives one line per problem."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
