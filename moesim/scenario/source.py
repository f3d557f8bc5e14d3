"""Reading a scenario file: YAML with the position of every key, and limits on what a file
may expand to.

Problems are located at ``file:line:column`` (or at the ``--set`` that caused them) by
:class:`Source`, from the positions :func:`read_yaml` records.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from moesim.errors import Problem, ScenarioError

#: Nodes that aliases may add to a file. Every alias repeats the whole content of its anchor, so
#: nine levels of nine aliases (a "billion laughs") stand for 387 million values in 1 KB of text.
#: Real scenarios alias a few sections at most; the file's own text bounds everything else.
MAX_ALIASED_NODES = 100_000
#: Nesting of mappings and lists; a scenario needs about six (variants[0].balance.aux.alpha[1]).
MAX_DEPTH = 100

#: Digits of the longest integer read; no setting is above 2**63 - 1 (19 digits). Python itself
#: refuses to convert more than 4,300.
MAX_INTEGER_DIGITS = 100

_NULL_TAG = "tag:yaml.org,2002:null"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_INT_TAG = "tag:yaml.org,2002:int"
# YAML 1.1 integers that read as something other than what they look like: a leading zero is
# octal (`010` is 8), colons are base 60 (`1:30` is 90).
_OCTAL = re.compile(r"^[-+]?0[0-7_]+$")
# YAML 1.1 floats, and also `1e-3` (YAML 1.1 insists on a dot: `1.0e-3`).
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class RefusedYAMLError(yaml.composer.ComposerError):
    """A file refused before it is built: aliases that expand too far, or nesting too deep.

    ``problem`` says why, ``problem_mark`` where, and ``hint`` (or None) what to do instead.
    """

    def __init__(self, problem: str, mark, hint: str | None = None):
        super().__init__(problem=problem, problem_mark=mark)
        self.hint = hint


def check_flow_depth(text: str) -> None:
    """Refuse ``[`` / ``{`` nested deeper than :data:`MAX_DEPTH` before PyYAML scans the text.

    PyYAML's scanner slows down with every open bracket, so thousands of them took about a
    second before the composer's own depth check was reached. Brackets inside quotes and
    comments do not count.

    Raises
    ------
    RefusedYAMLError
        At the first bracket past the limit.
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    depth, quote, comment, line, column = 0, "", False, 0, 0
    for character in text:
        if character == "\n":
            line, column, comment = line + 1, 0, False
            continue
        column += 1
        if comment:
            continue
        if quote:
            quote = "" if character == quote else quote
        elif character in "'\"":
            quote = character
        elif character == "#":
            comment = True
        elif character in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                mark = yaml.Mark("", 0, line, column - 1, None, None)
                raise RefusedYAMLError(f"nested more than {MAX_DEPTH} levels deep", mark)
        elif character in "]}":
            depth = max(0, depth - 1)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return []


def _integer_problem(text: str) -> tuple[str, str] | None:
    """``(problem, hint)`` for a YAML integer that would be read as other than it looks."""
    sign = "-" if text.startswith("-") else ""
    digits = text.lstrip("+-").replace("_", "")
    if len(digits) > MAX_INTEGER_DIGITS:
        return (
            f"an integer of {len(digits):,} digits; no setting takes more than 19",
            "give a number within the setting's bounds (docs/scenarios.md)",
        )
    if ":" in text:
        value = 0
        for part in digits.split(":"):
            value = value * 60 + int(part)
        value = -value if sign else value
        return (
            f"{text} is a YAML 1.1 base-60 number ({value}), not a time or a ratio",
            f"write {value} if that is meant, or quote it ('{text}') for text",
        )
    if _OCTAL.match(text):
        value = int(sign + (digits.lstrip("0") or "0"), 8)
        decimal = sign + (digits.lstrip("0") or "0")
        octal = f" (or {value} for the octal value)" if str(value) != decimal else ""
        return (
            f"{text} has a leading zero, which YAML 1.1 reads as octal ({value})",
            f"write {decimal} without the leading zero{octal}",
        )
    return None


def integer_problems(node, prefix: tuple = ()) -> list[tuple[tuple, yaml.Mark, str, str]]:
    """``(path, mark, problem, hint)`` of every integer of a composed node (keys included)
    that YAML 1.1 would read as other than it looks, or that is absurdly long.

    Checked on the nodes, before anything is built: a 5,000-digit integer cannot even be
    converted.
    """
    found = []
    if isinstance(node, yaml.ScalarNode) and node.tag == _INT_TAG:
        problem = _integer_problem(node.value)
        if problem is not None:
            found.append((prefix, node.start_mark, *problem))
    elif isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*prefix, key_node.value)
            found += integer_problems(key_node, prefix)
            found += integer_problems(value_node, path)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found += integer_problems(item, (*prefix, index))
    return found


class ScenarioLoader(yaml.SafeLoader):
    """SafeLoader that reads `1e-3` as a float and refuses files that expand too far.

    While the file is composed, every node's expanded size (the nodes it stands for, its
    aliases repeated) is known from its children's, so an alias costs one lookup: a "billion
    laughs" is refused at the alias that crosses :data:`MAX_ALIASED_NODES`, not after minutes.
    """

    yaml_implicit_resolvers = {
        key: [(tag, regexp) for tag, regexp in resolvers if tag != _FLOAT_TAG]
        for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream):
        super().__init__(stream)
        self._expanded_size: dict[int, int] = {}  # id(node) -> nodes it stands for
        self._aliased_nodes = 0
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:  # an undefined alias is PyYAML's own error
                self._count_alias(event, target)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise RefusedYAMLError(f"nested more than {MAX_DEPTH} levels deep", mark)
        node = super().compose_node(parent, index)
        self._depth -= 1
        children = _children(node)
        self._expanded_size[id(node)] = 1 + sum(self._expanded_size[id(c)] for c in children)
        return node

    def _count_alias(self, event, target: yaml.Node) -> None:
        size = self._expanded_size.get(id(target))
        if size is None:  # the anchor is still open: the alias is inside it
            raise RefusedYAMLError(
                f"alias *{event.anchor} is inside its own anchor &{event.anchor}, so it would "
                "contain itself",
                event.start_mark,
            )
        self._aliased_nodes += size
        if self._aliased_nodes > MAX_ALIASED_NODES:
            raise RefusedYAMLError(
                f"too many aliases: expanding them gives more than {MAX_ALIASED_NODES:,} nodes "
                "(aliases of aliases multiply)",
                event.start_mark,
                "write the repeated values out instead",
            )


ScenarioLoader.add_implicit_resolver(_FLOAT_TAG, _FLOAT, list("-+0123456789."))


def load_yaml_value(text: str):
    """One YAML value read as a scenario file would read it (``1e-3`` a float, same limits).

    Raises
    ------
    yaml.YAMLError
        When ``text`` is not valid YAML; :class:`RefusedYAMLError` when it expands too far or
        holds an integer YAML 1.1 reads as other than it looks (:func:`integer_problems`).
    """
    check_flow_depth(text)
    loader = ScenarioLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        for _, mark, problem, hint in integer_problems(node)[:1]:
            raise RefusedYAMLError(problem, mark, hint)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def has_path(data, path: tuple) -> bool:
    """Whether nested mappings ``data`` hold the key path ``path`` (every part a key)."""
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def format_path(path: tuple) -> str:
    """``("variants", 2, "router", "top_k")`` -> ``variants[2].router.top_k``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def _marks(node, prefix=(), duplicates=None) -> dict[tuple, tuple[int, int]]:
    """Key path -> (line, column), 1-based, for every key and list item of a composed node.

    Keys given twice in one mapping (YAML keeps the last silently) are appended to
    ``duplicates`` as ``(path, line, column, first_line)``.
    """
    found: dict[tuple, tuple[int, int]] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise RefusedYAMLError(
                    "a key must be a plain name, not a list or a mapping",
                    key_node.start_mark,
                    "write the key as a name (see docs/scenarios.md for the keys)",
                )
            path = (*prefix, key_node.value)
            mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if path in found and duplicates is not None and key_node.value != "<<":
                duplicates.append((path, *mark, found[path][0]))
            found[path] = mark
            found.update(_marks(value_node, path, duplicates))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            path = (*prefix, index)
            found[path] = (item.start_mark.line + 1, item.start_mark.column + 1)
            found.update(_marks(item, path, duplicates))
    return found


class Source:
    """Where a scenario came from, to point problems at lines.

    Parameters
    ----------
    file : str or None
        The scenario file; None for a scenario given as a mapping.
    marks : dict
        Key path -> (line, column), as :func:`read_yaml` returns them.
    overrides : dict
        Key path -> the ``KEY=VALUE`` text of the ``--set`` that gave it.
    """

    def __init__(self, file: str | None, marks: dict, overrides: dict[tuple, str]):
        self.file = file
        self.marks = marks
        self.overrides = overrides

    def problem(
        self, path: tuple, message: str, hint: str | None = None, near: tuple | None = None
    ) -> Problem:
        """A problem at ``path``, located at its override or key; when the key is not given,
        at the override or key ``near`` it (the setting that needs it), else its section."""
        dotted = format_path(path)
        for candidate in (path, near) if near else (path,):
            for length in range(len(candidate), 0, -1):
                if candidate[:length] in self.overrides:
                    where = f"--set {self.overrides[candidate[:length]]}"
                    return Problem(where, None, None, dotted, message, hint)
            for key, text in self.overrides.items():  # `--set rooter.top_k=1`: rooter
                if candidate and key[: len(candidate)] == candidate:
                    return Problem(f"--set {text}", None, None, dotted, message, hint)
            if candidate in self.marks:
                line, column = self.marks[candidate]
                return Problem(self.file, line, column, dotted, message, hint)
        for length in range(len(path) - 1, -1, -1):
            if path[:length] in self.marks:
                line, column = self.marks[path[:length]]
                return Problem(self.file, line, column, dotted, message, hint)
        return Problem(self.file, None, None, dotted, message, hint)


def _read_text(path: Path) -> str:
    if path.is_dir():
        problem = Problem(str(path), None, None, "", "is a folder, not a scenario file")
        raise ScenarioError([problem])
    if not path.is_file():
        raise ScenarioError([Problem(None, None, None, "", f"scenario file not found: {path}")])
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = "not a UTF-8 text file" if isinstance(error, UnicodeDecodeError) else str(error)
        raise ScenarioError([Problem(str(path), None, None, "", reason)]) from None


def _yaml_problem(path: Path, error: yaml.YAMLError) -> Problem:
    """The problem of a file PyYAML (or :class:`ScenarioLoader`'s limits) would not read."""
    if not isinstance(error, yaml.MarkedYAMLError):  # e.g. a control character: no mark
        return Problem(str(path), None, None, "", f"invalid YAML: {error}")
    mark = error.problem_mark or error.context_mark
    line = mark.line + 1 if mark else None
    column = mark.column + 1 if mark else None
    if isinstance(error, RefusedYAMLError):
        return Problem(str(path), line, column, "", error.problem, error.hint)
    problem = error.problem or str(error)
    context = f" ({error.context})" if error.context else ""
    return Problem(str(path), line, column, "", f"invalid YAML: {problem}{context}")


def _character_problem(path: Path, text: str, error: yaml.reader.ReaderError) -> Problem:
    """A character YAML does not allow (a control character), at its line and column."""
    before = text[: error.position]
    line = before.count("\n") + 1
    column = error.position - (before.rfind("\n") + 1) + 1
    character = error.character if isinstance(error.character, str) else chr(error.character)
    return Problem(
        str(path),
        line,
        column,
        "",
        f"the character U+{ord(character):04X} is not allowed in YAML (a control character)",
        "remove it, or write it as an escape such as \\x0e inside double quotes",
    )


def _is_empty(node) -> bool:
    """No document, or one without content (comments, blank lines or a bare ``---``)."""
    return node is None or (
        isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG and node.value == ""
    )


def read_yaml(path: Path) -> tuple[Any, dict]:
    """The data of a scenario file and the position of every key in it.

    Returns
    -------
    data : object
        What the file holds (a mapping for any scenario).
    marks : dict
        Key path -> (line, column), 1-based, for every key and list item.

    Raises
    ------
    ScenarioError
        When the file is missing, a folder, not UTF-8, empty, not valid YAML, expands too far
        (:class:`ScenarioLoader`), holds an integer YAML 1.1 would misread
        (:func:`integer_problems`), or gives a key twice.
    """
    text = _read_text(path)
    try:
        check_flow_depth(text)
        # The reader checks the characters as it is made: a control character fails here.
        loader = ScenarioLoader(text)
    except yaml.reader.ReaderError as error:
        raise ScenarioError([_character_problem(path, text, error)]) from None
    except yaml.YAMLError as error:
        raise ScenarioError([_yaml_problem(path, error)]) from None
    try:
        node = loader.get_single_node()
        if _is_empty(node):
            problem = Problem(
                str(path),
                None,
                None,
                "",
                "the file is empty",
                "moesim init NAME writes a commented default scenario to NAME.yaml",
            )
            raise ScenarioError([problem])
        duplicates: list = []
        # Positions first: building the data rewrites merge keys (<<) in the nodes.
        marks = _marks(node, (), duplicates)
        integers = integer_problems(node)
        if integers:
            raise ScenarioError(
                [
                    Problem(str(path), m.line + 1, m.column + 1, format_path(key), problem, hint)
                    for key, m, problem, hint in integers
                ]
            )
        data = loader.construct_document(node)
    except yaml.YAMLError as error:
        raise ScenarioError([_yaml_problem(path, error)]) from None
    finally:
        loader.dispose()
    if duplicates:
        raise ScenarioError(
            [
                Problem(
                    str(path),
                    line,
                    column,
                    format_path(key),
                    f"key given twice (first at line {first_line})",
                    "remove one of them",
                )
                for key, line, column, first_line in duplicates
            ]
        )
    return data, marks
