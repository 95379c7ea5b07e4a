"""Is this the answer to the request? A frame with a valid CRC is not enough:
a slave answering FC03 with an FC04 frame of the same size, another unit's
frame, a lying byte count or a second answer all pass a CRC check and would
otherwise be published as good values. These checks read the bytes that came
back for one request (the bus task records them) and what pymodbus made of them.

What pymodbus 3.16 does with hostile answers (tested with the real client):
a wrong function code is accepted as the answer; a wrong unit id is dropped,
so the read times out with the frame in hand; it takes the registers a byte
count gives and ignores a stray byte; a second answer is dropped, or taken
for the next request if it arrives while that one is pending.
"""
from __future__ import annotations

import functools
import struct
import time

from pymodbus.framer.rtu import FramerRTU

from .pacing import Pacing, frame_length


class Received:
    """The bytes received for the current request, as they came off the
    port: if a request then times out with bytes in hand, the answer was
    garbled (crc) or another frame (mismatch), not missing; and when the
    last of them came, for the silence a serial line owes before the next
    request.

    pymodbus hands its trace hook its whole receive buffer again at every
    chunk, so the raw chunks are taken at the protocol's data_received
    instead (one read per chunk, no copy of what came before)."""

    def __init__(self, pacing: Pacing | None = None) -> None:
        self.bytes = bytearray()
        self.last_mono = 0.0
        self.reads = 0          # reads that brought bytes (diag, tests, bench)
        self.pacing = pacing    # RTU only: fewer reads per answer (poll/pacing.py)
        self._ctx = None

    def data(self) -> bytes:
        return bytes(self.bytes)

    def take_waiting(self) -> None:
        """Read now whatever waits in the port (a request timed out while
        the reader stood down): a timeout is judged on every byte that came."""
        if self.pacing is not None:
            self.pacing.release(read=True)

    def trace(self, sending: bool, data: bytes) -> bytes:
        """pymodbus' trace_packet hook: a request going out starts afresh."""
        if sending:
            self.bytes.clear()
            if self.pacing is not None:
                self.pacing.sent(data, self._ctx.transport)
        return data

    def attach(self, client) -> None:
        ctx = self._ctx = client.ctx
        received, decode = ctx.data_received, ctx.callback_data

        pacing = self.pacing

        def data_received(data: bytes) -> None:
            self.bytes += data
            if len(self.bytes) > RX_KEEP:  # a flood: the answer, if any, is in the newest bytes
                del self.bytes[:-RX_KEEP]
            self.last_mono = time.monotonic()
            self.reads += 1
            received(data)
            if pacing is not None:
                pacing.received(self.bytes, len(data))

        def callback_data(data: bytes, addr=None) -> int:
            # pymodbus 3.16 raises out of its transport callback on a sound
            # frame it cannot decode (function byte 0x80): the traceback
            # lands in the event loop's handler, the bytes stay stuck, and
            # on TCP the connection drops. Drop the bytes instead: the
            # request times out, and the bus counts the frame as a mismatch.
            try:
                return decode(data, addr)
            except Exception:  # noqa: BLE001 - whatever the decoder raised
                return len(data)

        ctx.data_received = data_received
        ctx.callback_data = callback_data


def header_mismatch(rr, unit: int, fc: int) -> str | None:
    """Why a decoded answer is not from this unit and function, or None."""
    if (rr.function_code & 0x7F) != fc or rr.dev_id != unit:
        return f"function {rr.function_code & 0x7F} unit {rr.dev_id}"
    return None


@functools.lru_cache(maxsize=None)   # one per register count: 1..125
def _registers(n: int) -> struct.Struct:
    return struct.Struct(f">{n}H")


def wire_mismatch(rx: bytes, unit: int, fc: int, regs: list[int], rtu: bool) -> str | None:
    """The frame on the wire must be the honest one for `regs` (pymodbus
    ignores a stray byte), and on a serial line the only answer this unit
    gave (two slaves on one address, or a stale answer taken for this one:
    neither can be trusted). Modbus/TCP has transaction ids: pymodbus drops
    a stale or repeated answer there."""
    body = bytes((unit, fc, 2 * len(regs))) + _registers(len(regs)).pack(*regs)
    if not rtu:
        return None if len(body).to_bytes(2, "big") + body in rx else "byte count"
    if len(rx) == len(body) + 2 and rx.startswith(body):
        return None   # the one frame pymodbus took, whose CRC it checked
    honest = body + FramerRTU.compute_CRC(body).to_bytes(2, "big")
    frames = rtu_frames(rx, unit, answered=True)
    if honest not in frames:
        return "byte count"
    if len(frames) > 1:
        return "second answer"
    return None


def stray_answer(rx: bytes, unit: int, fc: int, count: int, rtu: bool) -> bool:
    """After a timeout with bytes in hand: were they a sound frame that does
    not answer the request (a mismatch), rather than a garbled line (crc)?"""
    if not rtu:   # one whole Modbus/TCP frame: its MBAP length is the rest
        return len(rx) >= 8 and rx[2:4] == b"\0\0" and int.from_bytes(rx[4:6], "big") == len(rx) - 6
    shape = (unit, fc, 2 * count)
    return any(tuple(f[:3]) != shape and tuple(f[:2]) != (unit, 0x80 | fc)
               for f in rtu_frames(rx, unit, answered=False))


# Bytes of a read's answer scanned for frames: two of the longest RTU
# frames; and kept, at most, of what came in for one request.
RX_SCAN = 600
RX_KEEP = 2048


def rtu_frames(rx: bytes, unit: int, answered: bool) -> list[bytes]:
    """CRC-valid RTU frames in the bytes received for one request, found
    by their own layout (frame_length). Once pymodbus has `answered`, only
    this unit's frames count. Without an answer, any unit's count, and a
    frame of this unit with a function pymodbus cannot decode runs to the
    end of the bytes (a slave's answer ends the traffic). Bounded: the last
    RX_SCAN bytes."""
    rx = rx[-RX_SCAN:]
    out = []
    i = 0
    while i + 4 <= len(rx):
        if answered and rx[i] != unit:
            n = 0
        elif (known := frame_length(rx, i)) is not None:
            n = known
        else:
            n = len(rx) - i if rx[i] == unit and not answered else 0
        adu = rx[i:i + n]
        if n >= 4 and len(adu) == n \
                and FramerRTU.check_CRC(adu[:-2], int.from_bytes(adu[-2:], "big")):
            out.append(adu)
            i += n
        else:
            i += 1
    return out
