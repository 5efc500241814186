"""The rules of the house (README, "Architecture"), checked on the source with ``ast``.

- no import cycle between hbeval's modules (module-level imports);
- ``stats/`` imports nothing from hbeval but the vocabulary (``hbeval.arms``);
- ``report/`` calls no statistics kernel and no stage's glue (``stats``, ``outcomes``,
  ``costs``, ``economics``, ``randomisation``);
- nothing imports ``cli``;
- a function-local import of hbeval carries a one-line reason (a comment on its line, or on a
  line of its own just above), and there are only a handful of them outside the command line
  (whose imports are all lazy, so that ``hbeval --help`` does not load the statistics);
- no module imports another module's ``_private`` name (a shared helper is public);
- defaults of study parameters (``min_cell``, seeds, price year, ...) live in
  ``study/config.py`` only: a function below it takes them without a default.

``python tests/test_architecture.py`` prints the import graph's size, its levels (longest
path of module-level imports) and that path.
"""

from __future__ import annotations

import ast
from functools import cache
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


# A private name used across modules: a debt each owner is to pay by making the helper public.
KNOWN_PRIVATE_IMPORTS = {
    ("hbeval.stats.factorial", "hbeval.stats.ols._t_row"),
    ("hbeval.stats.heterogeneity", "hbeval.stats.ols._t_row"),
    ("hbeval.stats.ri", "hbeval.stats.factorial._covariates"),
    ("hbeval.study.ingest", "hbeval.outdir._alive"),
    ("hbeval.randomisation.allocate", "hbeval.randomisation.registry._has_tables"),
}


def _private_uses(mod: str, path: Path) -> set[str]:
    """``<module>.<_name>`` of every other hbeval module's private name that ``mod`` imports
    (``from m import _x``) or reads (``m._x`` on an imported module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules: dict[str, str] = {}
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hbeval") and node.level == 0:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if full in MODULES:
                    modules[a.asname or a.name] = full
                elif a.name.startswith("_") and not a.name.startswith("__") and node.module != mod:
                    out.add(full)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in MODULES and a.asname:
                    modules[a.asname] = a.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                and node.attr.startswith("_") and not node.attr.startswith("__") and modules[node.value.id] != mod):
            out.add(f"{modules[node.value.id]}.{node.attr}")
    return out


def test_no_module_uses_another_modules_private_names():
    found = {(m, name) for m, p in MODULES.items() for name in _private_uses(m, p)}
    new = sorted(found - KNOWN_PRIVATE_IMPORTS)
    assert not new, "private names used across modules (make the helper public):\n" + "\n".join(
        f"{m}: {name}" for m, name in new)


#: Parameters that a study's configuration decides (``hbeval.study.config.StudyConfig``).
CONFIG_PARAMETERS = ("min_cell", "seed", "price_year", "follow_up_days", "n_reps", "wtp", "wtp_reference", "perspective")
#: The demo draws its own data with its own seed; ``None`` ("from the configuration") is no default.
DEFAULTS_ALLOWED_IN = ("hbeval.study.config", "hbeval.demo", "hbeval.cli")
DEFAULTS_ALLOWED = {
    ("hbeval.outcomes.frame", "from_demo", "seed"),
    # new this round, still to be made explicit by their callers:
    ("hbeval.outcomes.subgroups", "subgroup_effects", "min_cell"),
    ("hbeval.outcomes.subgroups", "subgroup_costs", "min_cell"),
}


def test_study_parameters_have_no_default_below_the_configuration():
    bad = []
    for m, p in MODULES.items():
        if m in DEFAULTS_ALLOWED_IN:
            continue
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                pos = a.posonlyargs + a.args
                pairs = [*zip(pos[len(pos) - len(a.defaults):], a.defaults),
                         *((k, d) for k, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None)]
                bad += [f"{m}:{node.lineno} {node.name}({k.arg}={ast.unparse(d)})" for k, d in pairs
                        if k.arg in CONFIG_PARAMETERS and not (isinstance(d, ast.Constant) and d.value is None)
                        and (m, node.name, k.arg) not in DEFAULTS_ALLOWED]
    assert not bad, "study parameters with a default outside study/config.py:\n" + "\n".join(bad)


def graph_metrics() -> tuple[int, int, int, list[str]]:
    """``(modules, edges, levels, longest path)`` of the module-level import graph; the levels
    count the modules on its longest path."""
    g = _graph()

    @cache
    def depth(m: str) -> int:
        return 1 + max((depth(d) for d in g[m]), default=0)

    path = [max(sorted(g), key=depth)]
    while g[path[-1]]:
        path.append(max(sorted(g[path[-1]]), key=depth))
    return len(g), sum(len(v) for v in g.values()), depth(path[0]), path


def test_graph_metrics_follow_the_longest_path():
    n, edges, levels, path = graph_metrics()
    g = _graph()
    assert len(path) == levels and n == len(MODULES) and edges >= n - 1
    assert all(b in g[a] for a, b in zip(path, path[1:])) and not g[path[-1]]


if __name__ == "__main__":
    n, edges, levels, path = graph_metrics()
    print(f"modules {n}, edges {edges}, levels {levels}")
    print("longest path: " + " -> ".join(path))
