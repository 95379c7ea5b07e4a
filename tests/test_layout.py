"""The floor plan, enforced: no import cycles, imports only in the allowed
direction, no function-level imports of project modules, modules of a
readable size. docs/dev/interfaces.md draws the same map for people.

    field tools -> daemon wiring -> pipeline stages -> site and protocols

Every import counts, whether at module level or inside a function, and an
import of `a.b.c` also imports the packages `a` and `a.b` (Python runs
their __init__ first), so those edges are in the graph too.
"""
from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROOTS = ("gateway", "protocols", "simulators")
STAGES = ("gateway.site", "gateway.poll", "gateway.faults", "gateway.deliver", "gateway.doors")

# Which groups each group may import (besides itself). A group is a top
# package, a gateway subpackage, or one of gateway's top-level modules.
ALLOWED: dict[str, set[str]] = {
    "protocols": set(),
    "simulators": {"protocols", "miu"},
    "gateway": set(),                                   # gateway/__init__.py: the version
    "gateway.site": {"protocols", "gateway"},
    "gateway.poll": {"protocols", "gateway", "gateway.site"},
    "gateway.deliver": {"protocols", "gateway", "gateway.site"},
    "gateway.faults": {"protocols", "gateway", "gateway.site", "gateway.poll"},
    "gateway.doors": {"protocols", "gateway", "gateway.site", "gateway.poll", "gateway.deliver"},
    "gateway.daemon": {"protocols", "gateway", *STAGES},
    "gateway.field": {"protocols", "gateway", *STAGES, "gateway.daemon"},
    "gateway.__main__": {"gateway", "gateway.field"},
}
MAX_LINES = 400
# A module may run longer only when splitting it would scatter one idea; its
# docstring then says so with this phrase and the reason.
LONG_MARK = "Longer than 400 lines because"


def _modules() -> dict[str, Path]:
    out = {}
    for top in ROOTS:
        for f in sorted((ROOT / top).rglob("*.py")):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def group(name: str) -> str:
    parts = name.split(".")
    if parts[0] != "gateway":
        return parts[0]
    return ".".join(parts[:2]) if len(parts) > 1 else "gateway"


def _imports(name: str, path: Path) -> list[tuple[str, int, bool, bool]]:
    """(imported module, line, at module level, under TYPE_CHECKING) for every import."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if _is_package(name) else name.rpartition(".")[0]
    top_level = {id(n) for n in tree.body}
    typing_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only |= {id(n) for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod]
            # `from pkg import submodule` imports the submodule too
            targets += [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in MODULES]
        else:
            continue
        for t in targets:
            out.append((t, node.lineno, id(node) in top_level, id(node) in typing_only))
    return out


def _project(target: str) -> str | None:
    """The project module an import resolves to (the longest known prefix)."""
    parts = target.split(".")
    while parts:
        cand = ".".join(parts)
        if cand in MODULES:
            return cand
        parts.pop()
    return None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        for target, _line, _top, typing_only in _imports(name, path):
            mod = _project(target)
            if mod is None or typing_only:
                continue
            parts = mod.split(".")
            for i in range(1, len(parts) + 1):   # parents run first
                dep = ".".join(parts[:i])
                if dep in MODULES and dep != name and not name.startswith(dep + "."):
                    graph[name].add(dep)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_point_the_allowed_way():
    wrong = []
    for name, path in MODULES.items():
        g = group(name)
        allowed = ALLOWED[g] | {g}
        for target, line, _top, typing_only in _imports(name, path):
            mod = _project(target) or (target.split(".")[0] if target.split(".")[0] == "miu" else None)
            if mod is None or typing_only:
                continue
            if group(mod) not in allowed:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {name} ({g}) imports {mod} ({group(mod)})")
    assert wrong == []


def test_every_group_is_known():
    assert {group(m) for m in MODULES} <= set(ALLOWED)


def test_no_function_level_imports_of_project_modules():
    """Hoisted imports show the dependency where a reader looks for it, and
    the graph above sees it. A stdlib or third-party import inside a function
    is allowed only for something heavy or optional, with a comment saying why."""
    found = []
    for name, path in MODULES.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for target, line, top, typing_only in _imports(name, path):
            if top or typing_only:
                continue
            if _project(target) is not None or target.split(".")[0] == "miu":
                found.append(f"{path.relative_to(ROOT)}:{line}: {target}")
                continue
            near = lines[max(0, line - 3):line]
            if not any("#" in x for x in near):
                found.append(f"{path.relative_to(ROOT)}:{line}: {target} (no comment saying why)")
    assert found == []


def test_modules_stay_readable():
    long = []
    for name, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        n = len(text.splitlines())
        doc = ast.get_docstring(ast.parse(text)) or ""
        if n > MAX_LINES and LONG_MARK not in doc:
            long.append(f"{path.relative_to(ROOT)}: {n} lines")
    assert long == []


def test_every_package_is_installed():
    """A wheel holds only the packages pyproject.toml lists: a folder left out
    works from a checkout and fails on a site box."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {m for m in MODULES if _is_package(m)}
    assert packages - listed == set()
