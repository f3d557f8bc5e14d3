"""The package's shape: imports run one way, and every reference in code and docs is true.

The import graph is read from the source (every ``import`` at any depth: inside functions and
``TYPE_CHECKING`` blocks too), not from what happens to be imported at run time.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "moesim"

#: Layers from the bottom up: a module may import its own layer and those below, never above.
#: (docs/model.md and README.md "Where things are" describe the same order.)
LAYERS = (
    ("moesim._version", "moesim.errors", "moesim.statistics", "moesim.progress", "moesim._jit"),
    ("moesim.results",),
    (
        "moesim.tokens",
        "moesim.kernels",
        "moesim.deployment",
        "moesim.reference",
        "moesim.reference_learning",
        "moesim.reference_noisy",
        "moesim.reference_paths",
        "moesim.reference_routers",
    ),
    ("moesim.scenario",),
    ("moesim.engine",),
    ("moesim.figures", "moesim.report"),
    ("moesim.sweep",),
    ("moesim.bench", "moesim.papers"),
    ("moesim.cli",),
    ("moesim", "moesim.__main__"),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """moesim modules that ``name`` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # ``from a import b`` imports the module a.b when there is one, else a name of a.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        found.update(t for t in targets if t == "moesim" or t.startswith("moesim."))
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = source_modules()
    known = set(modules)
    return {name: imported_modules(name, path, known) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def layer_of(module: str) -> int:
    best, best_length = None, -1
    for index, layer in enumerate(LAYERS):
        for prefix in layer:
            # The top package holds only its own __init__: every other module is named.
            matches = module == prefix or (prefix != "moesim" and module.startswith(prefix + "."))
            if matches and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return best


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_graph_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "moesim" / "thing.py"
    module.parent.mkdir()
    module.write_text(
        "def f():\n    from moesim.engine import simulate\n    from . import tokens\n"
    )
    found = imported_modules("moesim.thing", module, {"moesim.engine", "moesim.tokens"})
    assert found == {"moesim.engine", "moesim.tokens"}


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_run_down_the_layers():
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in import_graph().items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "imports that run up the layers:\n" + "\n".join(upward)


# ----------------------------------------------------------------------------------------------
# References that stay true

#: Where references are written: the package, tests, benchmarks, docs, README, scenarios, Makefile.
REFERENCE_SOURCES = [
    *sorted(PACKAGE.rglob("*.py")),
    *sorted(p for p in (ROOT / "tests").glob("*.py") if p.name != Path(__file__).name),
    *sorted((ROOT / "benchmarks").glob("*.py")),
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "scenarios").rglob("*.yaml")),
    ROOT / "README.md",
    ROOT / "Makefile",
]
#: A path of the repository cited in text: docs/..., moesim/..., scenarios/..., tests/..., ...
PATH_PATTERN = re.compile(
    r"(?<![\w./-])((?:docs|moesim|scenarios|tests|benchmarks)/[\w./-]*\w\.(?:md|py|yaml|json|png))"
)
#: A section of docs/model.md cited in text: "model.md §4", "model.md section 5.2", "model.md 6".
SECTION_PATTERN = re.compile(r"model\.md,?\s+(?:§\s*|sections?\s+)?(\d+(?:\.\d+)*)")
#: Files that the project writes, cited as what a run or a command produces.
PRODUCED = re.compile(r"^(benchmarks/results/|tests/data/result_hashes\.json$)")


def model_sections() -> set[str]:
    text = (ROOT / "docs" / "model.md").read_text()
    return set(re.findall(r"^#{2,4}\s+(\d+(?:\.\d+)*)\.?\s", text, flags=re.MULTILINE))


def test_model_sections_are_found():
    sections = model_sections()
    assert {"1", "2", "5", "6"} <= sections


def test_section_pattern_reads_every_spelling():
    text = "see docs/model.md §4, model.md section 5.2 and model.md 6"
    assert SECTION_PATTERN.findall(text) == ["4", "5.2", "6"]


def test_cited_paths_exist():
    missing = []
    for source in REFERENCE_SOURCES:
        for number, line in enumerate(source.read_text().splitlines(), 1):
            for cited in PATH_PATTERN.findall(line):
                placeholder = any(part.split(".")[0].isupper() for part in cited.split("/"))
                if PRODUCED.match(cited) or placeholder:
                    continue
                if not (ROOT / cited).exists():
                    missing.append(f"{source.relative_to(ROOT)}:{number}: {cited}")
    assert not missing, "cited paths that do not exist:\n" + "\n".join(missing)


def test_cited_model_sections_exist():
    sections = model_sections()
    missing = [
        f"{source.relative_to(ROOT)}:{number}: model.md {cited}"
        for source in REFERENCE_SOURCES
        for number, line in enumerate(source.read_text().splitlines(), 1)
        for cited in SECTION_PATTERN.findall(line)
        if cited not in sections
    ]
    assert not missing, "cited sections missing from docs/model.md:\n" + "\n".join(missing)


def test_help_and_version_load_no_numba():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from moesim.cli import main\n"
        "for arguments in (['--version'], ['--help']):\n"
        "    sys.argv = ['moesim', *arguments]\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('numba', 'matplotlib', 'moesim.engine') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    outcome = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "HEAVY []" in outcome.stdout, outcome.stdout
