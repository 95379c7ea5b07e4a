"""Modbus data types against byte patterns written out by hand."""
from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.modbus.types import (
    ORDERS,
    TYPES,
    DecodeError,
    Field,
    RangeError,
    decode,
    decode_all,
    encode,
    register_count,
)


def F(type_: str = "uint16", order: str = "ABCD", **kw) -> Field:
    return Field(name="x", address=0, type=type_, order=order, **kw)


def check(field: Field, regs: list[int], value) -> None:
    """regs decode to value, and value encodes back to exactly regs."""
    got = decode(field, regs)
    assert got == value and type(got) is type(value), (got, value)
    assert encode(field, value) == regs


# --- fixed-width types, every order -----------------------------------------

# The value 0x01020304 has bytes A=01 B=02 C=03 D=04.
INT32_0102 = {
    "ABCD": [0x0102, 0x0304],
    "CDAB": [0x0304, 0x0102],
    "BADC": [0x0201, 0x0403],
    "DCBA": [0x0403, 0x0201],
}

# 0x0102030405060708: A..H = 01..08. CDAB -> GHEFCDAB, BADC -> BADCFEHG, DCBA -> HGFEDCBA.
INT64_0102 = {
    "ABCD": [0x0102, 0x0304, 0x0506, 0x0708],
    "CDAB": [0x0708, 0x0506, 0x0304, 0x0102],
    "BADC": [0x0201, 0x0403, 0x0605, 0x0807],
    "DCBA": [0x0807, 0x0605, 0x0403, 0x0201],
}


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("type_", ["int32", "uint32"])
def test_int32_orders(type_, order):
    check(F(type_, order), INT32_0102[order], 0x01020304)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("type_", ["int64", "uint64"])
def test_int64_orders(type_, order):
    check(F(type_, order), INT64_0102[order], 0x0102030405060708)


@pytest.mark.parametrize("order, regs", [
    ("ABCD", [0x1234]), ("CDAB", [0x1234]), ("BADC", [0x3412]), ("DCBA", [0x3412]),
])
@pytest.mark.parametrize("type_", ["int16", "uint16"])
def test_16bit_orders(type_, order, regs):
    check(F(type_, order), regs, 0x1234)


@pytest.mark.parametrize("order, regs", [
    ("ABCD", [0xFFFE]), ("CDAB", [0xFFFE]), ("BADC", [0xFEFF]), ("DCBA", [0xFEFF]),
])
def test_int16_negative(order, regs):
    check(F("int16", order), regs, -2)
    check(F("uint16", order), regs, 0xFFFE)


@pytest.mark.parametrize("order, regs", [
    ("ABCD", [0xFFFF, 0xFFFE]),
    ("CDAB", [0xFFFE, 0xFFFF]),
    ("BADC", [0xFFFF, 0xFEFF]),
    ("DCBA", [0xFEFF, 0xFFFF]),
])
def test_int32_negative(order, regs):
    check(F("int32", order), regs, -2)
    check(F("uint32", order), regs, 0xFFFFFFFE)


@pytest.mark.parametrize("order, regs", [
    ("ABCD", [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE]),
    ("CDAB", [0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF]),
    ("BADC", [0xFFFF, 0xFFFF, 0xFFFF, 0xFEFF]),
    ("DCBA", [0xFEFF, 0xFFFF, 0xFFFF, 0xFFFF]),
])
def test_int64_negative(order, regs):
    check(F("int64", order), regs, -2)
    check(F("uint64", order), regs, 0xFFFFFFFFFFFFFFFE)


def test_int_extremes():
    check(F("int16"), [0x8000], -32768)
    check(F("int32"), [0x8000, 0x0000], -(2 ** 31))
    check(F("int64"), [0x7FFF, 0xFFFF, 0xFFFF, 0xFFFF], 2 ** 63 - 1)
    check(F("uint64"), [0xFFFF] * 4, 2 ** 64 - 1)


@pytest.mark.parametrize("order, regs", [
    ("ABCD", [0x3F80, 0x0000]),
    ("CDAB", [0x0000, 0x3F80]),
    ("BADC", [0x803F, 0x0000]),
    ("DCBA", [0x0000, 0x803F]),
])
def test_float32_one(order, regs):
    check(F("float32", order), regs, 1.0)


@pytest.mark.parametrize("order, regs", [
    # -2.5 = 0xC0200000
    ("ABCD", [0xC020, 0x0000]),
    ("CDAB", [0x0000, 0xC020]),
    ("BADC", [0x20C0, 0x0000]),
    ("DCBA", [0x0000, 0x20C0]),
])
def test_float32_negative(order, regs):
    check(F("float32", order), regs, -2.5)


@pytest.mark.parametrize("order, regs", [
    # 1.0 = 0x3FF0000000000000
    ("ABCD", [0x3FF0, 0, 0, 0]),
    ("CDAB", [0, 0, 0, 0x3FF0]),
    ("BADC", [0xF03F, 0, 0, 0]),
    ("DCBA", [0, 0, 0, 0xF03F]),
])
def test_float64_one(order, regs):
    check(F("float64", order), regs, 1.0)


@pytest.mark.parametrize("order, regs", [
    # 1 + 2**-52 = 0x3FF0000000000001: the low word tells the word orders apart
    ("ABCD", [0x3FF0, 0x0000, 0x0000, 0x0001]),
    ("CDAB", [0x0001, 0x0000, 0x0000, 0x3FF0]),
    ("BADC", [0xF03F, 0x0000, 0x0000, 0x0100]),
    ("DCBA", [0x0100, 0x0000, 0x0000, 0xF03F]),
])
def test_float64_low_bit(order, regs):
    check(F("float64", order), regs, 1 + 2 ** -52)


def test_float64_negative():
    # -2.5: sign 1, exponent 1024 = 0x400, mantissa .25
    check(F("float64"), [0xC004, 0, 0, 0], -2.5)


def test_float32_is_exact_double_of_the_single():
    # 0.1 is not a float32: the value is the float32 nearest to it, widened exactly
    v = decode(F("float32"), [0x3DCC, 0xCCCD])
    assert v == 0.10000000149011612


@pytest.mark.parametrize("type_, top", [
    ("float32", 0x7FC0), ("float32", 0x7F80), ("float32", 0xFF80),   # NaN, +inf, -inf
    ("float64", 0x7FF8), ("float64", 0x7FF0), ("float64", 0xFFF0),
])
def test_nan_and_inf_are_decode_errors(type_, top):
    regs = [top] + [0] * (TYPES[type_] - 1)
    with pytest.raises(DecodeError) as e:
        decode(F(type_), regs)
    assert not isinstance(e.value, RangeError)


def test_encode_can_produce_nan_for_simulators():
    regs = encode(F("float32"), math.nan)
    with pytest.raises(DecodeError):
        decode(F("float32"), regs)
    assert encode(F("float32"), math.inf) == [0x7F80, 0x0000]


# --- BCD ----------------------------------------------------------------------

def test_bcd_one_register():
    check(F("bcd"), [0x1234], 1234)
    check(F("bcd", count=1), [0x0009], 9)
    check(F("bcd", "BADC"), [0x3412], 1234)
    check(F("bcd", "CDAB"), [0x1234], 1234)


@pytest.mark.parametrize("order, regs", [
    ("ABCD", [0x1234, 0x5678]),
    ("CDAB", [0x5678, 0x1234]),
    ("BADC", [0x3412, 0x7856]),
    ("DCBA", [0x7856, 0x3412]),
])
def test_bcd_two_registers(order, regs):
    check(F("bcd", order, count=2), regs, 12345678)


def test_bcd_leading_zeros():
    check(F("bcd", count=3), [0x0000, 0x0012, 0x3456], 123456)


@pytest.mark.parametrize("regs", [[0x12A4], [0xF000], [0x000B], [0x1234, 0x567F]])
def test_bcd_bad_nibble(regs):
    with pytest.raises(DecodeError):
        decode(F("bcd", count=len(regs)), regs)


def test_bcd_encode_rejects():
    with pytest.raises(ValueError):
        encode(F("bcd"), 10000)
    with pytest.raises(ValueError):
        encode(F("bcd"), -1)


# --- intfrac ------------------------------------------------------------------

@pytest.mark.parametrize("order, regs", [
    ("ABCD", [0x0001, 0xE240, 0x0315]),
    ("CDAB", [0xE240, 0x0001, 0x0315]),
    ("BADC", [0x0100, 0x40E2, 0x1503]),
    ("DCBA", [0x40E2, 0x0100, 0x1503]),
])
def test_intfrac_default_uint32_uint16(order, regs):
    check(F("intfrac", order), regs, 123456.789)


def test_intfrac_example_from_the_brief():
    assert encode(F("intfrac"), 123456.789) == [0x0001, 0xE240, 789]
    assert decode(F("intfrac"), [0x0001, 0xE240, 789]) == 123456.789


def test_intfrac_is_float_even_when_whole():
    check(F("intfrac"), [0, 5, 0], 5.0)


def test_intfrac_fraction_limit():
    check(F("intfrac"), [0, 0, 999], 0.999)
    with pytest.raises(DecodeError):
        decode(F("intfrac"), [0, 0, 1000])
    with pytest.raises(DecodeError):
        decode(F("intfrac", frac_scale=0.01), [0, 0, 100])


def test_intfrac_other_part_types():
    f = F("intfrac", int_type="uint16", frac_type="uint32", frac_scale=1e-6)
    assert register_count(f) == 3
    # 7 + 500000e-6; 500000 = 0x0007A120
    check(f, [0x0007, 0x0007, 0xA120], 7.5)
    # int + frac literally: -5 + 0.5
    check(F("intfrac", int_type="int32"), [0xFFFF, 0xFFFB, 500], -4.5)


def test_intfrac_with_scale():
    # integer part counts litres, published as m3
    check(F("intfrac", scale=0.001), [0, 1234, 500], 1.2345)


def test_intfrac_encode_rejects():
    with pytest.raises(ValueError):
        encode(F("intfrac"), -1.5)           # uint32 integer part
    with pytest.raises(ValueError):
        encode(F("intfrac"), 2.0 ** 32)
    with pytest.raises(ValueError):
        encode(F("intfrac"), math.inf)


def test_intfrac_encode_carries_rounded_fraction():
    # 0.9996 rounds to a whole unit: the integer part carries, frac stays < 1000
    assert encode(F("intfrac"), 2.9996) == [0, 3, 0]


# --- strings ------------------------------------------------------------------

def test_string_odd_length_nul_padded():
    # "SN12345" = 53 4E 31 32 33 34 35 + NUL padding
    f = F("string", count=5)
    check(f, [0x534E, 0x3132, 0x3334, 0x3500, 0x0000], "SN12345")


@pytest.mark.parametrize("order, regs", [
    ("ABCD", [0x4142, 0x4300]),
    ("CDAB", [0x4142, 0x4300]),       # strings keep their word order
    ("BADC", [0x4241, 0x0043]),
    ("DCBA", [0x4241, 0x0043]),
])
def test_string_orders(order, regs):
    check(F("string", order, count=2), regs, "ABC")


def test_string_trailing_spaces_and_nuls_stripped():
    assert decode(F("string", count=3), [0x4142, 0x2020, 0x0000]) == "AB"
    assert decode(F("string", count=2), [0x2041, 0x0020]) == " A"
    assert decode(F("string", count=2), [0, 0]) == ""


@pytest.mark.parametrize("regs", [
    [0x4180, 0x0000],   # non-ASCII byte
    [0xFFFF, 0xFFFF],   # erased flash
    [0x4100, 0x4200],   # NUL inside the text: not a padded string
    [0x410A, 0x0000],   # control character
])
def test_string_undecodable(regs):
    with pytest.raises(DecodeError):
        decode(F("string", count=2), regs)


def test_string_encode_rejects():
    f = F("string", count=2)
    for bad in ("ABCDE", "é", "A\x00", "AB ", 12):
        with pytest.raises(ValueError):
            encode(f, bad)


# --- bits ---------------------------------------------------------------------

def test_bits():
    assert decode(F("bit", bit=3), [0b1000]) is True
    assert decode(F("bit", bit=2), [0b1000]) is False
    assert decode(F("bit", bit=0), [0x0001]) is True
    assert decode(F("bit", bit=15), [0x8000]) is True
    assert decode(F("bit", bit=15), [0x7FFF]) is False


def test_bits_byte_swapped_orders():
    assert decode(F("bit", "BADC", bit=15), [0x0080]) is True
    assert decode(F("bit", "DCBA", bit=0), [0x0100]) is True
    assert decode(F("bit", "BADC", bit=0), [0x0001]) is False
    assert decode(F("bit", "CDAB", bit=0), [0x0001]) is True


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("bit", range(16))
def test_bit_round_trip(order, bit):
    f = F("bit", order, bit=bit)
    assert decode(f, encode(f, True)) is True
    assert decode(f, encode(f, False)) is False
    assert encode(f, False) == [0]


# --- scale, offset, range -----------------------------------------------------

def test_ints_stay_int_unscaled():
    v = decode(F("uint16"), [7])
    assert v == 7 and type(v) is int


def test_scale_gives_float_with_decimal_rounding():
    v = decode(F("uint16", scale=0.01), [365])
    assert v == 3.65 and type(v) is float     # not 3.6500000000000004
    assert decode(F("int16", scale=0.1), [0xFFFF]) == -0.1
    assert encode(F("uint16", scale=0.01), 3.65) == [365]


def test_integer_scale_or_offset_from_a_model_file_still_gives_float():
    v = decode(F("uint16", scale=10), [7])
    assert v == 70.0 and type(v) is float
    v = decode(F("uint16", offset=-40), [60])
    assert v == 20.0 and type(v) is float


def test_offset():
    f = F("int16", scale=0.1, offset=-273.15)
    assert decode(f, [2931]) == pytest.approx(19.95)
    assert encode(f, 19.95) == [2931]
    assert decode(F("float32", scale=2.0, offset=1.0), [0x3F80, 0]) == 3.0


def test_encode_rounds_to_nearest_raw():
    assert encode(F("uint16", scale=0.1), 1.04) == [10]
    assert encode(F("uint16", scale=0.1), 1.06) == [11]
    assert encode(F("int32"), 2.7) == [0, 3]


def test_range_error():
    f = F("float32", min=0.0, max=100.0)
    assert decode(f, encode(f, 100.0)) == 100.0    # bounds inclusive
    assert decode(f, encode(f, 0.0)) == 0.0
    with pytest.raises(RangeError, match="out of range"):
        decode(f, [0xBF80, 0x0000])                # -1.0
    with pytest.raises(DecodeError, match="out of range"):
        decode(f, [0x42CA, 0x0000])                # 101.0


def test_range_applies_to_the_scaled_value():
    f = F("uint16", scale=0.01, min=0, max=20)
    assert decode(f, [2000]) == 20.0
    with pytest.raises(RangeError):
        decode(f, [2001])
    with pytest.raises(RangeError):
        decode(F("bcd", max=999), [0x1000])
    with pytest.raises(RangeError):
        decode(F("intfrac", max=10), [0, 10, 1])


def test_encode_ignores_min_max_so_simulators_can_lie():
    f = F("uint16", max=10)
    assert encode(f, 11) == [11]


# --- bad registers and bad fields ----------------------------------------------

@pytest.mark.parametrize("type_", [t for t in TYPES if t not in ("string",)])
def test_wrong_register_count(type_):
    f = F(type_, bit=0 if type_ == "bit" else None)
    n = register_count(f)
    for regs in ([0] * (n - 1), [0] * (n + 1)):
        with pytest.raises(DecodeError):
            decode(f, regs)


def test_wrong_register_count_string():
    with pytest.raises(DecodeError):
        decode(F("string", count=2), [0x4142])


@pytest.mark.parametrize("bad", [65536, -1, 1.5, None, "1"])
@pytest.mark.parametrize("type_", ["uint16", "int32", "float32", "bcd", "intfrac", "string", "bit"])
def test_registers_must_be_0_to_65535(type_, bad):
    f = F(type_, count=2 if type_ == "string" else None, bit=0 if type_ == "bit" else None)
    regs = [0] * register_count(f)
    regs[-1] = bad
    with pytest.raises(DecodeError):
        decode(f, regs)


def test_register_count():
    for t, n in TYPES.items():
        if n:
            assert register_count(F(t)) == n
    assert register_count(F("bcd")) == 1
    assert register_count(F("bcd", count=3)) == 3
    assert register_count(F("string", count=8)) == 8
    assert register_count(F("intfrac")) == 3
    assert register_count(F("intfrac", int_type="uint16")) == 2
    assert register_count(F("intfrac", frac_type="uint32")) == 4


@pytest.mark.parametrize("field", [
    F("float16"),
    F("string"),                                   # no count
    F("bcd", count=0),
    F("intfrac", int_type="int64"),
    F("intfrac", frac_type="int16"),
])
def test_bad_field_definitions_are_value_errors_not_decode_errors(field):
    with pytest.raises(ValueError) as e:
        register_count(field)
    assert not isinstance(e.value, DecodeError)


@pytest.mark.parametrize("field", [F("uint16", "ABDC"), F("bit"), F("bit", bit=16), F("string", "XY", count=1)])
def test_bad_field_in_decode(field):
    with pytest.raises(ValueError) as e:
        decode(field, [0])
    assert not isinstance(e.value, DecodeError)


@pytest.mark.parametrize("type_, value", [
    ("uint16", 65536), ("uint16", -1), ("int16", 32768), ("int16", -32769),
    ("uint32", 2 ** 32), ("int64", 2 ** 63), ("uint64", -1),
    ("float32", 1e39), ("uint16", math.nan), ("uint16", "7"), ("float32", "1.0"),
    ("bit", 2), ("uint16", True),
])
def test_encode_value_does_not_fit(type_, value):
    with pytest.raises(ValueError):
        encode(F(type_, bit=0 if type_ == "bit" else None), value)


# --- round trips, every type x order --------------------------------------------

regs16 = st.integers(0, 0xFFFF)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("type_", ["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"])
@given(data=st.data())
def test_fixed_types_register_round_trip(type_, order, data):
    regs = data.draw(st.lists(regs16, min_size=TYPES[type_], max_size=TYPES[type_]))
    f = F(type_, order)
    try:
        v = decode(f, regs)
    except DecodeError:
        assert type_.startswith("float")       # only NaN/inf patterns may fail
        return
    assert encode(f, v) == regs


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("type_, lo, hi", [
    ("int16", -(2 ** 15), 2 ** 15 - 1), ("uint16", 0, 2 ** 16 - 1),
    ("int32", -(2 ** 31), 2 ** 31 - 1), ("uint32", 0, 2 ** 32 - 1),
    ("int64", -(2 ** 63), 2 ** 63 - 1), ("uint64", 0, 2 ** 64 - 1),
])
@given(data=st.data())
def test_int_value_round_trip(type_, lo, hi, order, data):
    v = data.draw(st.integers(lo, hi))
    f = F(type_, order)
    assert decode(f, encode(f, v)) == v


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("type_, lo, hi", [
    ("int16", -(2 ** 15), 2 ** 15 - 1), ("uint16", 0, 2 ** 16 - 1),
    ("int32", -(2 ** 31), 2 ** 31 - 1), ("uint32", 0, 2 ** 32 - 1),
    # a double carries 53 bits: scaled 64-bit raws are exact only below that
    ("int64", -(2 ** 50), 2 ** 50), ("uint64", 0, 2 ** 50),
])
@pytest.mark.parametrize("scale, offset", [(0.01, 0.0), (0.1, -40.0), (0.001, 0.0), (2.5, 0.0)])
@given(data=st.data())
def test_scaled_int_register_round_trip(type_, lo, hi, order, scale, offset, data):
    raw = data.draw(st.integers(lo, hi))
    plain = encode(F(type_, order), raw)
    f = F(type_, order, scale=scale, offset=offset)
    assert encode(f, decode(f, plain)) == plain


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("type_", ["float32", "float64"])
@given(v=st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_float_value_round_trip(type_, order, v):
    f = F(type_, order)
    assert decode(f, encode(f, v)) == v


@pytest.mark.parametrize("order", ORDERS)
@given(data=st.data())
def test_float64_value_round_trip_full_width(order, data):
    v = data.draw(st.floats(allow_nan=False, allow_infinity=False))
    f = F("float64", order)
    assert decode(f, encode(f, v)) == v


@pytest.mark.parametrize("order", ORDERS)
@given(count=st.integers(1, 4), data=st.data())
def test_bcd_round_trip(order, count, data):
    v = data.draw(st.integers(0, 10 ** (4 * count) - 1))
    f = F("bcd", order, count=count)
    assert decode(f, encode(f, v)) == v


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("int_type, lo, hi", [
    ("uint16", 0, 2 ** 16 - 1), ("uint32", 0, 2 ** 32 - 1), ("int32", -(2 ** 31), 2 ** 31 - 1),
])
@pytest.mark.parametrize("frac_type", ["uint16", "uint32"])
@pytest.mark.parametrize("frac_scale", [0.001, 0.01, 0.0001])
@given(data=st.data())
def test_intfrac_register_round_trip(order, int_type, lo, hi, frac_type, frac_scale, data):
    ip = data.draw(st.integers(lo, hi))
    fp = data.draw(st.integers(0, round(1 / frac_scale) - 1))
    f = F("intfrac", order, int_type=int_type, frac_type=frac_type, frac_scale=frac_scale)
    regs = encode(F(int_type, order), ip) + encode(F(frac_type, order), fp)
    assert encode(f, decode(f, regs)) == regs


@pytest.mark.parametrize("order", ORDERS)
@given(count=st.integers(1, 8), data=st.data())
def test_string_round_trip(order, count, data):
    text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=2 * count)
    v = data.draw(text.filter(lambda s: not s.endswith(" ")))
    f = F("string", order, count=count)
    assert decode(f, encode(f, v)) == v


# --- decode_all -----------------------------------------------------------------

def entries(regs):
    return {(d["type"], d["order"]): d for d in decode_all(regs)}


def test_decode_all_one_register():
    got = entries([0x1234])
    assert set(got) == {
        ("int16", "ABCD"), ("int16", "BADC"), ("uint16", "ABCD"), ("uint16", "BADC"),
        ("bcd", "ABCD"), ("bcd", "BADC"), ("string", "ABCD"), ("string", "BADC"),
    }
    assert got[("uint16", "BADC")]["value"] == 0x3412
    assert got[("bcd", "ABCD")]["value"] == 1234
    assert got[("bcd", "BADC")]["value"] == 3412
    assert got[("string", "ABCD")]["error"]


def test_decode_all_float_pattern():
    regs = [0x3F80, 0x0000]
    got = entries(regs)
    assert len(got) == 4 + 3 * 4 + 4 + 2
    assert got[("float32", "ABCD")]["value"] == 1.0
    assert got[("uint32", "CDAB")]["value"] == 0x00003F80
    assert not any(t.endswith("64") for t, _ in got)


def test_decode_all_four_registers():
    regs = INT64_0102["CDAB"]
    got = entries(regs)
    assert len(got) == 4 + 3 * 4 + 3 * 4 + 4 + 2
    assert got[("int64", "CDAB")]["value"] == 0x0102030405060708
    assert got[("uint32", "CDAB")]["value"] == 0x05060708
    assert got[("bcd", "ABCD")]["value"] == 708050603040102
    assert got[("string", "ABCD")]["error"]
    for d in got.values():
        assert set(d) in ({"type", "order", "value"}, {"type", "order", "error"})


def test_decode_all_three_registers_has_no_64_bit():
    got = entries([0x4142, 0x4344, 0x4500])
    assert not any(t.endswith("64") for t, _ in got)
    assert got[("string", "ABCD")]["value"] == "ABCDE"
    assert got[("bcd", "ABCD")]["value"] == 414243444500
    assert got[("bcd", "CDAB")]["value"] == 450043444142
    assert got[("string", "BADC")]["error"]      # "BADC\x00E": NUL inside the text


def test_decode_all_reports_errors_instead_of_raising():
    nan = entries([0x7FC0, 0x0000])[("float32", "ABCD")]
    assert set(nan) == {"type", "order", "error"}
    bad = decode_all([70000, 1])
    assert bad and all("error" in d for d in bad)
    assert decode_all([]) == []


def test_decode_all_order_is_stable():
    assert decode_all([1, 2, 3, 4]) == decode_all([1, 2, 3, 4])
    kinds = [d["type"] for d in decode_all([1, 2, 3, 4])]
    assert kinds[0] == "int16" and kinds[-1] == "string"
