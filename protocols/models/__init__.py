"""Device models: register maps and fault catalogues (data), and their loader.

A model is one TOML file, ``protocols/models/<id>.toml``; the format is in
docs/models/format.md. The catalogue is per model on purpose: the same code
means different things on different devices (ERR-1 is magnetic tampering on a
residential meter and a low internal battery on an MHCG controller).

The checker never stops at the first problem. A person mapping a vendor's
device fixes a file in one pass only if every problem is listed at once, each
as ``<file>: <key path>: <what is wrong>``, in file order.

This lives in the package's ``__init__`` rather than in a ``protocols/models.py``
next to it: a package directory wins over a module of the same name, so a
``models.py`` beside ``models/`` would never be imported.
"""
from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from protocols.modbus.types import FUNCTIONS, ORDERS, TYPES, Field, register_count

__all__ = [
    "CLEARED_BY", "COMBINERS", "KINDS", "RULE_KEYS", "SEVERITIES", "Fault", "Model", "ModelError",
    "Text", "clear_cache", "default_directory", "leaves", "load_model", "load_models",
    "trigger_text", "validate_all",
]

SEVERITIES = ("critical", "major", "minor", "info")
KINDS = ("fault", "state")
CLEARED_BY = (
    "fault_card", "fault_recovery_card", "battery_reinsert", "battery_replacement",
    "part_replacement", "parameter_card", "purchase_card", "operator", "self", "none",
    "manufacturer",
)

# rule -> (required keys, optional keys), besides "rule". Mirrors the table in
# docs/dev/interfaces.md and gateway/faults/rules.py; tests/unit/test_catalogue.py
# keeps the three in step. counting_while needs exactly one of equals/below,
# unchanged_days at most one (and only with when_field), checked separately.
RULE_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "above_max": (("field", "default"), ("param",)),
    "below_min": (("field", "default"), ("param",)),
    "below_min_while_positive": (("field", "default"), ("param",)),
    "drift": (("field", "other", "default"), ("param",)),
    "counting_while": (("field", "when_field"), ("equals", "below")),
    "decreased": (("field",), ()),
    "increased": (("field",), ()),
    # default optional: without one the finding is off until a site sets the param (E1)
    "unchanged_days": (("field", "param"), ("default", "when_field", "equals", "below")),
    "stale": (("intervals",), ("param",)),
}
# Keys of a rule trigger that name a register of the model.
_FIELD_KEYS = ("field", "other", "when_field")
# Triggers that combine others (docs/models/format.md, "Combined triggers").
# Nesting is bounded so a mistaken self-similar file cannot recurse forever.
COMBINERS = ("all", "any", "not")
_MAX_DEPTH = 4
_FORMS = "{ field, bit }, { field, equals }, { rule, ... }, { all = [...] }, { any = [...] }, { not = {...} }"

_MODEL_KEYS = ("id", "name_en", "name_zh", "family", "max_registers_per_read", "identify")
_FAULT_KEYS = ("code", "severity", "valve_closed", "site_visit", "debounce", "kind",
               "trigger", "cleared_by", "ref", "en", "zh")
_TEXT_KEYS = ("meaning", "causes", "remedy", "cleared_by")
_FIELD_ATTRS = tuple(f.name for f in dataclasses.fields(Field))
_INTFRAC_INT = ("uint16", "uint32", "int32")
_INTFRAC_FRAC = ("uint16", "uint32")

_ID = re.compile(r"[a-z0-9][a-z0-9-]*\Z")
_FAMILY = re.compile(r"[a-z][a-z0-9_]*\Z")
# quantity[_unit]: lower case, with at most one final unit part that may carry
# capitals because SI units do (_V, _C, _kPa, _LEL).
_NAME = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*(?:_[a-z]*[A-Z][A-Za-z0-9]*)?\Z")
# sections A..J of the service manual; a bare letter is a whole section (C: cards)
_REF = re.compile(r"[A-J][0-9]{0,2}\Z")


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
    trigger: dict
    cleared_by: str
    ref: str
    en: Text
    zh: Text

    def text(self, lang: str) -> Text:
        # "zh", "zh-CN", "zh_Hans" all mean the Chinese text; anything else English.
        return self.zh if str(lang).lower().startswith("zh") else self.en


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


class ModelError(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# --------------------------------------------------------------------------- checking

def _q(v: Any) -> str:
    return f'"{v}"' if isinstance(v, str) else repr(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_text(v: Any) -> bool:
    return isinstance(v, str) and v.strip() != ""


class _Checker:
    def __init__(self, path: Path):
        self.path = path
        self.problems: list[str] = []
        # every register name the file declares, and the registers that
        # checked out: a trigger naming a register with problems of its own
        # is not reported again as naming no register
        self.names: set[str] = set()
        self.fields: dict[str, Field] = {}

    def add(self, key: str, what: str) -> None:
        self.problems.append(f"{self.path.name}: {key}: {what}")

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
        if not _is_text(v):
            self.add(f"{key}.{name}", f"{_q(v)} is not a non-empty string")
            return None
        return v

    def boolean(self, key: str, table: dict, name: str) -> bool | None:
        if name not in table:
            self.add(f"{key}.{name}", "missing")
            return None
        v = table[name]
        if not isinstance(v, bool):
            self.add(f"{key}.{name}", f"{_q(v)} is not true or false")
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
            self.add(f"{key}.{name}", f"{_q(v)} is not {what} ({', '.join(allowed)})")
            return None
        return v

    # ---- file

    def check(self, data: dict) -> Model | None:
        self.unknown("", data, ("model", "register", "fault"))
        head = self.model_table(data.get("model"))
        at = len(self.problems)
        fields = self.registers(data.get("register"), head)
        if head is not None:
            # identify names a register, so it is checked after them, but
            # its problems are listed with the [model] table's, in file order
            after = self.problems[at:]
            del self.problems[at:]
            self.identify(head)
            self.problems += after
        faults = self.faults(data.get("fault"))
        if self.problems or head is None or fields is None or faults is None:
            return None
        return Model(id=head["id"], name_en=head["name_en"], name_zh=head["name_zh"],
                     family=head["family"], fields=tuple(fields.values()), faults=tuple(faults),
                     max_registers_per_read=head["max_registers_per_read"],
                     identify=head.get("identify"))

    def model_table(self, t: Any) -> dict | None:
        if t is None:
            self.add("model", "missing ([model] table)")
            return None
        if not isinstance(t, dict):
            self.add("model", "must be a table ([model])")
            return None
        self.unknown("model", t, _MODEL_KEYS)
        out: dict = {}
        mid = self.string("model", t, "id")
        if mid is not None:
            if mid != self.path.stem:
                self.add("model.id", f"{_q(mid)} is not the file name {_q(self.path.stem)}")
            elif not _ID.match(mid):
                self.add("model.id", f"{_q(mid)} is not lower-case letters, digits and '-'")
        out["id"] = mid
        out["name_en"] = self.string("model", t, "name_en")
        out["name_zh"] = self.string("model", t, "name_zh")
        fam = self.string("model", t, "family")
        if fam is not None and not _FAMILY.match(fam):
            self.add("model.family", f"{_q(fam)} is not a lower-case word (a-z, 0-9, _)")
        out["family"] = fam
        mx = t.get("max_registers_per_read", 125)
        if not _is_int(mx) or not 1 <= mx <= 125:
            self.add("model.max_registers_per_read", f"{_q(mx)} is not a whole number 1..125")
            mx = 125
        out["max_registers_per_read"] = mx
        if "identify" in t:
            out["identify"] = t["identify"]
        return out

    def identify(self, head: dict) -> None:
        if "identify" not in head:
            return
        ident = head["identify"]
        key = "model.identify"
        if not isinstance(ident, dict):
            self.add(key, "must be a table { field = ..., equals = ... }")
            head.pop("identify")
            return
        self.unknown(key, ident, ("field", "equals"))
        name = ident.get("field")
        if name is None:
            self.add(f"{key}.field", "missing")
        elif name not in self.names:
            self.add(f"{key}.field", f"{_q(name)} is not a register of this model")
        if "equals" not in ident:
            self.add(f"{key}.equals", "missing")
        elif not _is_int(ident["equals"]):
            self.add(f"{key}.equals", f"{_q(ident['equals'])} is not a whole number")

    # ---- registers

    def registers(self, regs: Any, head: dict | None) -> dict[str, Field] | None:
        if regs is None:
            self.add("register", "missing (at least one [[register]])")
            return None
        if not isinstance(regs, list) or not all(isinstance(r, dict) for r in regs):
            self.add("register", "must be an array of tables ([[register]])")
            return None
        limit = head["max_registers_per_read"] if head else 125
        fields = self.fields
        keys: dict[str, str] = {}
        spans: list[tuple[str, Field, int]] = []
        ok = True
        for i, r in enumerate(regs):
            key = f"register[{i}]"
            f = self.register(key, r)
            name = r.get("name")
            if isinstance(name, str) and name:
                if name in keys:
                    self.add(f"{key}.name", f"{_q(name)} is already {keys[name]}")
                    ok = False
                    continue
                keys[name] = key
                self.names.add(name)
            if f is None:
                ok = False
                continue
            n = register_count(f)
            if f.address + n > 65536:
                self.add(f"{key}.address", f"{f.address}+{n} registers runs past address 65535")
            if n > limit:
                self.add(key, f"spans {n} registers, more than max_registers_per_read ({limit})")
            fields[f.name] = f
            spans.append((key, f, n))
        self.overlaps(spans)
        return fields if ok else None

    def register(self, key: str, r: dict) -> Field | None:
        before = len(self.problems)
        self.unknown(key, r, _FIELD_ATTRS)
        kw: dict[str, Any] = {}
        name = self.string(key, r, "name")
        if name is not None and not _NAME.match(name):
            self.add(f"{key}.name", f"{_q(name)} is not quantity[_unit] "
                     "(lower case, digits and _, e.g. flow_m3h, battery_V)")
        kw["name"] = name
        if "address" not in r:
            self.add(f"{key}.address", "missing")
        elif not _is_int(r["address"]) or not 0 <= r["address"] <= 65535:
            self.add(f"{key}.address", f"{_q(r['address'])} is not a whole number 0..65535")
        else:
            kw["address"] = r["address"]
        kw["function"] = self.choice(key, r, "function", FUNCTIONS, "a function", "holding")
        typ = self.choice(key, r, "type", tuple(TYPES), "a type", "uint16")
        kw["type"] = typ
        kw["order"] = self.choice(key, r, "order", ORDERS, "an order", "ABCD")
        for num in ("scale", "offset", "min", "max"):
            if num in r:
                if not _is_num(r[num]):
                    self.add(f"{key}.{num}", f"{_q(r[num])} is not a number")
                else:
                    kw[num] = float(r[num])
        if kw.get("scale") == 0.0:
            self.add(f"{key}.scale", "0 would make every value 0")
        if "min" in kw and "max" in kw and kw["min"] > kw["max"]:
            self.add(f"{key}.min", f"{kw['min']} is above max {kw['max']}")
        for s in ("unit", "description"):
            if s in r:
                if not isinstance(r[s], str):
                    self.add(f"{key}.{s}", f"{_q(r[s])} is not a string")
                else:
                    kw[s] = r[s]
        if "publish" in r:
            if not isinstance(r["publish"], bool):
                self.add(f"{key}.publish", f"{_q(r['publish'])} is not true or false")
            else:
                kw["publish"] = r["publish"]
        # count: string and bcd only, and required there, so a map never
        # depends on a silent default width.
        if typ in ("string", "bcd"):
            if "count" not in r:
                self.add(f"{key}.count", f"missing (type {typ} needs the number of registers)")
            elif not _is_int(r["count"]) or r["count"] < 1:
                self.add(f"{key}.count", f"{_q(r['count'])} is not a whole number >= 1")
            else:
                kw["count"] = r["count"]
        elif "count" in r:
            self.add(f"{key}.count", f"only for types string and bcd, not {typ}")
        if typ == "bit":
            if "bit" not in r:
                self.add(f"{key}.bit", "missing (type bit needs bit 0..15)")
            elif not _is_int(r["bit"]) or not 0 <= r["bit"] <= 15:
                self.add(f"{key}.bit", f"{_q(r['bit'])} is not a bit number 0..15")
            else:
                kw["bit"] = r["bit"]
        elif "bit" in r:
            self.add(f"{key}.bit", f"only for type bit, not {typ}")
        for part, allowed in (("int_type", _INTFRAC_INT), ("frac_type", _INTFRAC_FRAC)):
            if part in r:
                if typ != "intfrac":
                    self.add(f"{key}.{part}", f"only for type intfrac, not {typ}")
                elif r[part] not in allowed:
                    self.add(f"{key}.{part}", f"{_q(r[part])} is not one of {', '.join(allowed)}")
                else:
                    kw[part] = r[part]
        if "frac_scale" in r:
            if typ != "intfrac":
                self.add(f"{key}.frac_scale", f"only for type intfrac, not {typ}")
            elif not _is_num(r["frac_scale"]) or r["frac_scale"] <= 0:
                self.add(f"{key}.frac_scale", f"{_q(r['frac_scale'])} is not a number > 0")
            else:
                kw["frac_scale"] = float(r["frac_scale"])
        if len(self.problems) != before:
            return None
        return Field(**kw)

    def overlaps(self, spans: list[tuple[str, Field, int]]) -> None:
        # A bit field reads a bit of a word another field may also publish
        # whole, so only overlaps between two non-bit fields are mistakes.
        for j, (kj, fj, nj) in enumerate(spans):
            for ki, fi, ni in spans[:j]:
                if fi.function != fj.function or "bit" in (fi.type, fj.type):
                    continue
                lo = max(fi.address, fj.address)
                hi = min(fi.address + ni, fj.address + nj) - 1
                if lo <= hi:
                    where = f"address {lo}" if lo == hi else f"addresses {lo}..{hi}"
                    self.add(f"{kj}.address", f"{_q(fj.name)} overlaps {ki} "
                             f"({_q(fi.name)}) at {fj.function} {where}")

    # ---- faults

    def faults(self, faults: Any) -> list[Fault] | None:
        if faults is None:
            return []
        if not isinstance(faults, list) or not all(isinstance(f, dict) for f in faults):
            self.add("fault", "must be an array of tables ([[fault]])")
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
                    self.add(f"{key}.code", f"{_q(code)} is already {seen[code]}")
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
        self.unknown(key, t, _FAULT_KEYS)
        code = self.string(key, t, "code")
        severity = self.choice(key, t, "severity", SEVERITIES, "a severity")
        valve = self.boolean(key, t, "valve_closed")
        visit = self.boolean(key, t, "site_visit")
        debounce = t.get("debounce", 1)
        if not _is_int(debounce) or debounce < 1:
            self.add(f"{key}.debounce", f"{_q(debounce)} is not a whole number >= 1")
        kind = self.choice(key, t, "kind", KINDS, "a kind", "fault")
        trigger = self.trigger(f"{key}.trigger", t.get("trigger"))
        cleared = self.choice(key, t, "cleared_by", CLEARED_BY, "a cleared_by word")
        ref = self.string(key, t, "ref")
        if ref is not None and not _REF.match(ref):
            self.add(f"{key}.ref", f"{_q(ref)} is not a service-manual row (e.g. A8, D1, C)")
        en = self.text(f"{key}.en", t.get("en"))
        zh = self.text(f"{key}.zh", t.get("zh"))
        if (len(self.problems) != before or code is None or severity is None or valve is None
                or visit is None or kind is None or trigger is None or cleared is None
                or ref is None or en is None or zh is None):
            return None
        return Fault(code=code, severity=severity, valve_closed=valve, site_visit=visit,
                     debounce=debounce, kind=kind, trigger=trigger, cleared_by=cleared,
                     ref=ref, en=en, zh=zh)

    def text(self, key: str, t: Any) -> Text | None:
        if t is None:
            self.add(key, "missing")
            return None
        if not isinstance(t, dict):
            self.add(key, "must be a table (meaning, causes, remedy, cleared_by)")
            return None
        self.unknown(key, t, _TEXT_KEYS)
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
                    if not _is_text(item):
                        self.add(f"{key}.{name}[{j}]", f"{_q(item)} is not a non-empty string")
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
            if not _is_int(b) or not 0 <= b <= 15:
                self.add(f"{key}.bit", f"{_q(b)} is not a bit number 0..15")
            # the interpreter masks the raw word: a scaled or wider value would
            # not be the device's bits
            if f is not None and (f.type != "uint16" or f.scale != 1.0 or f.offset != 0.0):
                self.add(f"{key}.field", f"{_q(f.name)} is not a raw uint16 word "
                         "(type uint16, no scale or offset)")
        elif "equals" in t:
            self.unknown(key, t, ("field", "equals"))
            f = self.trigger_field(key, t, "field")
            v = t["equals"]
            if f is not None:
                if f.type == "string":
                    if not isinstance(v, str):
                        self.add(f"{key}.equals", f"{_q(v)} is not a string ({_q(f.name)} is a string)")
                elif f.type == "bit":
                    if v not in (True, False, 0, 1) or isinstance(v, float):
                        self.add(f"{key}.equals", f"{_q(v)} is not true/false ({_q(f.name)} is a bit)")
                elif not _is_num(v):
                    self.add(f"{key}.equals", f"{_q(v)} is not a number")
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
            self.add(f"{key}.{name}", f"{_q(v)} is not a register of this model")
            return None
        f = self.fields.get(v)
        if f is None:            # a register with problems of its own, already listed
            return None
        # rules compare numbers; a string or bit field makes them answer
        # "cannot tell" for ever, which is a silent dead fault
        if numeric and f.type in ("string", "bit"):
            self.add(f"{key}.{name}", f"{_q(v)} is a {f.type} field; this rule needs a number")
        return f

    def rule_trigger(self, key: str, t: dict) -> None:
        rule = t["rule"]
        if rule not in RULE_KEYS:
            self.add(f"{key}.rule", f"{_q(rule)} is not a rule ({', '.join(RULE_KEYS)})")
            return
        required, optional = RULE_KEYS[rule]
        self.unknown(key, t, ("rule", *required, *optional))
        for k in required:
            if k not in t:
                self.add(f"{key}.{k}", f"missing (rule {rule} needs {', '.join(required)})")
        for k in _FIELD_KEYS:
            if k in t and (k in required or k in optional):
                numeric = not (k == "when_field" and "equals" in t)
                self.trigger_field(key, t, k, numeric=numeric)
        for k in ("default", "below"):
            if k in t and not _is_num(t[k]):
                self.add(f"{key}.{k}", f"{_q(t[k])} is not a number")
        if "intervals" in t and (not _is_num(t["intervals"]) or t["intervals"] <= 0):
            self.add(f"{key}.intervals", f"{_q(t['intervals'])} is not a number > 0")
        if "param" in t and (not isinstance(t["param"], str) or not _NAME.match(t["param"])):
            self.add(f"{key}.param", f"{_q(t['param'])} is not a param name (quantity[_unit])")
        gates = [k for k in ("equals", "below") if k in t]
        if rule == "counting_while" and len(gates) != 1:
            self.add(key, "rule counting_while needs exactly one of equals, below")
        elif rule == "unchanged_days" and (("when_field" in t) != (len(gates) == 1) or len(gates) > 1):
            self.add(key, "rule unchanged_days takes when_field with exactly one of "
                     "equals, below, or none of the three")
        if "equals" in t and not _is_num(t["equals"]):
            self.add(f"{key}.equals", f"{_q(t['equals'])} is not a number")


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


# --------------------------------------------------------------------------- loading

def _check_file(path: Path) -> tuple[Model | None, list[str]]:
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as e:
        return None, [f"{path.name}: (file): not valid TOML: {e}"]
    except OSError as e:
        return None, [f"{path.name}: (file): cannot read: {e.strerror or e}"]
    checker = _Checker(path)
    model = checker.check(data)
    return model, checker.problems


def load_model(path) -> Model:
    """One model file, fully checked; ModelError lists every problem."""
    model, problems = _check_file(Path(path))
    if problems or model is None:
        raise ModelError(problems or [f"{Path(path).name}: (file): not a model"])
    return model


def default_directory() -> Path:
    """The packaged model files, wherever the package is installed (not the CWD)."""
    return Path(str(resources.files(__name__)))


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.toml") if p.is_file())


def _check_dir(directory: Path) -> tuple[dict[str, Model], list[str]]:
    if not directory.is_dir():
        return {}, [f"{directory}: (directory): not found"]
    models: dict[str, Model] = {}
    problems: list[str] = []
    for p in _files(directory):
        model, found = _check_file(p)
        problems += found
        if model is not None and not found:
            models[model.id] = model
    return models, problems


# directory -> (signature of its files, models). The signature (names, sizes,
# mtimes) makes a site's edited file count without a restart while a repeat
# call from the daemon or the CLI costs one stat per file.
_cache: dict[Path, tuple[tuple | None, dict[str, Model]]] = {}


def _signature(directory: Path) -> tuple:
    out = []
    for p in _files(directory):
        st = p.stat()
        out.append((p.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def load_models(directory=None) -> dict[str, Model]:
    """Every model file in ``directory`` (default: the packaged models), by id.

    A site adds models by keeping its own directory of model files and
    merging: ``{**load_models(), **load_models(site_dir)}``. Raises
    ModelError listing every problem in every file; results are cached per
    directory until one of its files changes.
    """
    d = Path(directory) if directory is not None else default_directory()
    d = d.resolve()
    sig = _signature(d) if d.is_dir() else None
    hit = _cache.get(d)
    if hit is not None and sig is not None and hit[0] == sig:
        return dict(hit[1])
    models, problems = _check_dir(d)
    if problems:
        raise ModelError(problems)
    _cache[d] = (sig, models)
    return dict(models)


def validate_all(directory=None) -> list[str]:
    """Every problem in every model file of ``directory``; empty when all are good."""
    d = Path(directory) if directory is not None else default_directory()
    return _check_dir(d)[1]


def clear_cache() -> None:
    _cache.clear()
