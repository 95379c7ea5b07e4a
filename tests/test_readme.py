"""README.md: the first screen gives the two commands, every doc in docs/ is
reachable from it by links, and its Commands section names every command
of `edgegw` (the argparse parser is the list)."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from gateway.field.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)")


def _links(path: Path) -> set[Path]:
    return {(path.parent / m).resolve() for m in LINK.findall(path.read_text(encoding="utf-8"))
            if not m.startswith(("http://", "https://"))}


def test_the_first_screen_gives_the_two_commands():
    first = README.read_text(encoding="utf-8").splitlines()[:25]
    assert any("make demo" in x for x in first) and any("make test" in x for x in first)


def test_every_doc_is_reachable_from_the_readme():
    seen: set[Path] = set()
    todo = [README.resolve()]
    while todo:
        p = todo.pop()
        if p in seen or not p.exists():
            continue
        seen.add(p)
        todo += [q for q in _links(p) if q.suffix == ".md"]
    docs = {p.resolve() for p in (ROOT / "docs").rglob("*.md")}
    assert sorted(str(p.relative_to(ROOT)) for p in docs - seen) == []


def test_the_readme_links_each_top_level_doc_itself():
    direct = _links(README)
    docs = {p.resolve() for p in (ROOT / "docs").glob("*.md")} | {(ROOT / "docs/dev/interfaces.md").resolve()}
    assert sorted(str(p.relative_to(ROOT)) for p in docs - direct) == []


def _commands(parser: argparse.ArgumentParser, prefix: str = "edgegw") -> list[str]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = _commands(sub, f"{prefix} {name}")
                out += nested or [f"{prefix} {name}"]
    return out


def test_the_commands_section_names_every_command():
    text = README.read_text(encoding="utf-8")
    commands = text.split("## Commands", 1)[1]
    names = [c for c in _commands(build_parser()) if c != "edgegw demo"]   # `make demo` runs it
    assert "edgegw status" in names and "edgegw model check" in names
    assert [c for c in names if c + " " not in commands and c + "\n" not in commands] == []
    assert "edgegw --version" in commands
