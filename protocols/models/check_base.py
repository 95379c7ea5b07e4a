"""The model checker's base: the problem list and the scalar checks.

Every check records its own problem as ``<key path>: <what is wrong>`` and
carries on, so one pass over a file lists every problem; the loader puts the
file's name in front (``meihua-ic.toml: register[3].type: ...``).
"""
from __future__ import annotations

import re
from typing import Any

# quantity[_unit]: lower case, with at most one final unit part that may carry
# capitals because SI units do (_V, _C, _kPa, _LEL).
NAME = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*(?:_[a-z]*[A-Z][A-Za-z0-9]*)?\Z")


def q(v: Any) -> str:
    return f'"{v}"' if isinstance(v, str) else repr(v)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_text(v: Any) -> bool:
    return isinstance(v, str) and v.strip() != ""


class CheckBase:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, key: str, what: str) -> None:
        self.problems.append(f"{key}: {what}")

    def unknown(self, key: str, table: dict, allowed: tuple[str, ...]) -> None:
        for k in table:
            if k not in allowed:
                self.add(f"{key}.{k}" if key else k, f"unknown key (allowed: {', '.join(allowed)})")

    def string(self, key: str, table: dict, name: str, *, required: bool = True) -> str | None:
        if name not in table:
            if required:
                self.add(f"{key}.{name}", "missing")
            return None
        v = table[name]
        if not is_text(v):
            self.add(f"{key}.{name}", f"{q(v)} is not a non-empty string")
            return None
        return v

    def quantity_name(self, key: str, table: dict, examples: str) -> str | None:
        """The entry's ``name``, which must read quantity[_unit]."""
        name = self.string(key, table, "name")
        if name is not None and not NAME.match(name):
            self.add(f"{key}.name", f"{q(name)} is not quantity[_unit] "
                     f"(lower case, digits and _, e.g. {examples})")
        return name

    def first_of_name(self, key: str, table: dict, seen: dict[str, str]) -> bool:
        """False, with the problem recorded, when an earlier entry of the same
        array (``seen``: name -> its key) already has this entry's name."""
        name = table.get("name")
        if isinstance(name, str) and name in seen:
            self.add(f"{key}.name", f"{q(name)} is already {seen[name]}")
            return False
        return True

    def boolean(self, key: str, table: dict, name: str) -> bool | None:
        if name not in table:
            self.add(f"{key}.{name}", "missing")
            return None
        v = table[name]
        if not isinstance(v, bool):
            self.add(f"{key}.{name}", f"{q(v)} is not true or false")
            return None
        return v

    def choice(self, key: str, table: dict, name: str, allowed: tuple[str, ...],
               what: str, default: str | None = None) -> str | None:
        if name not in table:
            if default is None:
                self.add(f"{key}.{name}", "missing")
            return default
        v = table[name]
        if v not in allowed:
            self.add(f"{key}.{name}", f"{q(v)} is not {what} ({', '.join(allowed)})")
            return None
        return v

    def array(self, key: str, v: Any) -> list[dict] | None:
        """An array of tables (``[[key]]``); None after recording why not."""
        if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
            self.add(key, f"must be an array of tables ([[{key}]])")
            return None
        return v
