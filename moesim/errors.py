"""Input errors a user can act on: where, which key, what was expected and what was found."""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario.

    Attributes
    ----------
    file : str or None
        The scenario file, or ``--set KEY=VALUE`` for a command-line override; None for a
        scenario given as a mapping.
    line, column : int or None
        1-based position of the offending key in the file, when known.
    path : str
        Key path, e.g. ``router.top_k`` or ``variants[2].router.score``; empty for the whole file.
    message : str
        What was expected and what was found.
    hint : str or None
        A likely fix, e.g. ``did you mean 'top_k'?``.
    """

    file: str | None
    line: int | None
    column: int | None
    path: str
    message: str
    hint: str | None = None

    @property
    def location(self) -> str:
        """``file:line:column`` (as much of it as is known), or an empty string."""
        if self.file is None:
            return "" if self.line is None else f"line {self.line}"
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return where

    def __str__(self) -> str:
        text = self.message + (f"; {self.hint}" if self.hint else "")
        if self.path:
            text = f"{self.path}: {text}"
        return f"{self.location}: {text}" if self.location else text


class ScenarioError(ValueError):
    """A scenario that cannot be used; ``str()`` gives one line per problem.

    Attributes
    ----------
    problems : list of Problem
        Every problem found, in the order found.
    """

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def suggest(word, choices) -> str | None:
    """``did you mean 'x'?`` for the choice closest to a likely typo, or None."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
