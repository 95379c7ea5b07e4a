"""Power-fail-safe, wear-levelled record store.

The medium is split into `slots` fixed-size slots. Each save writes the whole
record to the slot after the newest one (round robin, so every slot wears
equally) with a sequence number one higher and a CRC-32 over the record.
Loading takes the valid slot with the highest sequence number. A power cut in
the middle of a write can only damage the slot being written, which held the
oldest record; the newest good record is still in another slot.

Slot layout (little-endian):
  0  2  magic b"MU"
  2  4  sequence number (uint32; 2**32 saves is centuries at one a minute)
  6  1  payload length
  7  n  payload
  7+n 4 CRC-32 of bytes 0 .. 7+n
"""

import struct

from miu.compat import TYPE_CHECKING, const
from miu.crc import crc32

if TYPE_CHECKING:
    from miu.hal import Medium

_MAGIC0 = const(0x4D)  # "M"
_MAGIC1 = const(0x55)  # "U"
_HEADER = const(7)
_TRAILER = const(4)
SAVE_ATTEMPTS = const(3)   # bounded: a failing slot is skipped, then we give up until the next save


class FlashStore:
    """Record store on a `Medium` (read(offset, n) / write(offset, data))."""

    def __init__(self, medium: "Medium", slots: int = 8, slot_size: int = 64) -> None:
        if slots < 2:
            raise ValueError("need two slots or more to survive a torn write")
        self.medium = medium
        self.slots = slots
        self.slot_size = slot_size
        self.seq = 0          # sequence number of the newest good record, 0 = none
        self.slot = slots - 1  # slot of the newest good record; the next save goes to slot + 1
        self.saves = 0
        self.failures = 0      # writes that raised or did not read back equal
        self._buf = bytearray(slot_size)

    @property
    def max_payload(self) -> int:
        return min(255, self.slot_size - _HEADER - _TRAILER)

    def load(self) -> bytes | None:
        """Payload of the newest valid record, or None on a blank or unreadable medium."""
        best = None
        best_seq = -1
        for i in range(self.slots):
            try:
                raw = self.medium.read(i * self.slot_size, self.slot_size)
            except OSError:
                continue
            n = self._valid(raw)
            if n < 0:
                continue
            seq = struct.unpack_from("<I", raw, 2)[0]
            if seq > best_seq:
                best_seq = seq
                best = bytes(raw[_HEADER:_HEADER + n])
                self.slot = i
        if best is None:
            self.seq = 0
            self.slot = self.slots - 1
            return None
        self.seq = best_seq
        return best

    def _valid(self, raw: bytes) -> int:
        # Payload length of a good record, -1 for a blank, torn or foreign slot.
        if len(raw) < _HEADER + _TRAILER or raw[0] != _MAGIC0 or raw[1] != _MAGIC1:
            return -1
        n = raw[6]
        end = _HEADER + n
        if end + _TRAILER > len(raw):
            return -1
        if crc32(raw, end) != struct.unpack_from("<I", raw, end)[0]:
            return -1
        return n

    def save(self, payload: bytes | bytearray) -> bool:
        """Write payload as the newest record. False when every attempt failed.

        OSError from the medium counts as a failed attempt and the next slot is
        tried; anything else (a simulated power cut) propagates.
        """
        n = len(payload)
        if n > self.max_payload:
            raise ValueError("payload larger than a slot")
        buf = self._buf
        seq = self.seq + 1
        buf[0] = _MAGIC0
        buf[1] = _MAGIC1
        struct.pack_into("<I", buf, 2, seq)
        buf[6] = n
        buf[_HEADER:_HEADER + n] = payload
        end = _HEADER + n
        struct.pack_into("<I", buf, end, crc32(buf, end))
        for i in range(end + _TRAILER, self.slot_size):
            buf[i] = 0xFF
        slot = self.slot
        for _ in range(SAVE_ATTEMPTS):
            slot = (slot + 1) % self.slots
            off = slot * self.slot_size
            try:
                self.medium.write(off, buf)
                ok = self.medium.read(off, self.slot_size) == bytes(buf)
            except OSError:
                ok = False
            if ok:
                self.seq = seq
                self.slot = slot
                self.saves += 1
                return True
            self.failures += 1
        return False


class FileMedium:
    """A medium in one file of the board's filesystem (LittleFS on the rp2 port).

    The file is kept open; flush() after each write makes LittleFS commit it,
    which its copy-on-write design does atomically per block.
    """

    def __init__(self, path: str, size: int) -> None:
        self.size = size
        try:
            f = open(path, "r+b")
        except OSError:
            f = open(path, "w+b")
        f.seek(0, 2)
        have = f.tell()
        if have < size:
            # Erased-flash content: a blank slot fails the magic check.
            f.write(b"\xff" * (size - have))
            f.flush()
        self._f = f

    def read(self, offset: int, n: int) -> bytes:
        self._f.seek(offset)
        data = self._f.read(n)
        return data if data is not None else b""

    def write(self, offset: int, data: bytes | bytearray) -> None:
        self._f.seek(offset)
        self._f.write(data)
        self._f.flush()

    def close(self) -> None:
        self._f.close()
