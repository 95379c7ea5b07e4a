"""What a loaded model is: Model, Param, Fault, Text, the vocabularies the
format allows, and two readers of a trigger (leaves, trigger_text)."""
from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import dataclass
from typing import Any

from protocols.modbus.types import Field

SEVERITIES = ("critical", "major", "minor", "info")
KINDS = ("fault", "state")
CLEARED_BY = (
    "fault_card", "fault_recovery_card", "battery_reinsert", "battery_replacement",
    "part_replacement", "parameter_card", "purchase_card", "operator", "self", "none",
    "manufacturer",
)
PARAM_TYPES = ("number", "integer")

# rule -> (required keys, optional keys), besides "rule". Mirrors the table in
# docs/dev/interfaces.md and gateway/faults/rules.py; tests/unit/test_catalogue.py
# keeps the three in step. A limit is written either as a number in the
# trigger (`default`, or `intervals` for stale) or as a declared `param`,
# whose [[param]] holds the default: never both, so a default lives in one
# place (LIMIT_KEYS). counting_while needs exactly one of equals/below,
# unchanged_days a gate only with when_field, checked separately.
RULE_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "above_max": (("field",), ("param", "default")),
    "below_min": (("field",), ("param", "default")),
    "below_min_while_positive": (("field",), ("param", "default")),
    "drift": (("field", "other"), ("param", "default")),
    "counting_while": (("field", "when_field"), ("equals", "below")),
    "decreased": (("field",), ()),
    "increased": (("field",), ()),
    # a param without a default: the finding is off until a site sets it (E1)
    "unchanged_days": (("field", "param"), ("when_field", "equals", "below")),
    "stale": ((), ("intervals", "param")),
}
# rule -> the trigger key the rules read the limit from (gateway/faults/rules.py)
LIMIT_KEYS = {"above_max": "default", "below_min": "default", "below_min_while_positive": "default",
              "drift": "default", "unchanged_days": "default", "stale": "intervals"}
# Triggers that combine others (docs/models/format.md, "Combined triggers").
COMBINERS = ("all", "any", "not")


@dataclass(frozen=True)
class Text:
    meaning: str
    causes: tuple[str, ...]     # most likely first, as the manual orders them
    remedy: tuple[str, ...]     # steps
    cleared_by: str             # human sentence


@dataclass(frozen=True)
class Fault:
    code: str
    severity: str
    valve_closed: bool
    site_visit: bool
    debounce: int
    kind: str
    # As the rules read it: a rule naming a declared param carries that
    # param's default here under its limit key (LIMIT_KEYS), copied from the
    # [[param]] table; in the file the default is written only there.
    trigger: dict
    cleared_by: str
    ref: str
    en: Text
    zh: Text

    def text(self, lang: str) -> Text:
        # "zh", "zh-CN", "zh_Hans" all mean the Chinese text; anything else English.
        return self.zh if str(lang).lower().startswith("zh") else self.en


def number_text(v: float) -> str:
    """A limit as a person writes it: 160, 0.8, 1000000 (never 160.0 or 1e+06)."""
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


@dataclass(frozen=True)
class Param:
    """A value a site may set per device under [device.params]."""
    name: str
    unit: str                   # as register units: "m3/h", "kPa", "C", "d", "s"; "" for a count
    meaning_en: str
    meaning_zh: str             # in the service manual's words
    min: float | int
    max: float | int
    default: float | int | None = None   # None: the finding is off until the site sets it
    type: str = "number"        # "number" | "integer"

    def meaning(self, lang: str) -> str:
        return self.meaning_zh if str(lang).lower().startswith("zh") else self.meaning_en

    def range_text(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"{number_text(self.min)} to {number_text(self.max)}{unit}"

    def problem(self, value: Any) -> str | None:
        """Why `value` cannot be this param's value, or None when it can.
        The one check the model loader (defaults) and the config checker
        (site values) both use."""
        integer = self.type == "integer"
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or (integer and not isinstance(value, int)):
            return f"expected {'an integer' if integer else 'a number'}, got {value_kind(value)}"
        if not math.isfinite(value):
            return f"{value!r} is not a finite number"
        if not self.min <= value <= self.max:
            return f"{number_text(value)} is outside {self.range_text()}"
        return None


def value_kind(v: Any) -> str:
    """What a TOML value is, for a problem line ("got string \"3\""): the one
    wording the model checker and the site config checker share."""
    if isinstance(v, bool):
        return f"boolean {'true' if v else 'false'}"
    if isinstance(v, int):
        return f"integer {v}"
    if isinstance(v, float):
        return f"float {v!r}"
    if isinstance(v, str):
        return f"string {json.dumps(v, ensure_ascii=False)}"
    if isinstance(v, dict):
        return "table"
    if isinstance(v, list):
        return "array"
    if isinstance(v, (_dt.datetime, _dt.date, _dt.time)):
        return f"date/time {v.isoformat()}"
    return type(v).__name__


@dataclass(frozen=True)
class Model:
    id: str
    name_en: str
    name_zh: str
    family: str
    fields: tuple[Field, ...]
    faults: tuple[Fault, ...]
    max_registers_per_read: int = 125
    identify: dict | None = None
    params: tuple[Param, ...] = ()   # what its rules let a site set, in file order

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.id}: no register {name!r}")

    def fault(self, code: str) -> Fault:
        for f in self.faults:
            if f.code == code:
                return f
        raise KeyError(f"{self.id}: no fault {code!r}")

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"{self.id}: no param {name!r}")


class ModelError(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def leaves(trigger: dict):
    """The plain triggers (field and rule forms) inside a trigger, in file order.

    For readers of a catalogue (tests, docs, the interpreter): a combined
    trigger's parts are where the registers and params it reads are named.
    """
    for name in COMBINERS:
        if name in trigger:
            parts = trigger[name]
            for sub in ([parts] if name == "not" else parts):
                yield from leaves(sub)
            return
    yield trigger


def _value_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.7g}"
    return str(v)


def trigger_text(trigger: dict) -> str:
    """One line a person can read (``edgegw explain``), never a Python repr:
    ``all of (field = status_word, bit = 0) and (field = error_code, equals = 0)``."""
    for name, joint in (("all", " and "), ("any", " or ")):
        if name in trigger:
            return f"{name} of " + joint.join(f"({trigger_text(t)})" for t in trigger[name])
    if "not" in trigger:
        return f"not ({trigger_text(trigger['not'])})"
    return ", ".join(f"{k} = {_value_text(v)}" for k, v in trigger.items())
