"""Request planning: which Modbus reads fetch a model's fields (pure)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .types import FUNCTIONS, DecodeError, Field, register_count

# FC3/FC4 can return at most 125 registers in one response (Modbus spec 6.3).
MODBUS_MAX_COUNT = 125


@dataclass(frozen=True)
class Read:
    function: str                 # "holding" | "input"
    address: int
    count: int
    fields: tuple[Field, ...]     # the fields this read covers, by address


def _span(field: Field) -> tuple[int, int]:
    return field.address, field.address + register_count(field)


def _read(function: str, fields: Sequence[Field]) -> Read:
    start = fields[0].address
    end = max(_span(f)[1] for f in fields)
    return Read(function, start, end - start, tuple(fields))


def plan(fields: Iterable[Field], *, max_count: int = 125, gap: int = 8) -> list[Read]:
    """Fewest reads covering the fields: holding reads then input reads, by address.

    Neighbours are merged while the hole between the read so far and the next
    field is <= gap registers and the read stays <= max_count registers, since
    reading a few unused registers is cheaper than another round trip.
    """
    if not 1 <= max_count <= MODBUS_MAX_COUNT:
        raise ValueError(f"max_count must be 1..{MODBUS_MAX_COUNT}, got {max_count}")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    by_function: dict[str, list[tuple[int, int, Field]]] = {fn: [] for fn in FUNCTIONS}
    for f in fields:
        if f.function not in by_function:
            raise ValueError(f"{f.name}: unknown function {f.function!r}")
        start, end = _span(f)
        if start < 0 or end > 0x10000:
            raise ValueError(f"{f.name}: registers {start}..{end - 1} outside 0..65535")
        if end - start > max_count:
            raise ValueError(f"{f.name}: spans {end - start} registers, more than one read ({max_count})")
        by_function[f.function].append((start, end, f))

    reads: list[Read] = []
    for fn in FUNCTIONS:
        # Sorted by address, then shorter first; the sort is stable so equal
        # spans keep the caller's order and the output is deterministic.
        items = sorted(by_function[fn], key=lambda it: (it[0], it[1]))
        cur: list[Field] = []
        cur_start = cur_end = 0
        for start, end, f in items:
            if cur and start - cur_end <= gap and max(cur_end, end) - cur_start <= max_count:
                cur.append(f)
                cur_end = max(cur_end, end)
                continue
            if cur:
                reads.append(Read(fn, cur_start, cur_end - cur_start, tuple(cur)))
            cur, cur_start, cur_end = [f], start, end
        if cur:
            reads.append(Read(fn, cur_start, cur_end - cur_start, tuple(cur)))
    return reads


def split(read: Read) -> list[Read]:
    """Two smaller reads after exception 02/03 on a coalesced read.

    The cut is at the field boundary nearest the middle of the read, preferring
    a boundary that no field straddles, so a hole of unimplemented registers
    (the usual cause of exception 02) is dropped. Fields that all cover the same
    registers cannot be separated usefully: such a read comes back as is.
    """
    fields = sorted(read.fields, key=_span)
    spans = [_span(f) for f in fields]
    middle = read.address + read.count / 2
    best: tuple[tuple[bool, float], int] | None = None
    left_end = spans[0][1]
    for k in range(1, len(fields)):
        right_start = spans[k][0]
        if spans[k] != spans[k - 1]:
            lo, hi = sorted((left_end, right_start))
            # distance from the middle to the cut; 0 when the middle is in the hole
            distance = max(lo - middle, middle - hi, 0.0)
            key = (left_end > right_start, distance)
            if best is None or key < best[0]:
                best = (key, k)
        left_end = max(left_end, spans[k][1])
    if best is None:
        return [read]
    k = best[1]
    return [_read(read.function, fields[:k]), _read(read.function, fields[k:])]


def slice_for(read: Read, field: Field, regs: Sequence[int]) -> Sequence[int]:
    """The field's registers out of the registers the read returned."""
    start = field.address - read.address
    end = start + register_count(field)
    if start < 0 or end > read.count:
        raise ValueError(f"{field.name}: registers {field.address}..{field.address + end - start - 1} "
                         f"not in read {read.address}..{read.address + read.count - 1}")
    if len(regs) < end:
        # A short response is bad data for this field, not a bug in the plan.
        raise DecodeError(f"{field.name}: response has {len(regs)} registers, field needs {start}..{end - 1}")
    return regs[start:end]
