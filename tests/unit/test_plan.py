"""Request planning: which reads fetch a model's fields."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.modbus.plan import Read, plan, slice_for, split
from protocols.modbus.types import DecodeError, Field, decode, encode, register_count


def u16(name: str, address: int, function: str = "holding") -> Field:
    return Field(name=name, address=address, function=function)


def spans(reads):
    return [(r.function, r.address, r.count, [f.name for f in r.fields]) for r in reads]


# --- plan -----------------------------------------------------------------------

def test_contiguous_fields_merge():
    fields = [u16("a", 0), u16("b", 1), u16("c", 2),
              Field("f", 3, type="float32"), Field("s", 5, type="string", count=4)]
    assert spans(plan(fields)) == [("holding", 0, 9, ["a", "b", "c", "f", "s"])]


def test_empty():
    assert plan([]) == []


def test_hole_of_exactly_gap_merges():
    # a ends at 1; b starts at 9: registers 1..8 are the hole, 8 of them
    assert spans(plan([u16("a", 0), u16("b", 9)])) == [("holding", 0, 10, ["a", "b"])]


def test_hole_of_gap_plus_one_does_not():
    assert spans(plan([u16("a", 0), u16("b", 10)])) == [
        ("holding", 0, 1, ["a"]), ("holding", 10, 1, ["b"])]


def test_gap_parameter():
    fields = [u16("a", 0), u16("b", 2), u16("c", 3)]
    assert spans(plan(fields, gap=0)) == [("holding", 0, 1, ["a"]), ("holding", 2, 2, ["b", "c"])]
    assert spans(plan(fields, gap=1)) == [("holding", 0, 4, ["a", "b", "c"])]


def test_hole_counts_from_the_end_of_a_multi_register_field():
    # float64 at 0 ends at 4; 4 + 8 = 12 merges, 13 does not
    assert len(plan([Field("d", 0, type="float64"), u16("b", 12)])) == 1
    assert len(plan([Field("d", 0, type="float64"), u16("b", 13)])) == 2


def test_125_register_limit():
    fields = [u16(f"r{i}", i) for i in range(125)]
    assert spans(plan(fields))[0][:3] == ("holding", 0, 125)
    assert len(plan(fields)) == 1
    reads = plan(fields + [u16("r125", 125)])
    assert [(r.address, r.count) for r in reads] == [(0, 125), (125, 1)]


def test_limit_counts_the_whole_last_field():
    # a float32 at 124 would make the read 126 long: it starts the next read
    reads = plan([u16("a", 0), Field("f", 124, type="float32")])
    assert [(r.address, r.count) for r in reads] == [(0, 1), (124, 2)]


def test_smaller_model_maximum():
    fields = [u16(f"r{i}", i) for i in range(40)]
    reads = plan(fields, max_count=16)
    assert [(r.address, r.count) for r in reads] == [(0, 16), (16, 16), (32, 8)]


@pytest.mark.parametrize("max_count", [0, 126, -1])
def test_max_count_must_be_a_modbus_read(max_count):
    with pytest.raises(ValueError):
        plan([u16("a", 0)], max_count=max_count)


def test_negative_gap_rejected():
    with pytest.raises(ValueError):
        plan([u16("a", 0)], gap=-1)


def test_functions_planned_separately_holding_first():
    fields = [u16("i5", 5, "input"), u16("h1", 1), u16("i0", 0, "input"), u16("h0", 0)]
    assert spans(plan(fields)) == [
        ("holding", 0, 2, ["h0", "h1"]),
        ("input", 0, 6, ["i0", "i5"]),
    ]


def test_unknown_function_rejected():
    with pytest.raises(ValueError, match="coil"):
        plan([Field("coil", 0, function="coil")])


def test_unsorted_input_gives_sorted_reads():
    fields = [u16("c", 40), u16("a", 0), u16("b", 20)]
    assert spans(plan(fields)) == [
        ("holding", 0, 1, ["a"]), ("holding", 20, 1, ["b"]), ("holding", 40, 1, ["c"])]


def test_bits_of_one_status_word_share_a_read():
    fields = [Field("fault", 15, type="bit", bit=1), u16("status_word", 15),
              Field("sleep", 15, type="bit", bit=0)]
    reads = plan(fields)
    assert len(reads) == 1
    assert (reads[0].address, reads[0].count) == (15, 1)
    assert {f.name for f in reads[0].fields} == {"fault", "status_word", "sleep"}


def test_overlapping_fields_of_different_widths_share_a_read():
    fields = [Field("f", 10, type="float32"), u16("lo", 11), u16("far", 200)]
    assert spans(plan(fields)) == [("holding", 10, 2, ["f", "lo"]), ("holding", 200, 1, ["far"])]


def test_field_inside_a_longer_one_does_not_shorten_the_read():
    fields = [Field("s", 0, type="string", count=8), u16("inner", 2), u16("next", 10)]
    assert spans(plan(fields)) == [("holding", 0, 11, ["s", "inner", "next"])]


def test_oversized_field_names_the_field():
    with pytest.raises(ValueError, match="serial_number"):
        plan([Field("serial_number", 0, type="string", count=126)])
    with pytest.raises(ValueError, match="serial_number"):
        plan([Field("serial_number", 0, type="string", count=20)], max_count=16)
    assert plan([Field("serial_number", 0, type="string", count=125)])[0].count == 125


def test_field_beyond_the_address_space_rejected():
    with pytest.raises(ValueError, match="total"):
        plan([Field("total", 65535, type="uint32")])


# The turbine corrector's map (protocols/models/turbine-evc.toml) as fields.
TURBINE = [
    Field("volume_std_m3", 0, type="intfrac"),
    Field("volume_work_m3", 3, type="intfrac"),
    Field("flow_m3h", 6, type="float32", order="CDAB", min=0.0, max=100000.0),
    Field("flow_std_m3h", 8, type="float32", order="CDAB"),
    Field("temperature_C", 10, type="float32", order="CDAB", min=-60.0, max=150.0),
    Field("pressure_kPa", 12, type="float32", order="CDAB"),
    Field("battery_V", 14, type="uint16", scale=0.01),
    Field("status_word", 15),
    Field("model_code", 16),
    Field("serial_number", 20, type="string", count=8),
]


def test_turbine_map_is_one_read():
    assert spans(plan(TURBINE)) == [("holding", 0, 28, [f.name for f in TURBINE])]


def test_plan_slice_decode_end_to_end():
    values = {"volume_std_m3": 123456.789, "volume_work_m3": 130000.5, "flow_m3h": 12.5,
              "flow_std_m3h": 13.25, "temperature_C": 21.5, "pressure_kPa": 101.325,
              "battery_V": 3.65, "status_word": 0b100001, "model_code": 4101,
              "serial_number": "TB-0042"}
    image = [0] * 64          # the device's holding registers
    for f in TURBINE:
        regs = encode(f, values[f.name])
        image[f.address:f.address + len(regs)] = regs
    got = {}
    for r in plan(TURBINE):
        response = image[r.address:r.address + r.count]
        for f in r.fields:
            got[f.name] = decode(f, slice_for(r, f, response))
    assert got["pressure_kPa"] == pytest.approx(101.325, rel=1e-7)   # float32
    got["pressure_kPa"] = 101.325
    assert got == values


# --- split ----------------------------------------------------------------------

def test_split_in_the_middle():
    read = plan([u16(f"r{i}", i) for i in range(10)])[0]
    left, right = split(read)
    assert (left.address, left.count) == (0, 5)
    assert (right.address, right.count) == (5, 5)
    assert left.fields + right.fields == read.fields


def test_split_drops_the_hole():
    fields = [u16("a", 0), u16("b", 1), u16("c", 2), u16("d", 9), u16("e", 10)]
    (read,) = plan(fields)
    assert (read.address, read.count) == (0, 11)
    assert spans(split(read)) == [("holding", 0, 3, ["a", "b", "c"]), ("holding", 9, 2, ["d", "e"])]


def test_split_picks_the_boundary_nearest_the_middle():
    # middle of 0..20 is 10; boundaries at 1, 8 and 18: 8 is nearest
    fields = [u16("a", 0), Field("b", 1, type="float32"), Field("c", 8, type="string", count=8),
              Field("d", 18, type="float32")]
    (read,) = plan(fields)
    assert spans(split(read)) == [("holding", 0, 3, ["a", "b"]), ("holding", 8, 12, ["c", "d"])]


def test_split_prefers_a_boundary_no_field_straddles():
    # middle of 0..10 is 5; the b|c boundary sits there but c lies inside b,
    # so cutting there would read register 5 twice and drop no hole
    fields = [u16("a", 0), Field("b", 2, type="float64"), u16("c", 5), u16("d", 9)]
    (read,) = plan(fields)
    assert (read.address, read.count) == (0, 10)
    assert spans(split(read)) == [("holding", 0, 6, ["a", "b", "c"]), ("holding", 9, 1, ["d"])]


def test_split_keeps_a_field_with_the_field_inside_it():
    fields = [Field("a", 0, type="float32"), u16("b", 1), u16("c", 2)]
    (read,) = plan(fields)
    assert spans(split(read)) == [("holding", 0, 2, ["a", "b"]), ("holding", 2, 1, ["c"])]


def test_split_straddling_boundary_when_there_is_no_other():
    # still progress: each part has fewer fields, so repeated splits isolate a bad one
    (read,) = plan([Field("a", 0, type="float32"), Field("b", 1, type="float32")])
    assert spans(split(read)) == [("holding", 0, 2, ["a"]), ("holding", 1, 2, ["b"])]


def test_split_single_field_returned_as_is():
    read = Read("input", 4, 2, (Field("f", 4, function="input", type="float32"),))
    assert split(read) == [read]


def test_split_fields_on_the_same_registers_returned_as_is():
    (read,) = plan([u16("status", 15), Field("b0", 15, type="bit", bit=0), Field("b1", 15, type="bit", bit=1)])
    assert split(read) == [read]


def test_split_keeps_same_register_fields_together():
    (read,) = plan([u16("a", 0), u16("status", 1), Field("b0", 1, type="bit", bit=0), u16("c", 2)])
    parts = split(read)
    assert len(parts) == 2
    together = [p for p in parts if any(f.name == "status" for f in p.fields)]
    assert {f.name for f in together[0].fields} >= {"status", "b0"}


def test_split_until_single_fields_terminates():
    pending = plan([u16(f"r{i}", i * 3) for i in range(9)])
    done = []
    while pending:
        r = pending.pop()
        parts = split(r)
        if len(parts) == 1:
            done.append(parts[0])
        else:
            assert all(p.count < r.count for p in parts)
            pending.extend(parts)
    assert sorted(f.address for r in done for f in r.fields) == [i * 3 for i in range(9)]
    assert all(r.count == 1 for r in done)


# --- slice_for ------------------------------------------------------------------

def test_slice_for_offsets():
    read = Read("holding", 10, 8, (u16("a", 10), Field("f", 12, type="float32"), u16("z", 17)))
    regs = list(range(100, 108))
    assert slice_for(read, read.fields[0], regs) == [100]
    assert slice_for(read, read.fields[1], regs) == [102, 103]
    assert slice_for(read, read.fields[2], regs) == [107]


def test_slice_for_field_outside_the_read():
    read = Read("holding", 10, 2, (u16("a", 10),))
    with pytest.raises(ValueError):
        slice_for(read, u16("before", 9), [0, 0])
    with pytest.raises(ValueError):
        slice_for(read, Field("over", 11, type="float32"), [0, 0])


def test_slice_for_short_response_is_a_decode_error():
    read = Read("holding", 0, 4, (u16("a", 0), u16("d", 3)))
    assert slice_for(read, read.fields[0], [1, 2]) == [1]
    with pytest.raises(DecodeError):
        slice_for(read, read.fields[1], [1, 2])


# --- properties -----------------------------------------------------------------

_field_specs = st.lists(
    st.tuples(st.sampled_from(["holding", "input"]), st.integers(0, 400),
              st.sampled_from([("uint16", None), ("float32", None), ("float64", None),
                               ("string", 8), ("bcd", 3), ("intfrac", None)])),
    max_size=60,
)


@given(specs=_field_specs, max_count=st.integers(8, 125), gap=st.integers(0, 12))
def test_plan_properties(specs, max_count, gap):
    fields = [Field(f"f{i}", a, function=fn, type=t, count=c) for i, (fn, a, (t, c)) in enumerate(specs)]
    reads = plan(fields, max_count=max_count, gap=gap)
    covered = [f for r in reads for f in r.fields]
    assert sorted(f.name for f in covered) == sorted(f.name for f in fields)
    assert reads == sorted(reads, key=lambda r: (r.function != "holding", r.address))
    for r in reads:
        assert 1 <= r.count <= max_count
        assert all(f.function == r.function for f in r.fields)
        ends = [f.address + register_count(f) for f in r.fields]
        # trimmed: starts at its first field, ends at its last register
        assert r.address == min(f.address for f in r.fields)
        assert r.address + r.count == max(ends)
        # no hole inside a read is wider than gap
        end = r.fields[0].address
        for f, e in zip(r.fields, ends):
            assert f.address - end <= gap
            end = max(end, e)
        for part in split(r):
            assert part.count <= r.count
            assert set(part.fields) <= set(r.fields)
    # a read ends only when the next field could not have joined it
    for a, b in zip(reads, reads[1:]):
        if a.function == b.function:
            first = b.fields[0]
            a_end = a.address + a.count
            joined = max(a_end, first.address + register_count(first)) - a.address
            assert first.address - a_end > gap or joined > max_count
