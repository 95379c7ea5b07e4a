"""[model] and [[register]]: the model's identity and its register map."""
from __future__ import annotations

import dataclasses
import re
from typing import Any

from protocols.modbus.types import FUNCTIONS, INTFRAC_FRAC, INTFRAC_INT, ORDERS, TYPES, Field, register_count

from .check_base import CheckBase, is_int, is_num, q

MODEL_KEYS = ("id", "name_en", "name_zh", "family", "max_registers_per_read", "identify")
_FIELD_ATTRS = tuple(f.name for f in dataclasses.fields(Field))
_ID = re.compile(r"[a-z0-9][a-z0-9-]*\Z")
_FAMILY = re.compile(r"[a-z][a-z0-9_]*\Z")


class RegisterChecks(CheckBase):
    """Needs ``self.stem`` (the file name without .toml: the id it must have),
    ``self.names`` (every register name declared) and ``self.fields`` (the
    registers that checked out), set by the model checker."""

    def model_table(self, t: Any) -> dict | None:
        if t is None:
            self.add("model", "missing ([model] table)")
            return None
        if not isinstance(t, dict):
            self.add("model", "must be a table ([model])")
            return None
        self.unknown("model", t, MODEL_KEYS)
        out: dict = {}
        mid = self.string("model", t, "id")
        if mid is not None:
            if mid != self.stem:
                self.add("model.id", f"{q(mid)} is not the file name {q(self.stem)}")
            elif not _ID.match(mid):
                self.add("model.id", f"{q(mid)} is not lower-case letters, digits and '-'")
        out["id"] = mid
        out["name_en"] = self.string("model", t, "name_en")
        out["name_zh"] = self.string("model", t, "name_zh")
        fam = self.string("model", t, "family")
        if fam is not None and not _FAMILY.match(fam):
            self.add("model.family", f"{q(fam)} is not a lower-case word (a-z, 0-9, _)")
        out["family"] = fam
        mx = t.get("max_registers_per_read", 125)
        if not is_int(mx) or not 1 <= mx <= 125:
            self.add("model.max_registers_per_read", f"{q(mx)} is not a whole number 1..125")
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
            self.add(f"{key}.field", f"{q(name)} is not a register of this model")
        if "equals" not in ident:
            self.add(f"{key}.equals", "missing")
        elif not is_int(ident["equals"]):
            self.add(f"{key}.equals", f"{q(ident['equals'])} is not a whole number")

    # ---- registers

    def registers(self, regs: Any, head: dict | None) -> dict[str, Field] | None:
        if regs is None:
            self.add("register", "missing (at least one [[register]])")
            return None
        if self.array("register", regs) is None:
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
            if not self.first_of_name(key, r, keys):
                ok = False
                continue
            if isinstance(name, str) and name:
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
        name = self.quantity_name(key, r, "flow_m3h, battery_V")
        kw["name"] = name
        if "address" not in r:
            self.add(f"{key}.address", "missing")
        elif not is_int(r["address"]) or not 0 <= r["address"] <= 65535:
            self.add(f"{key}.address", f"{q(r['address'])} is not a whole number 0..65535")
        else:
            kw["address"] = r["address"]
        kw["function"] = self.choice(key, r, "function", FUNCTIONS, "a function", "holding")
        typ = self.choice(key, r, "type", tuple(TYPES), "a type", "uint16")
        kw["type"] = typ
        kw["order"] = self.choice(key, r, "order", ORDERS, "an order", "ABCD")
        for num in ("scale", "offset", "min", "max"):
            if num in r:
                if not is_num(r[num]):
                    self.add(f"{key}.{num}", f"{q(r[num])} is not a number")
                else:
                    kw[num] = float(r[num])
        if kw.get("scale") == 0.0:
            self.add(f"{key}.scale", "0 would make every value 0")
        if "min" in kw and "max" in kw and kw["min"] > kw["max"]:
            self.add(f"{key}.min", f"{kw['min']} is above max {kw['max']}")
        for s in ("unit", "description"):
            if s in r:
                if not isinstance(r[s], str):
                    self.add(f"{key}.{s}", f"{q(r[s])} is not a string")
                else:
                    kw[s] = r[s]
        if "publish" in r:
            if not isinstance(r["publish"], bool):
                self.add(f"{key}.publish", f"{q(r['publish'])} is not true or false")
            else:
                kw["publish"] = r["publish"]
        # count: string and bcd only, and required there, so a map never
        # depends on a silent default width.
        if typ in ("string", "bcd"):
            if "count" not in r:
                self.add(f"{key}.count", f"missing (type {typ} needs the number of registers)")
            elif not is_int(r["count"]) or r["count"] < 1:
                self.add(f"{key}.count", f"{q(r['count'])} is not a whole number >= 1")
            else:
                kw["count"] = r["count"]
        elif "count" in r:
            self.add(f"{key}.count", f"only for types string and bcd, not {typ}")
        if typ == "bit":
            if "bit" not in r:
                self.add(f"{key}.bit", "missing (type bit needs bit 0..15)")
            elif not is_int(r["bit"]) or not 0 <= r["bit"] <= 15:
                self.add(f"{key}.bit", f"{q(r['bit'])} is not a bit number 0..15")
            else:
                kw["bit"] = r["bit"]
        elif "bit" in r:
            self.add(f"{key}.bit", f"only for type bit, not {typ}")
        for part, allowed in (("int_type", INTFRAC_INT), ("frac_type", INTFRAC_FRAC)):
            if part in r:
                if typ != "intfrac":
                    self.add(f"{key}.{part}", f"only for type intfrac, not {typ}")
                elif r[part] not in allowed:
                    self.add(f"{key}.{part}", f"{q(r[part])} is not one of {', '.join(allowed)}")
                else:
                    kw[part] = r[part]
        if "frac_scale" in r:
            if typ != "intfrac":
                self.add(f"{key}.frac_scale", f"only for type intfrac, not {typ}")
            elif not is_num(r["frac_scale"]) or r["frac_scale"] <= 0:
                self.add(f"{key}.frac_scale", f"{q(r['frac_scale'])} is not a number > 0")
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
                    self.add(f"{kj}.address", f"{q(fj.name)} overlaps {ki} "
                             f"({q(fi.name)}) at {fj.function} {where}")
