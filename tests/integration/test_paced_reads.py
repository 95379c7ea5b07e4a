"""An RTU answer is read in a few reads, not one per character (issue 13:
CPU per poll on RTU 9600), and that changes no outcome.

Real parts: the baud-accurate wire emulator (simulators/wire.py) between
two real ptys at 9600 8N1 (a pty refuses parity), a raw slave on its far end that answers each
request with the bytes a case gives, and Bus._request with the real pymodbus
serial client. The emulator lets each character through only when a real
line could have carried it, so without pacing every character of an answer
is one read.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import select
import threading
import time
import tty

import pytest

from gateway.poll.bus import Bus
from gateway.poll.finetimer import FineTimer
from gateway.site.config import BusCfg
from protocols.modbus.plan import Read
from simulators.line import LineSpec
from simulators.wire import WireEmulator
from simulators.rtu import frame

pytestmark = pytest.mark.integration

BAUD = 9600
COUNT = 28                                    # 61-byte answer, 70 ms on the line
REGS = list(range(100, 100 + COUNT))
READ = Read("holding", 0, COUNT, ())
TIMEOUT_S = 0.4


def honest(unit: int = 1, fc: int = 3, regs=REGS) -> bytes:
    return frame(bytes([unit, fc, 2 * len(regs)]) + b"".join(r.to_bytes(2, "big") for r in regs))


class Slave(threading.Thread):
    """Answers each request on the line's far end with the next queued bytes."""

    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        self.answers: list[bytes] = []
        self.requests = 0
        self.arrived: list[float] = []          # monotonic time each request was in
        self.stop = False

    def run(self) -> None:
        buf = b""
        while not self.stop:
            if not select.select([self.fd], [], [], 0.05)[0]:
                continue
            try:
                buf += os.read(self.fd, 256)
            except BlockingIOError:
                continue
            while len(buf) >= 8:
                buf = buf[8:]
                self.requests += 1
                self.arrived.append(time.monotonic())
                if self.answers:
                    os.write(self.fd, self.answers.pop(0))


@pytest.fixture(scope="module")
def line():
    emu = WireEmulator(LineSpec(BAUD, 10, turnaround_s=0.002))
    # The line runs in its own process, as a real line runs outside the
    # gateway: in this one it shared the GIL with the bus under test and
    # whatever threads earlier tests left, and a pause of a few
    # milliseconds split a back-to-back second answer in two frames (CI).
    th = multiprocessing.get_context("fork").Process(
        target=emu.serve, kwargs={"until": time.monotonic() + 300}, daemon=True)
    th.start()
    slave = Slave(emu.slave_path)
    slave.start()
    loop = asyncio.new_event_loop()
    escaped: list[dict] = []
    loop.set_exception_handler(lambda _loop, ctx: escaped.append(ctx))
    cfg = BusCfg(name="paced", kind="serial", port=emu.master_path, tcp_port=None, baudrate=BAUD,
                 parity="N", stopbits=1, bytesize=8, timeout_s=TIMEOUT_S, retries=0, gap=0,
                 max_registers=125, backoff_max_s=1.0)
    bus = Bus(cfg, [], lambda _d, _r: None)
    assert loop.run_until_complete(bus.open())

    def ask(answer: bytes, read: Read = READ):
        slave.answers.append(answer)
        reads0 = bus._rx.reads
        out = loop.run_until_complete(bus._request(1, read))
        # let what follows an answer (a second one, junk) pass before the next case
        loop.run_until_complete(asyncio.sleep(0.15))
        return out, bus._rx.reads - reads0
    ask.loop, ask.slave = loop, slave
    yield ask, bus, escaped
    bus.close()
    loop.run_until_complete(asyncio.sleep(0.01))
    loop.close()
    slave.stop = True
    th.terminate()
    th.join(5)
    slave.join(5)
    os.close(slave.fd)
    emu.close()


def test_a_61_byte_answer_takes_a_few_reads_not_61(line):
    ask, bus, escaped = line
    pauses0 = bus._rx.pacing.pauses
    counts = []
    for _ in range(5):
        result, reads = ask(honest())
        assert result == REGS
        counts.append(reads)
    assert bus._rx.pacing.pauses - pauses0 == 5
    # 3 for the header, 1 after the pause, the last 2-4 as they come; one
    # read per character would be 61
    assert max(counts) <= 12, counts
    assert escaped == []


SHORT = frame(bytes([1, 3, 2 * (COUNT - 1)]) + bytes(2 * (COUNT - 1)))   # a register short
CASES = {
    "exception": (frame(bytes([1, 0x83, 2])), "exception_2"),
    "a register short": (SHORT, "mismatch"),
    "another unit": (honest(unit=2), "mismatch"),
    "FC04 answering FC03": (honest(fc=4), "mismatch"),
    "a second answer back to back": (honest() + honest(regs=[9] * COUNT), "mismatch"),
    "cut short": (honest()[:30], "crc"),
    "junk in front": (b"\x00\xff" + honest(), "crc"),
    "one byte flipped": (honest()[:20] + bytes([honest()[20] ^ 1]) + honest()[21:], "crc"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_paced_read_judges_every_answer_as_an_unpaced_one(line, name):
    ask, _bus, escaped = line
    answer, expected = CASES[name]
    result, _reads = ask(answer)
    assert result == expected
    assert escaped == []
    # and the next honest answer is read whole, nothing of this one left over
    assert ask(honest())[0] == REGS


def test_the_next_request_is_on_the_line_while_the_last_reading_is_processed(line):
    """Bus._finish queues the reading's processing (decode to MQTT) and goes
    straight on to the next request, so that the line loses no time to the
    pipeline. pymodbus writes a request on the loop's next turn, after that
    processing; the port's writer (poll/pacing.py) writes it at once."""
    ask, bus, escaped = line
    assert ask(honest())[0] == REGS
    slow = {}

    def processing() -> None:            # a slow pipeline, blocking the loop
        slow["start"] = time.monotonic()
        time.sleep(0.3)
        slow["end"] = time.monotonic()

    async def finish_then_next_request():
        asyncio.get_running_loop().call_soon(processing)   # as Bus._finish does
        return await bus._request(1, READ)

    ask.slave.answers.append(honest())
    n0 = len(ask.slave.arrived)
    assert ask.loop.run_until_complete(finish_then_next_request()) == REGS
    sent = ask.slave.arrived[n0]
    # the request went out before the processing ended, not after it
    assert sent < slow["end"], (sent - slow["start"], slow["end"] - slow["start"])
    assert escaped == []


def test_the_silence_after_an_answer_is_timed_on_the_fine_timer(line):
    ask, bus, escaped = line
    assert ask(honest())[0] == REGS           # the bus makes its timer at the first wait
    if bus._fine.broken:
        pytest.skip("no timerfd here")
    fired0 = bus._fine.fired
    assert ask(honest())[0] == REGS
    assert bus._fine.fired > fired0


@pytest.mark.parametrize("name", ["a second answer back to back", "another unit"])
def test_without_a_timerfd_the_bus_waits_on_asyncio_and_judges_the_same(line, name):
    """Where the system has no timerfd (the fine timer is `broken`), the
    silence is waited out on asyncio's timer, as before."""
    ask, bus, escaped = line
    saved = bus._fine
    bus._fine = FineTimer.create()
    bus._fine.broken = "no timerfd here"
    fired0 = bus._fine.fired
    try:
        answer, expected = CASES[name]
        assert ask(answer)[0] == expected
        assert ask(honest())[0] == REGS
        assert bus._fine.fired == fired0
    finally:
        bus._fine.close()
        bus._fine = saved
    assert escaped == []
