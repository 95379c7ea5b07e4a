"""Door-controller event logs: record layout, event types, cursor rules (pure).

No I/O and no clock: the reader (gateway/doors/poller.py) and the simulator
(simulators/door.py) share this module, so the log protocol exists once.
Longer than 400 lines because it is one protocol: the record layout and the
cursor rules that judge it against the controller's status are read together.
docs/models/door-controller.md is the protocol; docs/doors.md tells the site
installer and the monitoring team what comes out of it.

A controller keeps its events in a ring of ``capacity`` records numbered 1,
2, 3 ... (the number only grows until the log is cleared or the controller
replaced). The gateway keeps one cursor per controller,
``{serial, epoch, last_index, fingerprint}``, committed with the events it
has published, and reads from ``last_index + 1`` on. The rules here decide
what the cursor means against the controller's current status:

- serial changed                 -> new epoch, reason ``controller_replaced``
- newest index below the cursor  -> new epoch, reason ``index_backwards``
- cursor record's content changed-> new epoch, reason ``fingerprint_mismatch``
- oldest held record past cursor -> a gap: the records in between are lost
- otherwise                      -> continue after the cursor

A new epoch reads the whole retained log once; its records are new events
(they get ids of the new epoch), never a repeat of an id already published.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Sequence

from protocols.modbus import types

__all__ = [
    "EMPTY_INDEX", "EVENT_TYPES", "EventType", "Cursor", "Status", "Start", "Record",
    "Layout", "LayoutError", "RecordError", "WindowResult", "begin", "new_epoch",
    "window", "check_window", "fingerprint", "crc16", "event_type", "encode_slot",
    "event_id", "MODEL_CODE",
]

MODEL_CODE = 5001
EMPTY_INDEX = 0xFFFFFFFF  # a slot the controller holds no record for

# Reasons for a new epoch, as published in log_reset events.
FIRST_CONTACT = "first_contact"
CONTROLLER_REPLACED = "controller_replaced"
INDEX_BACKWARDS = "index_backwards"
FINGERPRINT_MISMATCH = "fingerprint_mismatch"
RESET_REASONS = (FIRST_CONTACT, CONTROLLER_REPLACED, INDEX_BACKWARDS, FINGERPRINT_MISMATCH)


@dataclass(frozen=True)
class EventType:
    code: int
    name: str          # the "event" word in published payloads
    category: str      # access | door | alarm | power | system
    severity: str      # info | minor | major (as fault severities)
    card: bool         # the record names a card
    granted: bool | None  # access decisions only: did the door open for the card
    en: str


_TYPES = (
    EventType(1, "access_granted", "access", "info", True, True, "access granted"),
    EventType(2, "refused_unknown_card", "access", "minor", True, False, "refused: card not known to the controller"),
    EventType(3, "refused_expired_card", "access", "minor", True, False, "refused: card expired"),
    EventType(4, "refused_outside_schedule", "access", "info", True, False, "refused: outside the card's schedule"),
    EventType(5, "refused_anti_passback", "access", "minor", True, False, "refused: anti-passback (card already inside)"),
    EventType(6, "door_forced_open", "alarm", "major", False, None, "door forced open (opened without a card or button)"),
    EventType(7, "door_held_open", "alarm", "minor", False, None, "door held open too long"),
    EventType(8, "exit_button", "door", "info", False, None, "door opened by the exit button"),
    EventType(9, "tamper", "alarm", "major", False, None, "controller or reader tamper switch"),
    EventType(10, "mains_lost", "power", "major", False, None, "mains power lost (running on battery)"),
    EventType(11, "mains_restored", "power", "info", False, None, "mains power restored"),
    EventType(12, "battery_low", "power", "minor", False, None, "controller backup battery low"),
    EventType(13, "log_cleared", "system", "minor", False, None, "event log cleared on the controller"),
)
EVENT_TYPES: dict[int, EventType] = {t.code: t for t in _TYPES}
EVENT_CODES: dict[str, int] = {t.name: t.code for t in _TYPES}


def event_type(code: int) -> EventType:
    """The type of a record; a code this table does not know is still an
    event (published as ``unknown_<code>``), never dropped."""
    t = EVENT_TYPES.get(code)
    if t is not None:
        return t
    return EventType(code, f"unknown_{code}", "unknown", "minor", False, None,
                     f"event type {code} not in the door-controller map")


def event_id(serial: str, epoch: int, index: int) -> str:
    """Stable id of a log record: the same record read again in the same epoch
    gets the same id, so consumers drop a repeat by id."""
    return f"{serial}/{epoch}/{index}"


# --------------------------------------------------------------------------- CRC, fingerprint

def crc16(data: bytes) -> int:
    """CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF)."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def _bytes(regs: Sequence[int]) -> bytes:
    return b"".join(int(r & 0xFFFF).to_bytes(2, "big") for r in regs)


def fingerprint(regs: Sequence[int], key: bytes = b"") -> str:
    """Short keyed hash of a record's raw registers. Keyed so that the stored
    cursor does not let anyone without the site key recover the card number
    by trying all 2^32 values."""
    return hashlib.blake2b(_bytes(regs), digest_size=8, key=key[:64]).hexdigest()


# --------------------------------------------------------------------------- layout

class LayoutError(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


class RecordError(ValueError):
    """A slot that does not decode (check mismatch, bad BCD)."""


STATUS_FIELDS = ("serial_number", "firmware_version", "model_code", "door_count",
                 "log_capacity", "log_oldest_index", "log_newest_index", "clock_s")
RECORD_FIELDS = ("record_index", "record_time_s", "record_card", "record_door", "record_event")
RECORD_CHECK = "record_check"
SELECT_FIELDS = ("log_select_index", "log_select_count")


@dataclass(frozen=True)
class Record:
    index: int
    time_s: int
    card: int
    door: int
    event: int
    regs: tuple[int, ...] = field(repr=False, default=())

    @property
    def type(self) -> EventType:
        return event_type(self.event)


@dataclass(frozen=True)
class Layout:
    """Where a model keeps its status block, select registers and record slots.

    Taken from the model file (names above), so a vendor whose controller
    keeps the same kind of log at other addresses, or card numbers in BCD,
    is one model file, not code."""

    status_function: str
    status_address: int
    status_count: int
    status_fields: tuple[types.Field, ...]
    select_address: int
    select_index: types.Field
    select_count: types.Field
    slot_function: str
    slot_address: int
    slot_registers: int
    slot_fields: dict  # name -> (offset, Field)
    slots_per_read: int

    @classmethod
    def from_model(cls, model) -> "Layout":
        problems: list[str] = []
        by = {f.name: f for f in model.fields}
        for name in (*STATUS_FIELDS, *SELECT_FIELDS, *RECORD_FIELDS):
            if name not in by:
                problems.append(f"{model.id}: no register {name!r} (a door-controller model needs it)")
        if problems:
            raise LayoutError(problems)
        st = [by[n] for n in STATUS_FIELDS]
        if len({f.function for f in st}) != 1:
            problems.append(f"{model.id}: the status registers must all be one function")
        lo = min(f.address for f in st)
        hi = max(f.address + types.register_count(f) for f in st)
        si, sc = by["log_select_index"], by["log_select_count"]
        if si.function != "holding" or sc.function != "holding":
            problems.append(f"{model.id}: log_select_index and log_select_count must be holding registers")
        if sc.address != si.address + types.register_count(si):
            problems.append(f"{model.id}: log_select_count must follow log_select_index (one write)")
        rec = [by[n] for n in RECORD_FIELDS] + ([by[RECORD_CHECK]] if RECORD_CHECK in by else [])
        if len({f.function for f in rec}) != 1:
            problems.append(f"{model.id}: the record_* registers must all be one function")
        base = by["record_index"].address
        slot_fields = {}
        end = base
        for f in rec:
            off = f.address - base
            if off < 0:
                problems.append(f"{model.id}: {f.name} lies before record_index (the slot starts there)")
            slot_fields[f.name] = (off, f)
            end = max(end, f.address + types.register_count(f))
        if RECORD_CHECK in by:
            chk = by[RECORD_CHECK]
            if chk.address + 1 != end or chk.type != "uint16":
                problems.append(f"{model.id}: record_check must be the slot's last register, a uint16")
        size = end - base
        slots = model.max_registers_per_read // max(1, size)
        if slots < 1:
            problems.append(f"{model.id}: one record slot ({size} registers) exceeds max_registers_per_read")
        if hi - lo > model.max_registers_per_read:
            problems.append(f"{model.id}: the status block spans more than max_registers_per_read")
        if problems:
            raise LayoutError(problems)
        return cls(status_function=st[0].function, status_address=lo, status_count=hi - lo,
                   status_fields=tuple(st), select_address=si.address, select_index=si,
                   select_count=sc, slot_function=by["record_index"].function, slot_address=base,
                   slot_registers=size, slot_fields=slot_fields, slots_per_read=slots)

    # -- status

    def status(self, regs: Sequence[int]) -> "Status":
        v = {}
        for f in self.status_fields:
            start = f.address - self.status_address
            v[f.name] = types.decode(f, regs[start:start + types.register_count(f)])
        return Status(serial=str(v["serial_number"]), firmware=str(v["firmware_version"]),
                      model_code=int(v["model_code"]), doors=int(v["door_count"]),
                      capacity=int(v["log_capacity"]), oldest=int(v["log_oldest_index"]),
                      newest=int(v["log_newest_index"]), clock_s=int(v["clock_s"]))

    def encode_status(self, st: "Status") -> list[int]:
        values = {"serial_number": st.serial, "firmware_version": st.firmware,
                  "model_code": st.model_code, "door_count": st.doors, "log_capacity": st.capacity,
                  "log_oldest_index": st.oldest, "log_newest_index": st.newest, "clock_s": st.clock_s}
        out = [0] * self.status_count
        for f in self.status_fields:
            start = f.address - self.status_address
            out[start:start + types.register_count(f)] = types.encode(f, values[f.name])
        return out

    # -- select

    def select(self, first: int, count: int) -> list[int]:
        return types.encode(self.select_index, first) + types.encode(self.select_count, count)

    def parse_select(self, regs: Sequence[int]) -> tuple[int, int]:
        n = types.register_count(self.select_index)
        return int(types.decode(self.select_index, regs[:n])), int(types.decode(self.select_count, regs[n:n + 1]))

    # -- slots

    def _get(self, name: str, slot: Sequence[int]):
        off, f = self.slot_fields[name]
        return types.decode(f, slot[off:off + types.register_count(f)])

    def decode_slot(self, slot: Sequence[int]) -> Record | None:
        """One slot's registers -> a record, or None when the controller holds
        no record there. Raises RecordError when the slot does not check."""
        slot = tuple(int(r) for r in slot)
        if len(slot) != self.slot_registers:
            raise RecordError(f"slot of {len(slot)} registers, expected {self.slot_registers}")
        try:
            index = int(self._get("record_index", slot))
        except types.DecodeError as exc:
            raise RecordError(str(exc)) from exc
        if index == EMPTY_INDEX:
            return None
        if RECORD_CHECK in self.slot_fields:
            off, _ = self.slot_fields[RECORD_CHECK]
            want = slot[off]
            got = crc16(_bytes(slot[:off] + slot[off + 1:]))
            if want != got:
                raise RecordError(f"record {index}: check {want:04x} != computed {got:04x}")
        try:
            return Record(index=index, time_s=int(self._get("record_time_s", slot)),
                          card=int(self._get("record_card", slot)),
                          door=int(self._get("record_door", slot)),
                          event=int(self._get("record_event", slot)), regs=slot)
        except types.DecodeError as exc:
            raise RecordError(f"record {index}: {exc}") from exc

    def split(self, regs: Sequence[int]) -> list[Sequence[int]]:
        n = self.slot_registers
        return [regs[i:i + n] for i in range(0, len(regs) - n + 1, n)]


def encode_slot(layout: Layout, rec: Record | None) -> list[int]:
    """A record as the controller serves it (simulator and tests)."""
    if rec is None:
        return [0xFFFF] * layout.slot_registers
    values = {"record_index": rec.index, "record_time_s": rec.time_s, "record_card": rec.card,
              "record_door": rec.door, "record_event": rec.event, RECORD_CHECK: 0}
    out = [0] * layout.slot_registers
    for name, (off, f) in layout.slot_fields.items():
        out[off:off + types.register_count(f)] = types.encode(f, values[name])
    if RECORD_CHECK in layout.slot_fields:
        off, _ = layout.slot_fields[RECORD_CHECK]
        out[off] = crc16(_bytes(out[:off] + out[off + 1:]))
    return out


# --------------------------------------------------------------------------- cursor rules

@dataclass(frozen=True)
class Status:
    serial: str
    firmware: str
    model_code: int
    doors: int
    capacity: int
    oldest: int    # 0 while empty
    newest: int    # 0 while empty
    clock_s: int

    @property
    def empty(self) -> bool:
        return self.newest == 0

    def holds(self, index: int) -> bool:
        return not self.empty and self.oldest <= index <= self.newest


@dataclass(frozen=True)
class Cursor:
    serial: str
    epoch: int
    last_index: int              # the last record published in this epoch (or the one before the first to read)
    fingerprint: str | None      # of the record at last_index; None when it was not read (epoch start, gap)

    def to_kv(self) -> dict:
        return {"serial": self.serial, "epoch": self.epoch, "last_index": self.last_index,
                "fingerprint": self.fingerprint}

    @classmethod
    def from_kv(cls, d: dict | None) -> "Cursor | None":
        if not d:
            return None
        return cls(serial=str(d["serial"]), epoch=int(d["epoch"]), last_index=int(d["last_index"]),
                   fingerprint=d.get("fingerprint"))


@dataclass(frozen=True)
class Start:
    cursor: Cursor
    reset: str | None = None               # reason of a new epoch
    previous: Cursor | None = None         # the cursor before the reset
    gap: tuple[int, int] | None = None     # first, last record number lost (inclusive)
    verify: bool = False                   # re-read the cursor record and compare its fingerprint


def new_epoch(cursor: Cursor | None, status: Status, reason: str) -> Start:
    """Read the whole retained log once, in a new epoch."""
    epoch = 1 if cursor is None else cursor.epoch + 1
    first = status.oldest if not status.empty else 1
    return Start(Cursor(status.serial, epoch, max(0, first - 1), None), reset=reason, previous=cursor)


def begin(cursor: Cursor | None, status: Status) -> Start:
    """Where to read from, given the stored cursor and the controller's status."""
    if cursor is None:
        return new_epoch(None, status, FIRST_CONTACT)
    if status.serial != cursor.serial:
        return new_epoch(cursor, status, CONTROLLER_REPLACED)
    if status.newest < cursor.last_index:
        # Includes an emptied log (newest 0) after records were read.
        return new_epoch(cursor, status, INDEX_BACKWARDS)
    if status.empty:
        return Start(cursor)
    if status.oldest > cursor.last_index + 1:
        # Overrun: the ring overwrote records before they were read. The
        # cursor record is gone too, so its fingerprint cannot be checked.
        gap = (cursor.last_index + 1, status.oldest - 1)
        return Start(replace(cursor, last_index=status.oldest - 1, fingerprint=None), gap=gap)
    verify = cursor.fingerprint is not None and status.holds(cursor.last_index)
    return Start(cursor, verify=verify)


def window(cursor: Cursor, status: Status, verify: bool, slots: int) -> tuple[int, int]:
    """(first record number, count) of the next window; count 0 when caught up.
    A verifying window starts at the cursor record itself: one extra slot,
    not one extra request."""
    if status.empty or status.newest <= cursor.last_index:
        return cursor.last_index + 1, 0
    first = cursor.last_index if verify else cursor.last_index + 1
    first = max(first, status.oldest)
    return first, max(0, min(slots, status.newest - first + 1))


@dataclass
class WindowResult:
    records: list[Record]              # new records, in order, checked
    outcome: str                       # "ok" | "mismatch" | "moved" | "bad_record"
    at: int | None = None              # record number where it stopped (moved, bad_record)
    detail: str = ""


def check_window(cursor: Cursor, first: int, slots: Sequence[Record | None | RecordError],
                 verify: bool, key: bytes = b"") -> WindowResult:
    """Check every slot's own record number; accept the contiguous run of new
    records. ``slots`` are decoded slots (a RecordError in place of one that
    did not check)."""
    out: list[Record] = []
    for i, rec in enumerate(slots):
        want = first + i
        if isinstance(rec, RecordError):
            if verify and want == cursor.last_index:
                continue  # already published; it just cannot vouch for the log this time
            return WindowResult(out, "bad_record", want, str(rec))
        if rec is None or rec.index != want:
            # The ring moved under the read (wrapped, or cleared) or the
            # select was not taken: re-read the status and decide again.
            got = "nothing" if rec is None else f"record {rec.index}"
            return WindowResult(out, "moved", want, f"slot for record {want} held {got}")
        if verify and want == cursor.last_index:
            if fingerprint(rec.regs, key) != cursor.fingerprint:
                return WindowResult([], "mismatch", want,
                                    f"record {want} is not the record read before")
            continue
        out.append(rec)
    return WindowResult(out, "ok")


def advance(cursor: Cursor, rec: Record, key: bytes = b"") -> Cursor:
    return replace(cursor, last_index=rec.index, fingerprint=fingerprint(rec.regs, key))
