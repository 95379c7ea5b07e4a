"""docs/configuration.md names every key the config checker knows, in the
section of its table, and lists no key the checker would refuse.

The keys come from the checker itself: every `self.fields(data, kp, spec)`
call in gateway/site/config/*.py, read with ast, its spec dict resolved
(a literal, or a comprehension over a constant of the module such as
DEVICE_META). A key added to the checker without a word in the doc fails
here, and so does a documented key the checker no longer takes.
"""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "gateway" / "site" / "config"
DOC = ROOT / "docs" / "configuration.md"
# The checker method that reads a table -> the heading of its section.
SECTIONS = {
    "gateway": "`[gateway]`",
    "mqtt": "`[mqtt]`",
    "tls": "`[mqtt.tls]`",
    "outbox": "`[outbox]`",
    "bus": "`[[bus]]`",
    "device": "`[[device]]`",
    "meta": "`[device.meta]`",
    "report": "`[device.report]`",
    "service": "`[service]`",
    "respond_within_h": "`[service]`",
    "homeassistant": "`[homeassistant]`",
    "doors": "`[doors]`",
}
# Keys that are tables of their own, documented under their own heading.
SUBTABLES = {("mqtt", "tls"): "`[mqtt.tls]`"}


def _spec_keys(module_name: str, fn: ast.FunctionDef, call: ast.Call) -> list[str]:
    spec = call.args[2]
    if isinstance(spec, ast.Name):
        assigned = [n.value for n in ast.walk(fn) if isinstance(n, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == spec.id for t in n.targets)
                    and n.lineno < call.lineno]
        spec = assigned[-1]
    if isinstance(spec, ast.Dict):
        return [k.value for k in spec.keys if isinstance(k, ast.Constant)]
    if isinstance(spec, ast.DictComp):
        module = importlib.import_module(module_name)
        return list(eval(compile(ast.Expression(spec.generators[0].iter), "<spec>", "eval"),  # noqa: S307
                         vars(module)))
    raise AssertionError(f"{module_name}.{fn.name}: a spec this test cannot read: {ast.unparse(spec)}")


def checker_keys() -> dict[str, list[str]]:
    """Checker method name -> the keys of the table it checks."""
    out: dict[str, list[str]] = {}
    for path in sorted(CONFIG.glob("*.py")):
        module_name = "gateway.site.config." + path.stem
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef):
                continue
            for call in ast.walk(fn):
                if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) \
                        and call.func.attr == "fields" and len(call.args) >= 3:
                    out.setdefault(fn.name, []).extend(_spec_keys(module_name, fn, call))
    return out


def section(text: str, heading: str) -> str:
    """From the heading that names the table to the next heading of any level."""
    m = re.search(rf"^#+ {re.escape(heading)}.*$", text, flags=re.M)
    assert m, f"docs/configuration.md has no section {heading}"
    rest = text[m.end():]
    nxt = re.search(r"^#+ ", rest, flags=re.M)
    return rest[:nxt.start()] if nxt else rest


KEYS = checker_keys()
TEXT = DOC.read_text(encoding="utf-8")


def test_the_checker_tables_are_all_mapped():
    assert set(KEYS) == set(SECTIONS), "a checker table without its doc section (or one gone)"
    assert "heartbeat_s" in KEYS["report"] and "critical" in KEYS["respond_within_h"]


def test_every_key_is_in_its_section():
    missing = []
    for table, keys in KEYS.items():
        body = section(TEXT, SECTIONS[table])
        for key in keys:
            sub = SUBTABLES.get((table, key))
            if f"`{key}`" not in body and not (sub and re.search(rf"^#+ {re.escape(sub)}", TEXT, flags=re.M)):
                missing.append(f"{SECTIONS[table]} {key}")
    assert missing == []


def test_every_documented_key_is_one_the_checker_takes():
    unknown = []
    for table, heading in SECTIONS.items():
        if table == "respond_within_h":
            continue
        known = set(KEYS[table]) | (set(KEYS["respond_within_h"]) if table == "service" else set())
        for row in re.findall(r"^\| ([^|]+) \|", section(TEXT, heading), flags=re.M):
            for key in re.findall(r"`([^`]+)`", row):
                if key not in known:
                    unknown.append(f"{heading} {key}")
    assert unknown == []


def test_every_top_level_table_has_a_section():
    tops = importlib.import_module("gateway.site.config.sections")._TOP
    for top in tops:
        assert re.search(rf"^## `\[\[?{top}\]\]?`", TEXT, flags=re.M), top

