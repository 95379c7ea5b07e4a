"""Reading an RTU answer in a few reads, not one per character.

A serial port that hands characters over as they come wakes its reader for
each one: at 9600 baud a 28-register answer (61 bytes) is 61 wake-ups, and
each is a read, pymodbus' frame hunt over everything received so far, and
our own bookkeeping. On a slow line that was most of the gateway's CPU per
poll (docs/performance.md). But the request says how long its answer is
(5 + 2 x count bytes for a register read), and a line carries no more than
one character per character time. So once the answer has begun, the reader
stands down until shortly before the rest can be there; the last characters
are read as they come, so the t3.5 silence after the answer is still timed
from its true end. And each read is one os.read of the port (pyserial's
read wraps two selects around it). A request is written at once, not on
the loop's next turn as pymodbus does (Pacing._write says why).

Nothing is lost or reordered: the bytes wait in the kernel's buffer. A new
request, the end of the wait, a timeout (`release`) and a close all end a
pause, and the wait never runs past the request's own timeout.

When it stands down, and why that cannot make an honest answer late:
  - only after a small read (at most SMALL_READ characters). A port or USB
    adapter that buffers hands over bigger pieces and needs no help; and a
    piece of k characters can only have waited about k character times
    since its last one came, which the wait allows for;
  - only for what cannot have arrived yet: the length the request asks for,
    or the shorter one the answer's header claims once it is in (a junk
    byte in front only makes the wait shorter), less TAIL_CHARS characters
    and a timer's slack. An exception answer (5 bytes) is read as it comes.
    A hostile answer shorter than asked (a lying byte count, another unit's
    frame) may be read a few milliseconds late: it is judged the same;
  - only when that saves real wake-ups (MIN_PAUSE_S). At 115200 baud a whole
    answer takes 5 ms, and the wire emulator already hands it over in a few
    pieces: the fast line is left as it was.
"""
from __future__ import annotations

import os
import time

from serial import SerialException

SMALL_READ = 4          # characters: a bigger read means the port batches already
TAIL_CHARS = 1          # then read as they come, to time the silence after the answer
TIMER_SLACK_S = 0.0015  # an asyncio timer fires up to 1 ms late (epoll's resolution)
MIN_PAUSE_S = 0.005
TIMEOUT_MARGIN_S = 0.005
READ_MAX = 1024


def answer_length(request: bytes) -> int | None:
    """Bytes in the RTU answer to this request frame, or None when there is
    none to expect (a broadcast) or its length is not known here."""
    if len(request) < 8 or request[0] == 0:
        return None
    fc = request[1]
    if fc in (1, 2, 3, 4):
        count = int.from_bytes(request[4:6], "big")
        return 5 + (2 * count if fc in (3, 4) else (count + 7) // 8)
    if fc in (5, 6, 15, 16):
        return 8
    return None


def frame_length(b: bytes, i: int = 0) -> int | None:
    """Bytes in the RTU answer frame that starts at b[i], by its layout: an
    exception is 5 bytes, FC01-04 5 + byte count, FC05/06/15/16 8. None for
    a layout not known here. FC01-04 needs the byte count in b."""
    f = b[i + 1]
    if f & 0x80:
        return 5
    if f in (1, 2, 3, 4):
        return 5 + b[i + 2]
    if f in (5, 6, 15, 16):
        return 8
    return None


class Pacing:
    """The reader and writer of one bus's serial port while it is open. `sent` and
    `received` are called from the hooks in poll/answer.py."""

    def __init__(self, char_s: float, timeout_s: float) -> None:
        self.char_s = char_s
        self.timeout_s = timeout_s
        self.pauses = 0          # times the reader stood down (tests)
        self._need: int | None = None
        self._deadline = 0.0
        self._transport = None
        self._serial = None
        self._fd = -1
        self._timer = None       # while standing down
        self._queue_write = None  # pymodbus' own write, for what the port does not take

    def sent(self, request: bytes, transport) -> None:
        self.release()
        self._own(transport)
        self._need = answer_length(request) if self._serial is not None else None
        self._deadline = time.monotonic() + self.timeout_s - TIMEOUT_MARGIN_S

    def _own(self, transport) -> None:
        """Take over the port's reader from pymodbus' transport (once per
        port opened): a posix pyserial port only, whose fd is non-blocking."""
        serial = getattr(transport, "sync_serial", None)
        if serial is self._serial:
            return
        fd = getattr(serial, "fd", None)
        if not isinstance(fd, int) or not hasattr(transport, "intern_protocol"):
            self._transport = self._serial = None
            return
        self._transport, self._serial, self._fd = transport, serial, fd
        transport.async_loop.add_reader(fd, self._read)
        self._queue_write = transport.write
        transport.write = self._write

    def _write(self, data: bytes) -> None:
        """Hand a request to the port at once. pymodbus' transport waits for
        the loop's next turn, after what is queued on this one: the last
        reading's processing (Bus._finish), so the line waited for it. A
        request is a few bytes and the port's buffer is empty between
        requests; what it does not take goes pymodbus' way."""
        t = self._transport
        if t is None or t.sync_serial is not self._serial or t.intern_write_buffer:
            self._queue_write(data)
            return
        try:
            n = os.write(self._fd, data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            t.close(exc=SerialException(f"write failed: {exc}"))
            return
        if n < len(data):
            self._queue_write(data[n:])

    def _read(self) -> None:
        t = self._transport
        if t is None or t.sync_serial is not self._serial:
            return
        try:
            data = os.read(self._fd, READ_MAX)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            t.close(exc=SerialException(f"read failed: {exc}"))
            return
        if not data:   # what a vanished USB adapter looks like (pyserial says the same)
            t.close(exc=SerialException("device reports readiness to read but returned no data"))
            return
        t.intern_protocol.data_received(data)

    def received(self, rx: bytearray, chunk: int) -> None:
        """After a read of `chunk` bytes, `rx` being all of the answer so far."""
        need = self._need
        if need is None or self._timer is not None or chunk > SMALL_READ or len(rx) < 2:
            return
        if rx[1] & 0x80:
            return                                   # an exception answer: 5 bytes, as they come
        if len(rx) >= 3 or rx[1] not in (1, 2, 3, 4):   # else the request's length, until the count is in
            n = frame_length(rx)
            if n is None:
                return                               # a layout not known here: read as it comes
            need = min(need, n)
        now = time.monotonic()
        wait = (need - len(rx) - TAIL_CHARS - chunk) * self.char_s - TIMER_SLACK_S
        wait = min(wait, self._deadline - now)
        if wait < MIN_PAUSE_S or self._transport.sync_serial is not self._serial:
            return
        loop = self._transport.async_loop
        loop.remove_reader(self._fd)
        self._timer = loop.call_later(wait, self.release)
        self.pauses += 1

    def release(self, read: bool = False) -> None:
        """Read again: now, and with `read` take in what is waiting at once
        (a timed-out request is judged on every byte that came)."""
        timer, self._timer = self._timer, None
        if read:
            self._need = None
        if timer is None:
            return
        timer.cancel()
        t = self._transport
        if t is None or t.sync_serial is not self._serial:
            return                                   # closed meanwhile: the next port starts afresh
        t.async_loop.add_reader(self._fd, self._read)
        if read:
            self._read()
