"""CRC-16/MODBUS for RTU frames and CRC-32 (IEEE) for flash records.

Both are table-driven with tables built once at import: the RTU CRC runs on
every received frame in the main loop, and a bit-by-bit loop costs about
eight times as much on the RP2040.
"""

from miu.compat import const

_POLY16 = const(0xA001)       # 0x8005 reflected
_POLY32 = const(0xEDB88320)   # 0x04C11DB7 reflected


def _table16() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY16 if c & 1 else c >> 1
        table.append(c)
    return table


def _table32() -> list[int]:
    # Nibble table: 16 entries instead of 256 keeps a kilobyte of RAM free;
    # flash records are short and rare.
    table = []
    for i in range(16):
        c = i
        for _ in range(4):
            c = (c >> 1) ^ _POLY32 if c & 1 else c >> 1
        table.append(c)
    return table


_T16 = _table16()
_T32 = _table32()


def crc16(data: bytes | bytearray | memoryview, n: int = -1) -> int:
    """CRC-16/MODBUS of the first n bytes (all when n < 0); the frame sends it low byte first."""
    if n < 0:
        n = len(data)
    c = 0xFFFF
    t = _T16
    for i in range(n):
        c = (c >> 8) ^ t[(c ^ data[i]) & 0xFF]
    return c


def crc32(data: bytes | bytearray | memoryview, n: int = -1) -> int:
    """CRC-32 (as zlib.crc32) of the first n bytes (all when n < 0)."""
    if n < 0:
        n = len(data)
    c = 0xFFFFFFFF
    t = _T32
    for i in range(n):
        c ^= data[i]
        c = (c >> 4) ^ t[c & 0x0F]
        c = (c >> 4) ^ t[c & 0x0F]
    return c ^ 0xFFFFFFFF
