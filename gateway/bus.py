"""One asyncio task per bus (serial port or Modbus TCP endpoint).

The task is the only owner of its pymodbus client: RS-485 is half duplex, so
every request on the line, polls and field diagnostics alike, goes through
this one loop, one at a time.

Scheduling: each device has its own deadline on the monotonic clock; the
loop sleeps until the earliest deadline or until a diagnostic request
arrives (no short-sleep polling). A unit that stops answering costs at most
one timeout per cycle (no retries once it has failed, and its remaining reads
are skipped), and is then backed off on its own, so it cannot starve the
other units on the bus.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer.rtu import FramerRTU

from protocols.modbus.plan import Read, plan, split
from protocols.models import Model

from . import clock
from .config import BusCfg, DeviceCfg
from .decode import Reading, decode_reads, failed

log = logging.getLogger(__name__)

# Consecutive failed polls before a device is reported unavailable; one
# garbled frame on a noisy line must not flap the availability.
UNAVAILABLE_AFTER = 3
RESPONSE_SAMPLES = 256


@dataclass
class DeviceRuntime:
    cfg: DeviceCfg
    model: Model
    reads: list[Read]
    next_due: float = 0.0
    fails: int = 0
    available: bool | None = None
    last_error: str | None = None
    last_error_ts: str | None = None
    last_good_mono: float | None = None
    last_good_ts: str | None = None
    last_values: dict = field(default_factory=dict)
    counters: Counter = field(default_factory=Counter)
    # A device that is not polled by register map (a door controller's event
    # log) brings its own poller: an object with `async poll(bus, device)`.
    custom: object | None = None

    @property
    def name(self) -> str:
        return self.cfg.name


def make_runtime(cfg: DeviceCfg, model: Model, bus: BusCfg) -> DeviceRuntime:
    limit = min(bus.max_registers, model.max_registers_per_read)
    return DeviceRuntime(cfg=cfg, model=model,
                         reads=plan(model.fields, max_count=limit, gap=bus.gap))


@dataclass
class BusStats:
    requests: int = 0
    ok: int = 0
    timeouts: int = 0
    crc: int = 0
    mismatch: int = 0
    exceptions: int = 0
    disconnects: int = 0
    connected: bool = False
    last_connect_error: str | None = None
    response_s: deque = field(default_factory=lambda: deque(maxlen=RESPONSE_SAMPLES))

    def summary(self) -> dict:
        samples = sorted(self.response_s)
        mean = sum(samples) / len(samples) if samples else None
        p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))] if samples else None
        return {
            "connected": self.connected, "requests": self.requests, "ok": self.ok,
            "timeouts": self.timeouts, "crc_errors": self.crc, "mismatch": self.mismatch,
            "exceptions": self.exceptions,
            "disconnects": self.disconnects, "last_connect_error": self.last_connect_error,
            "response_ms_mean": round(mean * 1000, 2) if mean is not None else None,
            "response_ms_p95": round(p95 * 1000, 2) if p95 is not None else None,
        }


Sink = Callable[[DeviceRuntime, Reading], Awaitable[None]]


class Bus:
    # The flock file that keeps the daemon and `edgegw scan/read` off each
    # other's serial port (gateway/diag.py); set by whoever runs the bus.
    lock_path: str | None = None
    _port_lock = None

    def __init__(self, cfg: BusCfg, devices: list[DeviceRuntime], sink: Sink) -> None:
        self.cfg = cfg
        self.devices = devices
        self.sink = sink
        self.stats = BusStats()
        self.client = None
        self._rx = bytearray()
        self._wake = asyncio.Event()
        self._diag: asyncio.Queue = asyncio.Queue()
        self._stopping = False
        self._backoff = 0.5

    # -- public ------------------------------------------------------------

    async def call(self, fn: Callable[[object], Awaitable[object]]) -> object:
        """Run fn(client) between polls; used by field diagnostics."""
        fut = asyncio.get_running_loop().create_future()
        await self._diag.put((fn, fut))
        self._wake.set()
        return await fut

    def poke(self, device_name: str) -> bool:
        """Poll a device as soon as the bus is free (re-poll command)."""
        for d in self.devices:
            if d.name == device_name:
                d.next_due = 0.0
                self._wake.set()
                return True
        return False

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    # -- for field diagnostics (gateway/diag.py) ----------------------------

    async def probe(self, unit: int, function: str, address: int, count: int) -> list[int] | str:
        """One attempt, no retries, inside this task's turn (Bus.call): a
        scan must not spend two timeouts on every empty address."""
        if self.client is None:
            return "bus_down"
        return await self._request(unit, Read(function, address, count, ()))

    async def open(self) -> bool:
        """Connect without run(): the CLI's own session when no daemon runs."""
        return await self._connect()

    def close(self) -> None:
        self._close()

    # -- for custom pollers, which run inside this task's turn ---------------

    async def read(self, unit: int, function: str, address: int, count: int) -> list[int] | str:
        """One read with this bus's retries; registers or a failure type."""
        if self.client is None:
            return "bus_down"
        req = Read(function, address, count, ())
        for _ in range(1 + self.cfg.retries):
            outcome = await self._request(unit, req)
            if not isinstance(outcome, str) or outcome.startswith("exception") or outcome == "bus_down":
                break
        return outcome

    async def write(self, unit: int, address: int, values: list[int]) -> str | None:
        """Write holding registers (FC16); None on success, else a failure type."""
        if self.client is None:
            return "bus_down"
        self.stats.requests += 1
        try:
            rr = await self.client.write_registers(address, values, device_id=unit)
        except ModbusIOException:
            self.stats.timeouts += 1
            return "timeout"
        except (ModbusException, OSError):
            self._close()
            return "bus_down"
        if rr.isError():
            self.stats.exceptions += 1
            return f"exception_{getattr(rr, 'exception_code', 0)}"
        self.stats.ok += 1
        return None

    async def finish(self, d: DeviceRuntime, results, reason: str | None) -> None:
        """Close a custom poll: counters, availability, schedule, sink."""
        await self._finish(d, results, reason)

    async def run(self) -> None:
        now = time.monotonic()
        # Spread first polls over the first second so a large bus does not
        # start with a burst of every device due at once.
        for i, d in enumerate(self.devices):
            d.next_due = now + (i / max(1, len(self.devices)))
        try:
            while not self._stopping:
                if not self.stats.connected and not await self._connect():
                    await self._down_cycle()
                    continue
                if not self._diag.empty():
                    await self._run_diag()
                    continue
                due = min(self.devices, key=lambda d: d.next_due) if self.devices else None
                now = time.monotonic()
                if due is not None and due.next_due <= now:
                    await self._poll(due)
                    continue
                timeout = (due.next_due - now) if due else None
                await self._sleep(timeout)
        finally:
            self._close()

    # -- connection --------------------------------------------------------

    def _trace(self, sending: bool, data: bytes) -> bytes:
        # Bytes received for the current request: if a request then times
        # out with bytes in hand, the answer was garbled (CRC), not missing.
        if sending:
            self._rx.clear()
            return data
        self._rx.extend(data)
        if len(self._rx) > _RX_KEEP:  # a flood: the answer, if any, is in the newest bytes
            del self._rx[:-_RX_KEEP]
        if self.client is not None:
            # pymodbus 3.16 raises out of its transport callback on a sound
            # frame it cannot decode (function byte 0x80): the traceback
            # lands in the event loop's handler and the bytes stay stuck
            # until the next request (on TCP the connection drops). Hide
            # them from its framer: the request times out, and _request
            # counts the frame as a mismatch.
            ctx = self.client.ctx
            try:
                ctx.framer.handleFrame(data, ctx.request_dev_id, ctx.request_transaction_id)
            except Exception:  # noqa: BLE001 - whatever it would have raised
                return b""
        return data

    def _new_client(self):
        c = self.cfg
        common = dict(timeout=c.timeout_s, retries=0, reconnect_delay=0,
                      reconnect_delay_max=0, trace_packet=self._trace, name=c.name)
        if c.kind == "tcp":
            return AsyncModbusTcpClient(c.port, port=c.tcp_port, framer=FramerType.SOCKET, **common)
        return AsyncModbusSerialClient(
            c.port, framer=FramerType.RTU, baudrate=c.baudrate, bytesize=c.bytesize,
            parity=c.parity, stopbits=c.stopbits, **common)

    async def _connect(self) -> bool:
        self._close()
        if self.cfg.kind == "serial" and not os.path.exists(self.cfg.port):
            self._note_connect_error(f"{self.cfg.port}: {os.strerror(errno.ENODEV)}")
            return False
        if self.cfg.kind == "serial" and self.lock_path:
            from .diag import PortLock
            self._port_lock = self._port_lock or PortLock(self.lock_path)
            why = self._port_lock.acquire()
            if why is not None:
                self._note_connect_error(f"{self.cfg.port}: {why}")
                return False
        self.client = self._new_client()
        try:
            ok = await self.client.connect()
        except (OSError, ModbusException) as exc:
            ok = False
            self._note_connect_error(str(exc))
        if not ok:
            self._note_connect_error(self.stats.last_connect_error or "connect failed")
            self._close()
            return False
        log.info("bus %s: connected to %s", self.cfg.name, self.cfg.port)
        self.stats.connected = True
        self.stats.last_connect_error = None
        self._backoff = 0.5
        return True

    def _note_connect_error(self, why: str) -> None:
        if self.stats.last_connect_error != why:
            log.warning("bus %s: cannot open (%s); retrying with backoff", self.cfg.name, why)
        self.stats.last_connect_error = why

    def _close(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception:  # noqa: BLE001 - closing a vanished port may raise anything
                pass
            self.client = None
        if self.stats.connected:
            self.stats.disconnects += 1
        self.stats.connected = False
        if self._port_lock is not None:
            self._port_lock.release()

    async def _down_cycle(self) -> None:
        """While the port is gone: report due devices as bus_down, answer
        diagnostics with an error, and wait for the next reconnect attempt."""
        while not self._diag.empty():
            _fn, fut = self._diag.get_nowait()
            if not fut.done():
                fut.set_exception(ConnectionError(f"bus {self.cfg.name} is down: "
                                                  f"{self.stats.last_connect_error}"))
        now = time.monotonic()
        for d in self.devices:
            if d.next_due <= now:
                await self._finish(d, [], "bus_down")
        await self._sleep(self._backoff)
        self._backoff = min(self._backoff * 2, self.cfg.backoff_max_s)

    async def _sleep(self, timeout: float | None) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass

    # -- requests ----------------------------------------------------------

    async def _request(self, unit: int, read: Read) -> list[int] | str:
        """One attempt; returns registers or a failure type.

        An answer is a value only if it answers this request: its function
        code, unit id and register count (the byte count on the wire) must
        be the request's, and on a serial line it must be the only answer.
        A frame with a valid CRC that fails any of these is a `mismatch`: a
        slave answering FC03 with an FC04 frame of the same size passes a
        CRC check and would otherwise be published as good."""
        st = self.stats
        st.requests += 1
        fc = 3 if read.function == "holding" else 4
        fn = (self.client.read_holding_registers if read.function == "holding"
              else self.client.read_input_registers)
        rtu = self.cfg.kind != "tcp"
        t0 = time.monotonic()
        try:
            rr = await fn(read.address, count=read.count, device_id=unit)
        except ConnectionException as exc:
            log.warning("bus %s: connection lost (%s)", self.cfg.name, exc)
            self._close()
            return "bus_down"
        except ModbusIOException:
            if self.client is None or not self.client.connected:
                self._close()
                return "bus_down"
            if self._rx:
                # pymodbus drops a sound frame from another unit id (or
                # transaction), or with a function it cannot decode, and
                # waits for a timeout: with such a frame in hand that is a
                # mismatch. Anything else is a garbled line, even a sound
                # answer that junk in front of it kept pymodbus from finding.
                rx = bytes(self._rx)
                shape = (unit, fc, 2 * read.count)
                if rtu:
                    other = any(tuple(f[:3]) != shape and tuple(f[:2]) != (unit, 0x80 | fc)
                                for f in _rtu_frames(rx, unit, answered=False))
                else:  # one whole Modbus/TCP frame: its MBAP length is the rest
                    other = len(rx) >= 8 and rx[2:4] == b"\0\0" \
                        and int.from_bytes(rx[4:6], "big") == len(rx) - 6
                if other:
                    st.mismatch += 1
                    return "mismatch"
                st.crc += 1
                return "crc"
            st.timeouts += 1
            return "timeout"
        except (ModbusException, OSError) as exc:
            log.warning("bus %s: unit %d: %s", self.cfg.name, unit, exc)
            self._close()
            return "bus_down"
        st.response_s.append(time.monotonic() - t0)
        why = None
        if (rr.function_code & 0x7F) != fc or rr.dev_id != unit:
            why = f"function {rr.function_code & 0x7F} unit {rr.dev_id}"
        elif rr.isError():
            st.exceptions += 1
            return f"exception_{getattr(rr, 'exception_code', 0)}"
        regs = list(getattr(rr, "registers", []) or [])
        if why is None and len(regs) != read.count:
            why = f"{len(regs)} registers"
        if why is None:
            # pymodbus takes the registers a byte count gives and ignores a
            # stray byte, so the frame itself must be the honest one. On a
            # serial line, through the master's 3.5-character silence after
            # it no other answer from this unit may come, or two answers
            # came (two slaves on one address, or a stale answer taken for
            # this one) and neither can be trusted. (Modbus/TCP has
            # transaction ids: pymodbus drops a stale or repeated answer.)
            body = bytes([unit, fc, 2 * read.count]) + b"".join(r.to_bytes(2, "big") for r in regs)
            if not rtu:
                if len(body).to_bytes(2, "big") + body not in bytes(self._rx):
                    why = "byte count"
            else:
                honest = body + FramerRTU.compute_CRC(body).to_bytes(2, "big")
                await asyncio.sleep(max(0.002, 38.5 / max(1, self.cfg.baudrate)))
                rx = bytes(self._rx)
                if rx != honest:
                    frames = _rtu_frames(rx, unit, answered=True)
                    if honest not in frames:
                        why = "byte count"
                    elif len(frames) > 1:
                        why = "second answer"
        if why is not None:
            log.debug("bus %s: unit %d %s read at %d x%d: answered with %s", self.cfg.name, unit,
                      read.function, read.address, read.count, why)
            st.mismatch += 1
            return "mismatch"
        st.ok += 1
        return regs

    async def _poll(self, d: DeviceRuntime) -> None:
        if d.custom is not None:
            await d.custom.poll(self, d)
            return
        results: list[tuple[Read, list[int] | str]] = []
        reads = d.reads
        i = 0
        reason: str | None = None
        while i < len(reads):
            read = reads[i]
            attempts = 1 if d.fails else 1 + self.cfg.retries
            for _ in range(attempts):
                outcome = await self._request(d.cfg.unit, read)
                if not isinstance(outcome, str) or outcome.startswith("exception") \
                        or outcome == "bus_down":
                    break
            if outcome in ("exception_2", "exception_3") and len(read.fields) > 1:
                # The device refuses the coalesced span (a hole it does not
                # map): remember the finer plan for every later cycle.
                parts = split(read)
                log.info("device %s: exception %s on %d registers at %d, splitting into %s",
                         d.name, outcome[-1], read.count, read.address,
                         [(p.address, p.count) for p in parts])
                reads[i:i + 1] = parts
                continue
            results.append((read, outcome))
            if isinstance(outcome, str):
                d.counters[outcome] += 1
                reason = reason or outcome
                if outcome in ("timeout", "bus_down"):
                    # Not answering: spend no more timeouts on it this cycle.
                    for rest in reads[i + 1:]:
                        results.append((rest, outcome))
                    break
            i += 1
        await self._finish(d, results, reason)

    async def _finish(self, d: DeviceRuntime, results, reason: str | None) -> None:
        now = time.monotonic()
        ts = clock.utc_now_iso()
        if results:
            reading = decode_reads(d.name, results, mono=now, ts=ts)
        else:
            reading = failed(d.name, reason or "bus_down", mono=now, ts=ts)
        d.counters["polls"] += 1
        for q in reading.quality.values():
            if q in ("decode_error", "out_of_range"):
                d.counters[q] += 1
        if reading.values:
            d.fails = 0
            d.last_good_mono, d.last_good_ts = now, ts
            d.last_values.update(reading.values)
            d.counters["ok"] += 1 if reading.ok else 0
        else:
            d.fails += 1
        if reading.error:
            d.last_error, d.last_error_ts = reading.error, ts
            level = logging.INFO if d.fails <= 1 else logging.DEBUG
            log.log(level, "device %s (bus %s unit %d): %s", d.name, self.cfg.name,
                    d.cfg.unit, reading.error)
        was = d.available
        d.available = d.fails < UNAVAILABLE_AFTER
        if was is not None and was != d.available:
            log.warning("device %s is now %s", d.name,
                        "available" if d.available else "unavailable")
        d.next_due = self._next_due(d, now)
        try:
            await self.sink(d, reading)
        except Exception:  # noqa: BLE001 - a pipeline bug must not kill the bus
            log.exception("device %s: processing a reading failed", d.name)

    def _next_due(self, d: DeviceRuntime, now: float) -> float:
        interval = d.cfg.poll_interval_s
        if d.fails >= UNAVAILABLE_AFTER:
            backoff = interval * (2 ** min(10, d.fails - UNAVAILABLE_AFTER + 1))
            return now + min(max(interval, self.cfg.backoff_max_s), backoff)
        # Fixed rate, not fixed delay; after a stall start afresh rather than
        # firing a burst of catch-up polls.
        nxt = d.next_due + interval
        return nxt if nxt > now else now + interval

    async def _run_diag(self) -> None:
        fn, fut = self._diag.get_nowait()
        if fut.done():
            return
        try:
            fut.set_result(await fn(self.client))
        except Exception as exc:  # noqa: BLE001 - handed back to the caller
            fut.set_exception(exc)


# Bytes of a read's answer scanned for frames: two of the longest RTU
# frames; and kept, at most, of what came in for one request.
_RX_SCAN = 600
_RX_KEEP = 2048


def _rtu_frames(rx: bytes, unit: int, answered: bool) -> list[bytes]:
    """CRC-valid RTU frames in the bytes received for one request, found
    by their own layout (an exception is 5 bytes, FC01-04 5 + byte count,
    FC05/06/15/16 8). Once pymodbus has `answered`, only this unit's frames
    count. Without an answer, any unit's count, and a frame of this unit
    with a function pymodbus cannot decode runs to the end of the bytes (a
    slave's answer ends the traffic). Bounded: the last _RX_SCAN bytes."""
    rx = rx[-_RX_SCAN:]
    out = []
    i = 0
    while i + 4 <= len(rx):
        f = rx[i + 1]
        if answered and rx[i] != unit:
            n = 0
        elif f & 0x80:
            n = 5
        elif f in (1, 2, 3, 4):
            n = 5 + rx[i + 2]
        elif f in (5, 6, 15, 16):
            n = 8
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
