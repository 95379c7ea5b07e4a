"""docs/dev/interfaces.md names only what exists: every `module.py` path,
every `ClassName`, every `name()` called and every `Class.attribute` written
in its code (fenced blocks and inline code) is defined in the project; the
floor plan names every module of its folder; the gateway-rule table lists
exactly the rules there are.

Names are collected from the source with ast (functions, classes, methods,
assignments at module and class level, `self.x = ...` attributes, dataclass
fields), never imported, so a name the doc invents fails here, and a name
the code drops fails the next time this runs."""
from __future__ import annotations

import ast
import asyncio
import builtins
import collections.abc
import dataclasses
import enum
import pathlib
import re
import sqlite3
import typing

import tinydb

from gateway.faults.rules import RULES

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "dev" / "interfaces.md"
SOURCE_ROOTS = ("gateway", "protocols", "simulators", "bench")
# The names of the standard library and the libraries the doc writes in signatures.
EXTERNAL = set(dir(builtins)) | set(dir(typing)) | set(dir(collections.abc)) | set(dir(asyncio)) \
    | set(dir(enum)) | set(dir(dataclasses)) | set(dir(pathlib)) | set(dir(sqlite3)) | set(dir(tinydb)) \
    | {"NaN"}


def _sources() -> list[pathlib.Path]:
    return sorted(p for top in SOURCE_ROOTS for p in (ROOT / top).rglob("*.py"))


def _defined() -> set[str]:
    names: set[str] = set()
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    for n in ast.walk(t):
                        if isinstance(n, ast.Name):
                            names.add(n.id)
                        elif isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) \
                                and n.value.id in ("self", "cls"):
                            names.add(n.attr)
    return names


def _code(text: str) -> str:
    """The doc's code: fenced blocks and inline `code`, prose left out."""
    fenced = re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M)
    prose = re.sub(r"^```[a-z]*\n.*?^```", "", text, flags=re.S | re.M)
    return "\n".join(fenced + re.findall(r"`([^`\n]+)`", prose))


def _floor_plan(text: str) -> list[str]:
    section = text.split("## The floor plan", 1)[1].split("\n## ", 1)[0]
    return re.search(r"^```\n(.*?)^```", section, flags=re.S | re.M).group(1).splitlines()


TEXT = DOC.read_text(encoding="utf-8")
CODE = _code(TEXT)
DEFINED = _defined()


def test_every_module_path_exists():
    files = [p.relative_to(ROOT).as_posix() for p in _sources()] + \
            [p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").rglob("*.py")]
    missing = []
    for token in sorted(set(re.findall(r"[A-Za-z_][\w/]*\.py\b", TEXT))):
        if "/" in token:
            ok = any(f == token or f.endswith("/" + token) for f in files)
        else:
            ok = any(f.rsplit("/", 1)[-1] == token for f in files)
        if not ok:
            missing.append(token)
    assert missing == []


def test_the_floor_plan_names_every_module_in_its_folder():
    """Each module's file name stands in the entry of its folder (its top
    folder, and the subfolder below it where there is one)."""
    entries: dict[tuple[str, str], str] = {}
    top = second = ""
    for line in _floor_plan(TEXT):
        m = re.match(r"^(\S+)", line)
        if m:
            top, second = m.group(1), ""
        else:
            m = re.match(r"^  (\S+)", line)
            if m:
                second = m.group(1)
        entries[(top, second)] = entries.get((top, second), "") + " " + line
    missing = []
    for path in _sources():
        rel = path.relative_to(ROOT).parts
        if rel[-1] in ("__init__.py", "__main__.py"):
            continue
        top_dir = rel[0] + "/"
        if len(rel) == 2:      # a module of the top folder: its own entry or the folder's text
            text = entries.get((top_dir, rel[1]), "") + entries.get((top_dir, ""), "")
        else:                  # in a subfolder: the subfolder's entry
            text = entries.get((top_dir, rel[1] + "/"), "")
        if not re.search(rf"(?<![\w.]){re.escape(rel[-1])}\b", text):
            missing.append("/".join(rel))
    assert missing == []


def test_every_name_called_exists():
    called = set(re.findall(r"(?<![\w.])([A-Za-z_]\w*)\(", CODE)) \
        | set(re.findall(r"\.([A-Za-z_]\w*)\(", CODE))
    unknown = sorted(n for n in called if n not in DEFINED and n not in EXTERNAL
                     and n not in ("def", "class", "if", "for", "while", "return", "await"))
    assert unknown == []


def test_every_class_name_exists():
    camel = set(re.findall(r"\b([A-Z][a-z0-9]+(?:[A-Z][A-Za-z0-9]*)+)\b", CODE))
    classes = set(re.findall(r"\bclass ([A-Z]\w*)", CODE))
    inline = set(re.findall(r"`([A-Z][a-z]\w*)`", TEXT))
    unknown = sorted(n for n in camel | classes | inline if n not in DEFINED and n not in EXTERNAL)
    assert unknown == []


def test_every_class_attribute_exists():
    pairs = set(re.findall(r"\b([A-Z]\w*)\.([a-z_]\w*)", CODE))
    unknown = sorted(f"{c}.{a}" for c, a in pairs if c not in EXTERNAL and a not in DEFINED)
    assert unknown == []


def test_the_rule_table_lists_every_rule():
    section = TEXT.split("Gateway rules (", 1)[1]
    listed = set(re.findall(r"^\| `(\w+)` \|", section, flags=re.M))
    assert listed == set(RULES)


def test_the_checks_can_fail():
    """A name that does not exist is caught by each check."""
    assert "NoSuchWriter" not in DEFINED and "no_such_function" not in DEFINED
    assert re.findall(r"(?<![\w.])([A-Za-z_]\w*)\(", "no_such_function(x)") == ["no_such_function"]
    assert "StoreWriter" in DEFINED and "put_encoded" in DEFINED and "checked_rows" in DEFINED
