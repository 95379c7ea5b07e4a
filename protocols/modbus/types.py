"""Modbus data types and byte/word orders: decode and encode (pure).

Longer than 400 lines because every type is decoded and encoded here, side by
side: the two directions must be read together to stay exact inverses.
"""
from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")

# Register width per type; None means the width comes from the field (count).
TYPES: dict[str, int | None] = {
    "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "int64": 4, "uint64": 4,
    "float32": 2, "float64": 4, "bcd": None, "intfrac": None, "string": None, "bit": 1,
}

FUNCTIONS = ("holding", "input")


class DecodeError(ValueError):
    """Registers that cannot be a value of the field (bad BCD, NaN, out of range)."""


@dataclass(frozen=True)
class Field:
    name: str
    address: int
    function: str = "holding"
    type: str = "uint16"
    order: str = "ABCD"
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    count: int | None = None
    bit: int | None = None
    int_type: str = "uint32"
    frac_type: str = "uint16"
    frac_scale: float = 0.001
    min: float | None = None
    max: float | None = None
    publish: bool = True
    description: str = ""


class RangeError(DecodeError):
    """A decodable value outside the field's min/max: the device reports something impossible."""


# Order -> (endianness used to pack the registers into bytes, endianness used
# to read the value back from those bytes). Packing the words little-endian
# reverses both the byte order inside each word and, read back little-endian,
# the word order, so every order is one pack plus one unpack with no Python-level
# shuffling. For one register CDAB collapses to ABCD and DCBA to BADC, as the
# contract requires.
_ENDIAN = {"ABCD": (">", ">"), "CDAB": ("<", "<"), "BADC": ("<", ">"), "DCBA": (">", "<")}

_INT_CODES = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q"}
_FLOAT_CODES = {"float32": "f", "float64": "d"}
# Strings keep their word order whatever the order says: only the byte order
# inside each word applies.
_STRING_ENDIAN = {"ABCD": ">", "CDAB": ">", "BADC": "<", "DCBA": "<"}
_WIDTH: dict[str, int] = {t: n for t, n in TYPES.items() if n is not None}
# intfrac: the types its integer and fraction parts may have
INTFRAC_INT = ("uint16", "uint32", "int32")
INTFRAC_FRAC = ("uint16", "uint32")

_STRUCTS: dict[str, struct.Struct] = {}


def _struct(fmt: str) -> struct.Struct:
    s = _STRUCTS.get(fmt)
    if s is None:
        s = _STRUCTS[fmt] = struct.Struct(fmt)
    return s


class _Codec:
    """Precomputed structs for one fixed-width (type, order)."""

    __slots__ = ("n", "is_float", "pack_regs", "unpack_regs", "pack_value", "unpack_value", "lo", "hi")

    def __init__(self, type_: str, order: str) -> None:
        code = _INT_CODES.get(type_) or _FLOAT_CODES[type_]
        n = _WIDTH[type_]
        reg_e, val_e = _ENDIAN[order]
        self.n = n
        self.is_float = type_ in _FLOAT_CODES
        regs = _struct(f"{reg_e}{n}H")
        val = _struct(val_e + code)
        self.pack_regs = regs.pack
        self.unpack_regs = regs.unpack
        self.pack_value = val.pack
        self.unpack_value = val.unpack
        bits = 16 * n
        if code.isupper():
            self.lo, self.hi = 0, (1 << bits) - 1
        else:
            self.lo, self.hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1


_CODECS: dict[tuple[str, str], _Codec] = {
    (t, o): _Codec(t, o) for t in (*_INT_CODES, *_FLOAT_CODES) for o in ORDERS
}
_BIT_CODECS = {o: _CODECS[("uint16", o)] for o in ORDERS}

# scale -> integer divisor when scale is 1/d (0.1, 0.01, 0.001 ...): dividing by
# d gives the correctly rounded decimal (365 / 100 == 3.65) where multiplying
# gives 3.6500000000000004, which would then be published as such.
_DIVISORS: dict[float, int | None] = {}


def _divisor(scale: float) -> int | None:
    try:
        return _DIVISORS[scale]
    except KeyError:
        pass
    d = None
    if 0 < scale < 1:
        inv = 1.0 / scale
        r = round(inv)
        if r >= 2 and abs(inv - r) <= 1e-9 * r:
            d = r
    if len(_DIVISORS) < 1024:  # scales come from model files: a handful of values
        _DIVISORS[scale] = d
    return d


def _scaled(raw: float, scale: float, offset: float) -> float:
    d = _divisor(scale)
    v = raw / d if d is not None else raw * scale
    # float() so an integer scale or offset from a model file still yields a float
    return float(v + offset if offset else v)


def _unscaled(value: float, scale: float, offset: float) -> float:
    v = value - offset if offset else value
    d = _divisor(scale)
    return v * d if d is not None else v / scale


def _check_range(field: Field, v: float) -> None:
    lo = field.min
    hi = field.max
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise RangeError(f"{field.name}: {v!r} out of range [{lo}, {hi}]")


def _bad_regs(field: Field, regs: Sequence[int], n: int) -> DecodeError:
    """Why pack() refused the registers: wrong count or a value that is not a register."""
    try:
        got = len(regs)
    except TypeError:
        return DecodeError(f"{field.name}: registers must be a sequence, got {type(regs).__name__}")
    if got != n:
        return DecodeError(f"{field.name}: {field.type} needs {n} registers, got {got}")
    return DecodeError(f"{field.name}: registers must be integers 0..65535, got {list(regs)!r}")


def _field_error(field: Field, why: str) -> ValueError:
    # A broken field definition is a model bug, not a bad reading: ValueError,
    # deliberately not DecodeError, so it is not mistaken for device data.
    return ValueError(f"{field.name}: {why}")


def register_count(field: Field) -> int:
    t = field.type
    n = _WIDTH.get(t, 0)
    if n:
        return n
    if t == "bcd":
        c = 1 if field.count is None else field.count
    elif t == "string":
        if field.count is None:
            raise _field_error(field, "type string needs count")
        c = field.count
    elif t == "intfrac":
        if field.int_type not in INTFRAC_INT:
            raise _field_error(field, f"int_type must be one of {INTFRAC_INT}, got {field.int_type!r}")
        if field.frac_type not in INTFRAC_FRAC:
            raise _field_error(field, f"frac_type must be one of {INTFRAC_FRAC}, got {field.frac_type!r}")
        return _WIDTH[field.int_type] + _WIDTH[field.frac_type]
    else:
        raise _field_error(field, f"unknown type {t!r}")
    if type(c) is not int or c < 1:
        raise _field_error(field, f"count must be a positive integer, got {c!r}")
    return c


def _endian(field: Field) -> tuple[str, str]:
    e = _ENDIAN.get(field.order)
    if e is None:
        raise _field_error(field, f"unknown order {field.order!r}")
    return e


def decode(field: Field, regs: Sequence[int]) -> int | float | str | bool:
    """Registers -> value of the field. See docs/dev/interfaces.md."""
    codec = _CODECS.get((field.type, field.order))
    if codec is not None:
        try:
            raw = codec.unpack_value(codec.pack_regs(*regs))[0]
        except (struct.error, TypeError):
            raise _bad_regs(field, regs, codec.n) from None
        scale = field.scale
        offset = field.offset
        if codec.is_float:
            if scale != 1 or offset:
                raw = _scaled(raw, scale, offset)
            if not math.isfinite(raw):
                raise DecodeError(f"{field.name}: {raw} is not a number")
        elif scale != 1 or offset:
            raw = _scaled(raw, scale, offset)
            if not math.isfinite(raw):
                raise DecodeError(f"{field.name}: scaled value overflows")
        if field.min is not None or field.max is not None:
            _check_range(field, raw)
        return raw
    return _decode_other(field, regs)


def _decode_other(field: Field, regs: Sequence[int]) -> int | float | str | bool:
    t = field.type
    if t == "bit":
        codec = _BIT_CODECS.get(field.order)
        if codec is None:
            raise _field_error(field, f"unknown order {field.order!r}")
        b = field.bit
        if type(b) is not int or not 0 <= b <= 15:
            raise _field_error(field, f"type bit needs bit 0..15, got {b!r}")
        try:
            word = codec.unpack_value(codec.pack_regs(*regs))[0]
        except (struct.error, TypeError):
            raise _bad_regs(field, regs, 1) from None
        return bool((word >> b) & 1)
    n = register_count(field)  # validates the field for the remaining types
    reg_e, val_e = _endian(field)
    if t == "string":
        try:
            data = _struct(f"{_STRING_ENDIAN[field.order]}{n}H").pack(*regs)
        except (struct.error, TypeError):
            raise _bad_regs(field, regs, n) from None
        try:
            s = data.decode("ascii").rstrip("\x00 ")
        except UnicodeDecodeError:
            raise DecodeError(f"{field.name}: not ASCII: {data!r}") from None
        if not s.isprintable():
            raise DecodeError(f"{field.name}: control characters in string: {s!r}")
        return s
    if t == "bcd":
        try:
            data = _struct(f"{reg_e}{n}H").pack(*regs)
        except (struct.error, TypeError):
            raise _bad_regs(field, regs, n) from None
        if val_e == "<":
            data = data[::-1]
        digits = data.hex()
        if not digits.isdigit():
            raise DecodeError(f"{field.name}: not BCD: 0x{digits}")
        v: int | float = int(digits)
    else:  # intfrac
        ni = _WIDTH[field.int_type]
        ic = _CODECS[(field.int_type, field.order)]
        fc = _CODECS[(field.frac_type, field.order)]
        try:
            ip = ic.unpack_value(ic.pack_regs(*regs[:ni]))[0]
            fp = fc.unpack_value(fc.pack_regs(*regs[ni:]))[0]
        except (struct.error, TypeError):
            raise _bad_regs(field, regs, n) from None
        fs = field.frac_scale
        d = _divisor(fs)
        if d is not None:
            if fp >= d:
                raise DecodeError(f"{field.name}: fraction {fp} >= {d}")
            # one correctly rounded division: 123456789 / 1000 == 123456.789 exactly as written
            v = (ip * d + fp) / d
        else:
            frac = fp * fs
            if frac >= 1:
                raise DecodeError(f"{field.name}: fraction {fp} x {fs} >= 1")
            v = ip + frac
    scale = field.scale
    offset = field.offset
    if scale != 1 or offset:
        v = _scaled(v, scale, offset)
        if not math.isfinite(v):
            raise DecodeError(f"{field.name}: scaled value overflows")
    if field.min is not None or field.max is not None:
        _check_range(field, v)
    return v


def _to_raw_int(field: Field, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{field.name}: {field.type} needs a number, got {value!r}")
    scale = field.scale
    offset = field.offset
    if scale != 1 or offset:
        x = _unscaled(value, scale, offset)
    else:
        x = value
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ValueError(f"{field.name}: {value!r} has no raw value")
        x = round(x)
    if not lo <= x <= hi:
        raise ValueError(f"{field.name}: {value!r} does not fit {field.type} (raw {x})")
    return x


def encode(field: Field, value: object) -> list[int]:
    """Value -> registers, the inverse of decode(), for simulators and tests.

    Does not enforce min/max (a simulator must be able to produce impossible
    values); NaN and inf are accepted for float types for the same reason.
    """
    t = field.type
    codec = _CODECS.get((t, field.order))
    if codec is not None:
        if codec.is_float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{field.name}: {t} needs a number, got {value!r}")
            x = float(value)
            if field.scale != 1 or field.offset:
                x = _unscaled(x, field.scale, field.offset)
            try:
                data = codec.pack_value(x)
            except (struct.error, OverflowError):
                raise ValueError(f"{field.name}: {value!r} does not fit {t}") from None
        else:
            data = codec.pack_value(_to_raw_int(field, value, codec.lo, codec.hi))
        return list(codec.unpack_regs(data))
    if t == "bit":
        b = field.bit
        if type(b) is not int or not 0 <= b <= 15:
            raise _field_error(field, f"type bit needs bit 0..15, got {b!r}")
        codec = _BIT_CODECS.get(field.order)
        if codec is None:
            raise _field_error(field, f"unknown order {field.order!r}")
        if not isinstance(value, (bool, int)) or value not in (0, 1):
            raise ValueError(f"{field.name}: bit needs a bool, got {value!r}")
        return list(codec.unpack_regs(codec.pack_value(int(value) << b)))
    n = register_count(field)
    reg_e, val_e = _endian(field)
    regs_struct = _struct(f"{reg_e}{n}H")
    if t == "string":
        if not isinstance(value, str):
            raise ValueError(f"{field.name}: string needs a str, got {value!r}")
        if not (value.isascii() and value.isprintable()):
            raise ValueError(f"{field.name}: {value!r} is not printable ASCII")
        if value != value.rstrip(" "):
            raise ValueError(f"{field.name}: trailing spaces would not survive decoding: {value!r}")
        if len(value) > 2 * n:
            raise ValueError(f"{field.name}: {value!r} longer than {2 * n} characters")
        data = value.encode("ascii").ljust(2 * n, b"\x00")
        return list(_struct(f"{_STRING_ENDIAN[field.order]}{n}H").unpack(data))
    if t == "bcd":
        x = _to_raw_int(field, value, 0, 10 ** (4 * n) - 1)
        data = bytes.fromhex(f"{x:0{4 * n}d}")
        if val_e == "<":
            data = data[::-1]
        return list(regs_struct.unpack(data))
    # intfrac
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{field.name}: intfrac needs a finite number, got {value!r}")
    ic = _CODECS[(field.int_type, field.order)]
    fc = _CODECS[(field.frac_type, field.order)]
    x = value
    if field.scale != 1 or field.offset:
        x = _unscaled(x, field.scale, field.offset)
    fs = field.frac_scale
    d = _divisor(fs)
    if d is not None:
        # work in whole fraction units so 123456.789 gives 789, not 788.99...
        units = round(x * d)
        ip, fp = divmod(units, d)
    else:
        ip = math.floor(x)
        fp = round((x - ip) / fs)
        if fp * fs >= 1:
            ip, fp = ip + 1, 0
    if not ic.lo <= ip <= ic.hi or not fc.lo <= fp <= fc.hi:
        raise ValueError(f"{field.name}: {value!r} does not fit intfrac {field.int_type}+{field.frac_type}")
    return list(ic.unpack_regs(ic.pack_value(ip))) + list(fc.unpack_regs(fc.pack_value(fp)))


_ALL_FIXED = (
    (("int16", "uint16"), ("ABCD", "BADC")),
    (("int32", "uint32", "float32"), ORDERS),
    (("int64", "uint64", "float64"), ORDERS),
)


def decode_all(regs: Sequence[int]) -> list[dict]:
    """Every type x order that fits in regs (from regs[0]), for the `edgegw read` screen."""
    regs = list(regs)
    out: list[dict] = []

    def one(f: Field, span: Sequence[int]) -> None:
        try:
            out.append({"type": f.type, "order": f.order, "value": decode(f, span)})
        except DecodeError as e:
            out.append({"type": f.type, "order": f.order, "error": str(e)})

    for types_, orders in _ALL_FIXED:
        for t in types_:
            n = _WIDTH[t]
            if len(regs) < n:
                continue
            for o in orders:
                one(Field(name=t, address=0, type=t, order=o), regs[:n])
    if regs:
        n = len(regs)
        # Word order is meaningless for one register (bcd) and for strings at
        # all, so only the orders that can give a different reading are listed.
        for o in ORDERS if n > 1 else ("ABCD", "BADC"):
            one(Field(name="bcd", address=0, type="bcd", order=o, count=n), regs)
        for o in ("ABCD", "BADC"):
            one(Field(name="string", address=0, type="string", order=o, count=n), regs)
    return out
