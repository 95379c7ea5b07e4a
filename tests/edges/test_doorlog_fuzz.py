"""Property-based fuzzing of the door-log parser (protocols/doorlog.py):
layouts, status blocks, record slots, windows and the cursor rules.

What a controller (or a line) can hand the reader is any register content;
what a vendor's model file can describe is any layout. The promises:
  - the parser only ever answers or refuses in its own words (a Layout or a
    LayoutError; a Status or a DecodeError; a Record, None or a RecordError;
    a WindowResult): the reader (gateway/doors/poller.py) handles exactly
    those, so anything else would stop the bus the meters share;
  - a record is only ever a record the controller wrote: encode and decode
    are inverses on every layout, and one damaged register never decodes
    as another record (the slot's CRC-16 sees it);
  - the cursor never goes back: a window never offers a record at or before
    the cursor again (bar the one verifying slot), records come contiguous
    and in order, and a new epoch is always a higher one.

CI runs a fixed, bounded set (derandomised); bench/soak runs fresh random
examples for as long as it is given (EDGEGW_SOAK_S).
"""
from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import doorlog
from protocols.modbus import types
from protocols.models import load_models
from tests.edges.promise import SOAK_S

pytestmark = pytest.mark.edges

MODEL = load_models()["door-controller"]
LAYOUT = doorlog.Layout.from_model(MODEL)

if SOAK_S:
    FUZZ = settings(max_examples=max(300, int(SOAK_S * 20)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
else:
    FUZZ = settings(max_examples=300, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 0xFFFFFFFF)
RECORD_FIELDS = (*doorlog.RECORD_FIELDS, doorlog.RECORD_CHECK)
CARD_TYPES = {"uint32": (None, 0xFFFFFFFF), "bcd": (4, 99_999_999), "uint64": (None, 2**40)}


# -- layouts a model file can describe -------------------------------------------

@st.composite
def layouts(draw):
    """The packaged model with its blocks moved, the slot's fields reordered,
    the card number in another type, the check register kept or dropped, and
    now and then a mistake a model file can make that the loader lets through."""
    by = {f.name: f for f in MODEL.fields}
    status_at = draw(st.integers(0, 3000))
    select_at = draw(st.integers(0, 3000))
    slot_at = draw(st.integers(0, 3000))
    order = draw(st.permutations(doorlog.RECORD_FIELDS))
    card_type = draw(st.sampled_from(sorted(CARD_TYPES)))
    check = draw(st.booleans())
    fields = []
    base = by["serial_number"].address
    for f in MODEL.fields:
        if f.name in doorlog.STATUS_FIELDS:
            fields.append(replace(f, address=f.address - base + status_at))
    fields.append(replace(by["log_select_index"], address=select_at))
    fields.append(replace(by["log_select_count"], address=select_at + 2))
    at = slot_at
    for name in order:
        f = by[name]
        if name == "record_card":
            count, _ = CARD_TYPES[card_type]
            f = replace(f, type=card_type, count=count)
        f = replace(f, address=at)
        fields.append(f)
        at += types.register_count(f)
    if check:
        fields.append(replace(by[doorlog.RECORD_CHECK], address=at))
    # (Overlapping registers are refused by the model loader before any
    # layout is made: protocols/models, _Checker.overlaps.)
    mistake = draw(st.sampled_from([None] * 6 + ["drop", "function", "check_early", "tiny_reads"]))
    per_read = MODEL.max_registers_per_read
    if mistake == "drop":
        victim = draw(st.sampled_from([f.name for f in fields]))
        fields = [f for f in fields if f.name != victim]
    elif mistake == "function":
        i = draw(st.integers(0, len(fields) - 1))
        fields[i] = replace(fields[i], function="holding" if fields[i].function == "input" else "input")
    elif mistake == "check_early" and check:
        fields = [replace(f, address=slot_at) if f.name == doorlog.RECORD_CHECK else f for f in fields]
    elif mistake == "tiny_reads":
        per_read = draw(st.integers(1, 12))
    return replace(MODEL, fields=tuple(fields), max_registers_per_read=per_read), card_type


def records(card_max: int = 0xFFFFFFFF):
    return st.builds(doorlog.Record, index=st.integers(1, doorlog.EMPTY_INDEX - 1), time_s=U32,
                     card=st.integers(0, card_max), door=U16, event=U16)


def same(a: doorlog.Record, b: doorlog.Record) -> bool:
    return (a.index, a.time_s, a.card, a.door, a.event) == (b.index, b.time_s, b.card, b.door, b.event)


@FUZZ
@given(layouts(), st.data())
def test_any_layout_is_refused_in_words_or_round_trips(drawn, data):
    model, card_type = drawn
    try:
        lay = doorlog.Layout.from_model(model)
    except doorlog.LayoutError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        return
    assert lay.slots_per_read >= 1
    assert lay.slots_per_read * lay.slot_registers <= model.max_registers_per_read
    for rec in data.draw(st.lists(records(CARD_TYPES[card_type][1]), min_size=1, max_size=4)):
        regs = doorlog.encode_slot(lay, rec)
        assert len(regs) == lay.slot_registers and all(0 <= r <= 0xFFFF for r in regs)
        assert same(lay.decode_slot(regs), rec)
    assert lay.decode_slot(doorlog.encode_slot(lay, None)) is None
    first, count = data.draw(U32), data.draw(st.integers(0, 0xFFFF))
    assert lay.parse_select(lay.select(first, count)) == (first, count)


# -- what a controller can answer -------------------------------------------------

@FUZZ
@given(st.lists(U16, min_size=LAYOUT.status_count, max_size=LAYOUT.status_count))
def test_any_status_block_is_a_status_or_a_decode_error(regs):
    try:
        s = LAYOUT.status(regs)
    except types.DecodeError:
        return
    assert isinstance(s, doorlog.Status)
    assert s.serial.isprintable() and 0 <= s.oldest <= 0xFFFFFFFF and 0 <= s.newest <= 0xFFFFFFFF


@FUZZ
@given(st.one_of(st.lists(U16, min_size=LAYOUT.slot_registers, max_size=LAYOUT.slot_registers),
                 st.lists(U16, max_size=3 * LAYOUT.slot_registers)))
def test_any_slot_is_a_record_nothing_or_a_record_error(regs):
    try:
        rec = LAYOUT.decode_slot(regs)
    except doorlog.RecordError as exc:
        assert str(exc)
        return
    assert len(regs) == LAYOUT.slot_registers
    if rec is not None:
        # only a slot whose own check agrees decodes, and it re-encodes to itself
        assert doorlog.encode_slot(LAYOUT, rec) == list(regs)


@FUZZ
@given(records(), st.integers(0, LAYOUT.slot_registers - 1), U16)
def test_one_damaged_register_never_reads_as_a_record(rec, where, value):
    regs = doorlog.encode_slot(LAYOUT, rec)
    if regs[where] == value:
        return
    regs[where] = value
    try:
        got = LAYOUT.decode_slot(regs)
    except doorlog.RecordError:
        return
    # Damage that turns the index into the empty marker reads as "no record
    # here": the reader then re-reads the status, it never publishes it.
    assert got is None, f"damage read as a record: {got}"


def test_split_keeps_whole_slots_only():
    regs = list(range(LAYOUT.slot_registers * 3 + 4))
    parts = LAYOUT.split(regs)
    assert len(parts) == 3 and all(len(p) == LAYOUT.slot_registers for p in parts)


# -- windows and the cursor ---------------------------------------------------------

def statuses():
    return st.builds(lambda serial, oldest, span, cap: doorlog.Status(
        serial=serial, firmware="1.0", model_code=doorlog.MODEL_CODE, doors=2, capacity=cap,
        oldest=0 if span is None else oldest, newest=0 if span is None else oldest + span, clock_s=0),
        st.sampled_from(["DC000001", "DC000002"]), st.integers(1, 2**31),
        st.one_of(st.none(), st.integers(0, 5000)), st.integers(1, 10000))


def cursors():
    return st.one_of(st.none(), st.builds(
        doorlog.Cursor, serial=st.sampled_from(["DC000001", "DC000002"]), epoch=st.integers(1, 50),
        last_index=st.integers(0, 2**31 + 6000), fingerprint=st.one_of(st.none(), st.just("0" * 16))))


@FUZZ
@given(cursors(), statuses(), st.integers(1, 20))
def test_the_cursor_never_goes_back(cursor, status, slots):
    start = doorlog.begin(cursor, status)
    cur = start.cursor
    if start.reset:
        assert cur.epoch == (1 if cursor is None else cursor.epoch + 1) and cur.fingerprint is None
        assert cur.serial == status.serial
    elif cursor is not None:
        assert (cur.serial, cur.epoch) == (cursor.serial, cursor.epoch)
        assert cur.last_index >= cursor.last_index
        if start.gap:
            assert start.gap[0] == cursor.last_index + 1 and start.gap[0] <= start.gap[1] < status.oldest
    first, count = doorlog.window(cur, status, start.verify, slots)
    assert 0 <= count <= slots
    if count:
        assert first >= (cur.last_index if start.verify else cur.last_index + 1)
        assert first >= status.oldest and first + count - 1 <= status.newest


@st.composite
def windows(draw):
    """A cursor, the window read after it, and what its slots held: the true
    records, with now and then a slot damaged, empty, from elsewhere in the
    ring, or the cursor record changed under it."""
    last = draw(st.integers(0, 10**6))
    verify = draw(st.booleans()) and last > 0
    first = last if verify else last + 1
    n = draw(st.integers(0, 12))
    true = [doorlog.Record(index=first + i, time_s=i, card=i, door=1, event=1,
                           regs=tuple(doorlog.encode_slot(LAYOUT, doorlog.Record(first + i, i, i, 1, 1))))
            for i in range(n)]
    fp = doorlog.fingerprint(true[0].regs) if verify and true else None
    slots: list = list(true)
    for i in range(n):
        what = draw(st.sampled_from(["ok"] * 6 + ["bad", "empty", "moved", "changed"]))
        if what == "bad":
            slots[i] = doorlog.RecordError("check")
        elif what == "empty":
            slots[i] = None
        elif what == "moved":
            slots[i] = replace(true[i], index=true[i].index + draw(st.sampled_from([-3, -1, 1, 50])))
        elif what == "changed":
            slots[i] = replace(true[i], regs=tuple((r + 1) & 0xFFFF for r in true[i].regs))
    cursor = doorlog.Cursor("DC000001", 1, last, fp)
    return cursor, first, slots, verify


@FUZZ
@given(windows())
def test_a_window_accepts_only_the_contiguous_new_records(drawn):
    cursor, first, slots, verify = drawn
    res = doorlog.check_window(cursor, first, slots, verify)
    assert res.outcome in ("ok", "mismatch", "moved", "bad_record")
    idx = [r.index for r in res.records]
    assert idx == list(range(idx[0], idx[0] + len(idx))) if idx else True
    assert all(i > cursor.last_index for i in idx), "a record at or before the cursor offered again"
    if idx:
        assert idx[0] == cursor.last_index + 1
    for r in res.records:
        # each accepted record is the slot that was read for its number
        assert slots[r.index - first] is r
    if res.outcome == "ok":
        assert len(idx) == len(slots) - (1 if verify and slots else 0)
    else:
        assert res.at is not None and first <= res.at < first + len(slots) and res.detail
        assert not [r for r in res.records if r.index >= res.at]
    if res.outcome == "mismatch":
        assert res.records == [] and verify
    head = slots[0] if slots else None
    if verify and isinstance(head, doorlog.Record) and head.index == cursor.last_index \
            and doorlog.fingerprint(head.regs) != cursor.fingerprint:
        # the record under the cursor is not the one read before: a new epoch
        assert res.outcome == "mismatch", res
