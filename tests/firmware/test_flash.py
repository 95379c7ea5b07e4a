"""FlashStore: slots, sequence numbers, CRC, torn writes, retries; FileMedium."""

import zlib

import pytest

from miu.crc import crc16, crc32
from miu.flash import SAVE_ATTEMPTS, FileMedium, FlashStore
from miu.sim import PowerCut, SimFlash


def test_crc32_matches_zlib():
    for data in (b"", b"123456789", bytes(range(256)), b"\xff" * 70):
        assert crc32(data) == zlib.crc32(data)
    assert crc32(b"123456789xx", 9) == 0xCBF43926


def test_crc16_modbus_check_value():
    assert crc16(b"123456789") == 0x4B37
    assert crc16(bytes.fromhex("010300000001")) == 0x0A84   # sent as 84 0A


def test_blank_medium_loads_none():
    st = FlashStore(SimFlash(512))
    assert st.load() is None
    assert st.seq == 0


def test_round_robin_and_newest_wins():
    f = SimFlash(512)
    st = FlashStore(f)
    for i in range(20):
        assert st.save(bytes([i]) * 10)
    again = FlashStore(f)
    assert again.load() == bytes([19]) * 10
    assert again.seq == 20
    assert again.slot == 19 % 8
    assert sorted(f.slot_writes.values()) == [2, 2, 2, 2, 3, 3, 3, 3]


def test_continues_after_reload():
    f = SimFlash(512)
    st = FlashStore(f)
    for i in range(5):
        st.save(bytes([i]))
    st2 = FlashStore(f)
    st2.load()
    st2.save(b"next")
    st3 = FlashStore(f)
    assert st3.load() == b"next"
    assert st3.seq == 6


@pytest.mark.parametrize("keep", range(0, 64))
def test_torn_write_at_every_byte_keeps_last_good(keep):
    f = SimFlash(512)
    st = FlashStore(f)
    for i in range(11):                       # the next save overwrites slot 3, the oldest
        st.save(bytes([i]) * 40)
    f.tear_next_write(keep)
    with pytest.raises(PowerCut):
        st.save(b"\xee" * 40)
    got = FlashStore(f).load()
    # Only a write that got through the whole record (CRC included) counts.
    assert got in (bytes([10]) * 40, b"\xee" * 40)
    assert (got == b"\xee" * 40) == (keep >= 7 + 40 + 4)


def test_corrupt_newest_slot_falls_back():
    f = SimFlash(512)
    st = FlashStore(f)
    st.save(b"old")
    st.save(b"new")
    f.data[st.slot * 64 + 8] ^= 0x01
    assert FlashStore(f).load() == b"old"


def test_failed_attempt_moves_to_next_slot():
    f = SimFlash(512)
    st = FlashStore(f)
    st.save(b"a")
    f.fail_next_writes(1)
    assert st.save(b"b")
    assert st.failures == 1
    assert st.slot == 2                     # slot 1 skipped
    assert FlashStore(f).load() == b"b"


def test_all_attempts_failing_returns_false_and_keeps_old():
    f = SimFlash(512)
    st = FlashStore(f)
    st.save(b"a")
    f.fail_next_writes(SAVE_ATTEMPTS)
    assert not st.save(b"b")
    assert st.failures == SAVE_ATTEMPTS
    assert FlashStore(f).load() == b"a"
    assert st.save(b"c")                    # the medium recovered
    assert FlashStore(f).load() == b"c"


def test_write_that_does_not_read_back_is_a_failure():
    class Stuck(SimFlash):
        def write(self, offset, data):
            if offset == 64:
                return                      # silently ignored: a worn-out block
            super().write(offset, data)

    f = Stuck(512)
    st = FlashStore(f)
    st.save(b"a")
    assert st.save(b"b")
    assert st.failures == 1
    assert FlashStore(f).load() == b"b"


def test_oversized_payload_rejected():
    st = FlashStore(SimFlash(512))
    with pytest.raises(ValueError):
        st.save(bytes(54))
    assert st.max_payload == 53


def test_needs_two_slots():
    with pytest.raises(ValueError):
        FlashStore(SimFlash(64), slots=1)


def test_file_medium_roundtrip(tmp_path):
    path = str(tmp_path / "miu.dat")
    med = FileMedium(path, 512)
    assert med.read(0, 4) == b"\xff" * 4
    st = FlashStore(med)
    st.save(b"hello")
    med.close()
    med2 = FileMedium(path, 512)
    assert FlashStore(med2).load() == b"hello"
    med2.close()


def test_file_medium_extends_short_file(tmp_path):
    path = tmp_path / "miu.dat"
    path.write_bytes(b"\x00" * 10)
    med = FileMedium(str(path), 512)
    assert path.stat().st_size == 512
    assert FlashStore(med).load() is None
    med.close()
