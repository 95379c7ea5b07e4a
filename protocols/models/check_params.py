"""[[param]]: the values a site may set per device, and how triggers name them.

A param is declared once, with its unit, meaning (zh and en), default and
allowed range; a rule's trigger names it (``param = "..."``) and takes the
default from the declaration. The default is written in one place only, so
a model's documented default and the one the rules apply cannot drift.
"""
from __future__ import annotations

import math
from typing import Any

from .check_base import NAME, CheckBase, is_int, is_num, q
from .common import COMMON_NAMES
from .types import COMBINERS, LIMIT_KEYS, PARAM_TYPES, Param

PARAM_KEYS = ("name", "unit", "type", "default", "min", "max", "meaning_en", "meaning_zh")
# Rules whose limit is compared with a register's value: the param is in the register's unit.
_SAME_UNIT = ("above_max", "below_min", "below_min_while_positive", "drift")
# Rules whose limit has a unit of its own.
_OWN_UNIT = {"unchanged_days": "d", "stale": ""}


class ParamChecks(CheckBase):
    """Sets ``self.param_names`` (every name declared), ``self.declared``
    (the params that checked out, by name) and ``self.used_params`` (names
    triggers read), for the fault checks and the unused-param check."""

    def params(self, v: Any) -> tuple[Param, ...] | None:
        self.param_names: set[str] = set()
        self.declared: dict[str, Param] = {}
        self.used_params: set[str] = set()
        self.param_keys: dict[str, str] = {}      # name -> "param[i]"
        if v is None:
            return ()
        if self.array("param", v) is None:
            return None
        out: list[Param] = []
        seen = self.param_keys
        ok = True
        for i, t in enumerate(v):
            key = f"param[{i}]"
            p = self.param(key, t)
            name = t.get("name")
            if not self.first_of_name(key, t, seen):
                ok = False
                continue
            if isinstance(name, str) and name:
                if name in COMMON_NAMES:
                    self.add(f"{key}.name", f"{q(name)} is a param every device takes "
                             f"({', '.join(sorted(COMMON_NAMES))}); a model cannot declare it")
                    ok = False
                    continue
                seen[name] = key
                self.param_names.add(name)
            if p is None:
                ok = False
            else:
                out.append(p)
                self.declared[p.name] = p
        return tuple(out) if ok else None

    def param(self, key: str, t: dict) -> Param | None:
        before = len(self.problems)
        self.unknown(key, t, PARAM_KEYS)
        name = self.quantity_name(key, t, "max_flow_m3h, low_battery_V")
        unit = t.get("unit")
        if "unit" not in t:
            self.add(f"{key}.unit", 'missing ("" for a count)')
        elif not isinstance(unit, str):
            self.add(f"{key}.unit", f"{q(unit)} is not a string")
        typ = self.choice(key, t, "type", PARAM_TYPES, "a param type", "number")
        bounds = []
        for b in ("min", "max"):
            v = t.get(b)
            if b not in t:
                self.add(f"{key}.{b}", "missing (every param has an allowed range)")
            elif not is_num(v) or not math.isfinite(v):
                self.add(f"{key}.{b}", f"{q(v)} is not a number")
            elif typ == "integer" and not is_int(v):
                self.add(f"{key}.{b}", f"{q(v)} is not a whole number (type integer)")
            else:
                bounds.append(v)
        if len(bounds) == 2 and bounds[0] > bounds[1]:
            self.add(f"{key}.min", f"{bounds[0]} is above max {bounds[1]}")
        en = self.string(key, t, "meaning_en")
        zh = self.string(key, t, "meaning_zh")
        if len(self.problems) != before or name is None or typ is None or en is None or zh is None:
            return None
        p = Param(name=name, unit=unit, type=typ, min=bounds[0], max=bounds[1],
                  meaning_en=en, meaning_zh=zh)
        if "default" in t:
            why = p.problem(t["default"])
            if why is not None:
                self.add(f"{key}.default", why)
                return None
            p = Param(**{**p.__dict__, "default": t["default"]})
        return p

    # ---- triggers that name a param

    def param_ref(self, key: str, t: dict, rule: str) -> None:
        """A rule's ``param``: declared, the default in one place, the right unit."""
        name = t["param"]
        limit = LIMIT_KEYS[rule]
        if not isinstance(name, str) or not NAME.match(name):
            self.add(f"{key}.param", f"{q(name)} is not a param name (quantity[_unit])")
            return
        self.used_params.add(name)
        if limit in t:
            self.add(f"{key}.{limit}", f"param {q(name)} has its default in its [[param]] table: "
                     "write it there, not here")
        if name not in self.param_names:
            self.add(f"{key}.param", f"{q(name)} is not a declared param "
                     f"(add a [[param]] with name = {q(name)})")
            return
        p = self.declared.get(name)
        if p is None:                # a declaration with problems of its own, already listed
            return
        if p.default is None and rule != "unchanged_days":
            self.add(f"{key}.param", f"{q(name)} has no default; rule {rule} needs one "
                     "(only unchanged_days may stay off until a site sets it)")
        if rule in _SAME_UNIT:
            for fk in ("field", "other"):
                f = self.fields.get(t.get(fk)) if isinstance(t.get(fk), str) else None
                if f is not None and f.unit != p.unit:
                    self.add(f"{key}.param", f"{q(name)} is in {q(p.unit)} but {fk} "
                             f"{q(f.name)} is in {q(f.unit)}")
        elif rule in _OWN_UNIT and p.unit != _OWN_UNIT[rule]:
            what = "days" if rule == "unchanged_days" else "poll intervals"
            self.add(f"{key}.param", f"{q(name)} is in {q(p.unit)}; rule {rule} counts {what} "
                     f"(unit {q(_OWN_UNIT[rule])})")

    def unused_params(self) -> list[str]:
        """A declared param no trigger reads: a site setting it would change nothing."""
        before = len(self.problems)
        for p in self.declared.values():
            if p.name not in self.used_params:
                self.add(f"{self.param_keys[p.name]}.name", f"{q(p.name)} is read by no trigger of this model")
        out = self.problems[before:]
        del self.problems[before:]
        return out

    def resolve(self, t: dict) -> dict:
        """The trigger as the rules read it: a declared param's default copied
        in under the rule's limit key (gateway/faults/rules.py ``limit``)."""
        for c in COMBINERS:
            if c in t:
                v = t[c]
                return {c: self.resolve(v)} if c == "not" else {c: [self.resolve(x) for x in v]}
        out = dict(t)
        p = self.declared.get(t.get("param")) if isinstance(t.get("param"), str) else None
        if p is not None and p.default is not None and t.get("rule") in LIMIT_KEYS:
            out[LIMIT_KEYS[t["rule"]]] = p.default
        return out

