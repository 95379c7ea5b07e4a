"""Raw register blocks + a model's register map -> a reading with quality (pure).

A field whose read failed, or whose registers do not make a value (bad BCD,
NaN, a value the device cannot physically report), gets a quality reason and
no value: nothing undecodable is ever published as if it were a value.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from protocols.modbus import types
from protocols.modbus.plan import Read

GOOD = "good"


@dataclass(slots=True)           # one per poll, and a device's previous one
class Reading:
    device: str
    ok: bool
    values: dict[str, int | float | str | bool] = field(default_factory=dict)
    quality: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    mono: float = 0.0
    ts: str = ""


def decode_reads(device: str, results: list[tuple[Read, list[int] | str]],
                 *, mono: float, ts: str) -> Reading:
    """results: per read, either its registers or a failure type
    ("timeout", "crc", "exception_2", "bus_down", ...)."""
    values: dict[str, int | float | str | bool] = {}
    quality: dict[str, str] = {}
    error: str | None = None
    for read, regs in results:
        if isinstance(regs, str):
            error = error or regs
            for f in read.fields:
                quality[f.name] = regs
            continue
        base = read.address
        for f in read.fields:
            start = f.address - base
            chunk = regs[start:start + types.register_count(f)]
            try:
                values[f.name] = types.decode(f, chunk)
                quality[f.name] = GOOD
            except types.RangeError:
                quality[f.name] = "out_of_range"
                error = error or "out_of_range"
            except types.DecodeError:
                quality[f.name] = "decode_error"
                error = error or "decode_error"
    return Reading(device=device, ok=error is None, values=values, quality=quality,
                   error=error, mono=mono, ts=ts)


def failed(device: str, reason: str, *, mono: float, ts: str) -> Reading:
    return Reading(device=device, ok=False, error=reason, mono=mono, ts=ts)
