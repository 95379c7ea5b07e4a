"""Modbus data types and byte/word orders: decode and encode (pure)."""
from __future__ import annotations

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
