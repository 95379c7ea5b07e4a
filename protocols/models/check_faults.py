"""[[fault]]: the catalogue entries, their texts and triggers."""
from __future__ import annotations

import re
from typing import Any

from protocols.modbus.types import Field

from .check_base import CheckBase, is_int, is_num, is_text, q
from .types import (
    CLEARED_BY,
    COMBINERS,
    KINDS,
    LIMIT_KEYS,
    RULE_KEYS,
    SEVERITIES,
    Fault,
    Text,
)

FAULT_KEYS = ("code", "severity", "valve_closed", "site_visit", "debounce", "kind",
              "trigger", "cleared_by", "ref", "en", "zh")
TEXT_KEYS = ("meaning", "causes", "remedy", "cleared_by")
# Keys of a rule trigger that name a register of the model.
_FIELD_KEYS = ("field", "other", "when_field")
# Nesting is bounded so a mistaken self-similar file cannot recurse forever.
_MAX_DEPTH = 4
_FORMS = "{ field, bit }, { field, equals }, { rule, ... }, { all = [...] }, { any = [...] }, { not = {...} }"
# sections A..J of the service manual; a bare letter is a whole section (C: cards)
_REF = re.compile(r"[A-J][0-9]{0,2}\Z")


class FaultChecks(CheckBase):
    """Needs ``self.names``/``self.fields`` (the registers) and, for rules
    that name a param, ``param_ref`` and ``resolve`` (ParamChecks)."""

    def faults(self, faults: Any) -> list[Fault] | None:
        if faults is None:
            return []
        if self.array("fault", faults) is None:
            return None
        out: list[Fault] = []
        seen: dict[str, str] = {}
        ok = True
        for i, t in enumerate(faults):
            key = f"fault[{i}]"
            f = self.fault(key, t)
            code = t.get("code")
            if isinstance(code, str):
                if code in seen:
                    self.add(f"{key}.code", f"{q(code)} is already {seen[code]}")
                    ok = False
                else:
                    seen[code] = key
            if f is None:
                ok = False
            else:
                out.append(f)
        return out if ok else None

    def fault(self, key: str, t: dict) -> Fault | None:
        before = len(self.problems)
        self.unknown(key, t, FAULT_KEYS)
        code = self.string(key, t, "code")
        severity = self.choice(key, t, "severity", SEVERITIES, "a severity")
        valve = self.boolean(key, t, "valve_closed")
        visit = self.boolean(key, t, "site_visit")
        debounce = t.get("debounce", 1)
        if not is_int(debounce) or debounce < 1:
            self.add(f"{key}.debounce", f"{q(debounce)} is not a whole number >= 1")
        kind = self.choice(key, t, "kind", KINDS, "a kind", "fault")
        trigger = self.trigger(f"{key}.trigger", t.get("trigger"))
        cleared = self.choice(key, t, "cleared_by", CLEARED_BY, "a cleared_by word")
        ref = self.string(key, t, "ref")
        if ref is not None and not _REF.match(ref):
            self.add(f"{key}.ref", f"{q(ref)} is not a service-manual row (e.g. A8, D1, C)")
        en = self.text(f"{key}.en", t.get("en"))
        zh = self.text(f"{key}.zh", t.get("zh"))
        if (len(self.problems) != before or code is None or severity is None or valve is None
                or visit is None or kind is None or trigger is None or cleared is None
                or ref is None or en is None or zh is None):
            return None
        return Fault(code=code, severity=severity, valve_closed=valve, site_visit=visit,
                     debounce=debounce, kind=kind, trigger=self.resolve(trigger), cleared_by=cleared,
                     ref=ref, en=en, zh=zh)

    def text(self, key: str, t: Any) -> Text | None:
        if t is None:
            self.add(key, "missing")
            return None
        if not isinstance(t, dict):
            self.add(key, "must be a table (meaning, causes, remedy, cleared_by)")
            return None
        self.unknown(key, t, TEXT_KEYS)
        meaning = self.string(key, t, "meaning")
        lists = []
        for name in ("causes", "remedy"):
            v = t.get(name)
            if v is None:
                self.add(f"{key}.{name}", "missing")
            elif not isinstance(v, list) or not v:
                self.add(f"{key}.{name}", "must be a non-empty list of strings")
            else:
                for j, item in enumerate(v):
                    if not is_text(item):
                        self.add(f"{key}.{name}[{j}]", f"{q(item)} is not a non-empty string")
                lists.append(tuple(v))
        cleared = self.string(key, t, "cleared_by")
        if meaning is None or cleared is None or len(lists) != 2:
            return None
        return Text(meaning=meaning, causes=lists[0], remedy=lists[1], cleared_by=cleared)

    def trigger(self, key: str, t: Any, depth: int = 0) -> dict | None:
        if t is None:
            self.add(key, "missing")
            return None
        if not isinstance(t, dict):
            self.add(key, f"must be a table: {_FORMS}")
            return None
        before = len(self.problems)
        combiners = [k for k in COMBINERS if k in t]
        if combiners:
            self.combined(key, t, combiners, depth)
        elif "rule" in t:
            self.rule_trigger(key, t)
        elif "bit" in t and "equals" in t:
            self.add(key, f"has both bit and equals: a trigger is exactly one of {_FORMS}")
        elif "bit" in t:
            self.unknown(key, t, ("field", "bit"))
            f = self.trigger_field(key, t, "field")
            b = t["bit"]
            if not is_int(b) or not 0 <= b <= 15:
                self.add(f"{key}.bit", f"{q(b)} is not a bit number 0..15")
            # the interpreter masks the raw word: a scaled or wider value would
            # not be the device's bits
            if f is not None and (f.type != "uint16" or f.scale != 1.0 or f.offset != 0.0):
                self.add(f"{key}.field", f"{q(f.name)} is not a raw uint16 word "
                         "(type uint16, no scale or offset)")
        elif "equals" in t:
            self.unknown(key, t, ("field", "equals"))
            f = self.trigger_field(key, t, "field")
            v = t["equals"]
            if f is not None:
                if f.type == "string":
                    if not isinstance(v, str):
                        self.add(f"{key}.equals", f"{q(v)} is not a string ({q(f.name)} is a string)")
                elif f.type == "bit":
                    if v not in (True, False, 0, 1) or isinstance(v, float):
                        self.add(f"{key}.equals", f"{q(v)} is not true/false ({q(f.name)} is a bit)")
                elif not is_num(v):
                    self.add(f"{key}.equals", f"{q(v)} is not a number")
        else:
            self.add(key, f"is none of {_FORMS}")
        if len(self.problems) != before:
            return None
        return dict(t)

    def combined(self, key: str, t: dict, combiners: list[str], depth: int) -> None:
        if len(combiners) > 1 or len(t) > 1:
            self.add(key, f"{' and '.join(combiners) if len(combiners) > 1 else combiners[0]} "
                     "takes no other key: one of all, any, not per table")
            return
        name = combiners[0]
        if depth >= _MAX_DEPTH:
            self.add(f"{key}.{name}", f"nested deeper than {_MAX_DEPTH} levels")
            return
        v = t[name]
        if name == "not":
            self.trigger(f"{key}.not", v, depth + 1)
            return
        if not isinstance(v, list) or len(v) < 2:
            self.add(f"{key}.{name}", "must be a list of at least two triggers")
            return
        for i, sub in enumerate(v):
            self.trigger(f"{key}.{name}[{i}]", sub, depth + 1)

    def trigger_field(self, key: str, t: dict, name: str, *, numeric: bool = False) -> Field | None:
        if name not in t:
            self.add(f"{key}.{name}", "missing")
            return None
        v = t[name]
        if not isinstance(v, str) or v not in self.names:
            self.add(f"{key}.{name}", f"{q(v)} is not a register of this model")
            return None
        f = self.fields.get(v)
        if f is None:            # a register with problems of its own, already listed
            return None
        # rules compare numbers; a string or bit field makes them answer
        # "cannot tell" for ever, which is a silent dead fault
        if numeric and f.type in ("string", "bit"):
            self.add(f"{key}.{name}", f"{q(v)} is a {f.type} field; this rule needs a number")
        return f

    def rule_trigger(self, key: str, t: dict) -> None:
        rule = t["rule"]
        if rule not in RULE_KEYS:
            self.add(f"{key}.rule", f"{q(rule)} is not a rule ({', '.join(RULE_KEYS)})")
            return
        required, optional = RULE_KEYS[rule]
        limit = LIMIT_KEYS.get(rule)
        # With a param, a limit written here is not "unknown": param_ref says
        # where that default belongs instead.
        allowed = ("rule", *required, *optional)
        if limit is not None and "param" in t and limit not in allowed:
            allowed += (limit,)
        self.unknown(key, t, allowed)
        for k in required:
            if k not in t:
                self.add(f"{key}.{k}", f"missing (rule {rule} needs {', '.join(required)})")
        for k in _FIELD_KEYS:
            if k in t and (k in required or k in optional):
                numeric = not (k == "when_field" and "equals" in t)
                self.trigger_field(key, t, k, numeric=numeric)
        for k in ("default", "below"):
            if k in t and not is_num(t[k]):
                self.add(f"{key}.{k}", f"{q(t[k])} is not a number")
        if "intervals" in t and (not is_num(t["intervals"]) or t["intervals"] <= 0):
            self.add(f"{key}.intervals", f"{q(t['intervals'])} is not a number > 0")
        if "param" in t and limit is not None:
            self.param_ref(key, t, rule)
        elif limit is not None and limit not in t and "param" not in required:
            self.add(f"{key}.{limit}", f"missing (rule {rule} needs {limit} or param)")
        gates = [k for k in ("equals", "below") if k in t]
        if rule == "counting_while" and len(gates) != 1:
            self.add(key, "rule counting_while needs exactly one of equals, below")
        elif rule == "unchanged_days" and (("when_field" in t) != (len(gates) == 1) or len(gates) > 1):
            self.add(key, "rule unchanged_days takes when_field with exactly one of "
                     "equals, below, or none of the three")
        if "equals" in t and not is_num(t["equals"]):
            self.add(f"{key}.equals", f"{q(t['equals'])} is not a number")
