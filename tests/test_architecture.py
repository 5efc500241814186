"""The rules of the house (README, "Architecture"), checked on the source with ``ast``.

- no import cycle between hbeval's modules (module-level imports);
- ``stats/`` imports nothing from hbeval but the vocabulary (``hbeval.arms``);
- ``report/`` calls no statistics kernel and no stage's glue (``stats``, ``outcomes``,
  ``costs``, ``economics``, ``randomisation``);
- nothing imports ``cli``;
- a function-local import of hbeval carries a one-line reason (a comment on its line, or on a
  line of its own just above), and there are only a handful of them outside the command line
  (whose imports are all lazy, so that ``hbeval --help`` does not load the statistics).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "hbeval"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    """The import statements under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    out = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out |= {id(n) for n in ast.walk(node)}
    return out


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """``(imported hbeval module, line, at module level)`` for every runtime import of hbeval
    (one entry per statement and module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    typing_only = _type_checking_nodes(tree)
    found: dict[tuple[str, int], bool] = {}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for n in names:
            if n == "hbeval" or n.startswith("hbeval."):
                mod = n
                while mod not in MODULES and "." in mod:
                    mod = mod.rsplit(".", 1)[0]
                if mod in MODULES:
                    found[(mod, node.lineno)] = id(node) in top
    return [(m, line, t) for (m, line), t in found.items()]


def _graph() -> dict[str, set[str]]:
    g: dict[str, set[str]] = {m: set() for m in MODULES}
    for m, p in MODULES.items():
        for dep, _, at_top in _imports(p):
            if at_top and dep != m and dep != "hbeval":
                g[m].add(dep)
    return g


def test_no_import_cycle():
    g = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(g[m]):
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)


@pytest.mark.parametrize("mod", sorted(m for m in MODULES if m.startswith("hbeval.stats")))
def test_stats_imports_only_the_vocabulary(mod):
    bad = [(d, line) for d, line, _ in _imports(MODULES[mod]) if not (d == "hbeval.arms" or d.startswith("hbeval.stats"))]
    assert not bad, f"{mod} imports {bad}"


STAGES = ("hbeval.stats", "hbeval.outcomes", "hbeval.costs", "hbeval.economics", "hbeval.randomisation")


@pytest.mark.parametrize("mod", sorted(m for m in MODULES if m.startswith("hbeval.report")))
def test_report_calls_no_kernel(mod):
    bad = [(d, line) for d, line, _ in _imports(MODULES[mod]) if d.startswith(STAGES)]
    assert not bad, f"{mod} imports {bad}"


def test_nothing_imports_cli():
    users = [m for m, p in MODULES.items() if any(d == "hbeval.cli" for d, _, _ in _imports(p)) and m != "hbeval.__main__"]
    assert not users


def test_function_local_imports_are_few_and_give_a_reason():
    local = []
    for m, p in MODULES.items():
        lines = p.read_text(encoding="utf-8").splitlines()
        for _, line, at_top in _imports(p):
            if not at_top and m not in ("hbeval", "hbeval.cli"):
                local.append((m, line, lines[line - 1]))
    local = sorted({(m, line): text for m, line, text in local}.items())
    local = [(m, line, text) for (m, line), text in local]
    def reason(m: str, line: int, text: str) -> bool:
        above = MODULES[m].read_text(encoding="utf-8").splitlines()[line - 2].strip()
        return "#" in text or above.startswith("#")

    unexplained = [x for x in local if not reason(*x)]
    assert not unexplained, "function-local imports without a one-line reason:\n" + "\n".join(
        f"{m}:{line}: {text.strip()}" for m, line, text in unexplained)
    assert len({(m, line) for m, line, _ in local}) <= 15, f"{len(local)} function-local imports: keep them a handful"
