"""Modbus RTU framing for the line tools (noise.py, hostile.py, relay.py).

The simulated devices are served by pymodbus, which frames its own bytes;
these helpers are for code that sits on the wire and must find where a
request or an answer ends without trusting either side.
"""
from __future__ import annotations

from dataclasses import dataclass


def _table() -> list[int]:
    out = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        out.append(crc)
    return out


_CRC_TABLE = _table()


def crc16(data: bytes) -> bytes:
    """The Modbus CRC of data, as it goes on the wire (low byte first)."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ b) & 0xFF]
    return bytes((crc & 0xFF, crc >> 8))


def frame(body: bytes) -> bytes:
    """body (unit, function, data) with its CRC."""
    return bytes(body) + crc16(body)


def crc_ok(adu: bytes) -> bool:
    return len(adu) >= 4 and crc16(adu[:-2]) == adu[-2:]


@dataclass(frozen=True)
class Request:
    """A master's request as seen on the line."""

    adu: bytes

    @property
    def unit(self) -> int:
        return self.adu[0]

    @property
    def function(self) -> int:
        return self.adu[1]

    @property
    def address(self) -> int:
        return int.from_bytes(self.adu[2:4], "big")

    @property
    def count(self) -> int:
        """Registers asked for (FC03/FC04) or written (FC16); 1 for FC06."""
        if self.function == 6:
            return 1
        return int.from_bytes(self.adu[4:6], "big")

    @property
    def is_read(self) -> bool:
        return self.function in (3, 4)


def request_length(buf: bytes) -> int | None:
    """Length of the request at the start of buf: 0 if more bytes are needed,
    None if its function has no fixed layout here (the caller waits for the
    line to go quiet instead)."""
    if len(buf) < 2:
        return 0
    fc = buf[1]
    if fc in (1, 2, 3, 4, 5, 6):
        return 8
    if fc in (15, 16):
        return 9 + buf[6] if len(buf) >= 7 else 0
    return None


def response_length(buf: bytes) -> int | None:
    """Length of the answer at the start of buf, by its own function byte:
    0 if more bytes are needed, None if the function has no layout here."""
    if len(buf) < 2:
        return 0
    fc = buf[1]
    if fc & 0x80:
        return 5
    if fc in (1, 2, 3, 4):
        return 5 + buf[2] if len(buf) >= 3 else 0
    if fc in (5, 6, 15, 16):
        return 8
    return None
