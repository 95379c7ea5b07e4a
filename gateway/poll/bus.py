"""One asyncio task per bus (serial port or Modbus TCP endpoint).

The task is the only owner of its pymodbus client: RS-485 is half duplex, so
every request on the line, polls and field diagnostics alike, goes through
this one loop, one at a time.

Scheduling: each device has its own deadline on the monotonic clock, kept
in a heap (poll/schedule.py); the loop sleeps until the earliest deadline or
until a diagnostic request arrives (no short-sleep polling). A unit that stops answering costs at most
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
from collections.abc import Awaitable, Callable

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from gateway.site import clock
from gateway.site.config import BusCfg
from protocols.modbus.plan import Read, split

from .access import BusAccess
from .answer import Received, header_mismatch, stray_answer, wire_mismatch
from .decode import Reading, decode_reads, failed
from .finetimer import FineTimer
from .pacing import Pacing
from .portlock import PortLock
from .runtime import UNAVAILABLE_AFTER, BusStats, DeviceRuntime
from .schedule import Schedule, next_due

log = logging.getLogger(__name__)

BEAT_MARGIN_S = 5.0     # watchdog: over a request's own timeout or a planned sleep
IDLE_BEAT_S = 3600.0    # ... and for a bus with nothing scheduled
T35_SLACK_S = 0.001
MAX_RTU_FRAME = 256     # bytes (Modbus over serial line 2.5.1): the longest a second answer runs

Sink = Callable[[DeviceRuntime, Reading], None]   # runs on the loop, soon after the poll


class Bus(BusAccess):
    # The flock file that keeps the daemon and `edgegw scan/read` off each
    # other's serial port (poll/portlock.py); set by whoever runs the bus.
    lock_path: str | None = None
    # site/sdnotify.py Watchdog: beaten before every request and sleep, so a
    # task stuck in a read misses its deadline and systemd's pings stop.
    watchdog = None
    _port_lock = None

    def __init__(self, cfg: BusCfg, devices: list[DeviceRuntime], sink: Sink) -> None:
        self.cfg = cfg
        self.devices = devices
        self._by_name = {d.name: d for d in devices}
        self.schedule = Schedule()
        self.sink = sink
        self.stats = BusStats()
        self.client = None
        # t3.5 (Modbus over serial line 2.5.1.1): 3.5 characters of silence,
        # fixed at 1.75 ms above 19200 baud
        bits = 1 + cfg.bytesize + (cfg.parity != "N") + cfg.stopbits
        self._t35 = 0.00175 if cfg.baudrate > 19200 else 3.5 * bits / cfg.baudrate
        self._char_s = bits / cfg.baudrate
        # the bytes that came back for the current request
        self._rx = Received(Pacing(self._char_s, cfg.timeout_s) if cfg.kind != "tcp" else None)
        self._wake = asyncio.Event()
        self._diag: asyncio.Queue = asyncio.Queue()
        self._stopping = False
        self._backoff = 0.5
        # serial: times the t3.5 wait (poll/finetimer.py); made at the first wait
        self._fine: FineTimer | None = None

    # -- public ------------------------------------------------------------

    async def call(self, fn: Callable[[object], Awaitable[object]]) -> object:
        """Run fn(client) between polls; used by field diagnostics."""
        fut = asyncio.get_running_loop().create_future()
        await self._diag.put((fn, fut))
        self._wake.set()
        return await fut

    def poke(self, device_name: str) -> bool:
        """Poll a device as soon as the bus is free (re-poll command)."""
        d = self._by_name.get(device_name)
        if d is None:
            return False
        self.reschedule(d, 0.0)
        return True

    def reschedule(self, d: DeviceRuntime, due: float) -> None:
        """Poll `d` at `due` (monotonic) instead of its planned time."""
        self.schedule.set(d, due)
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        now = time.monotonic()
        # Spread first polls over the first second so a large bus does not
        # start with a burst of every device due at once.
        for i, d in enumerate(self.devices):
            self.schedule.set(d, now + (i / max(1, len(self.devices))))
        try:
            while not self._stopping:
                if not self.stats.connected and not await self._connect():
                    await self._down_cycle()
                    continue
                if not self._diag.empty():
                    await self._run_diag()
                    continue
                now = time.monotonic()
                due = self.schedule.pop_due(now)
                if due is not None:
                    await self._poll(due)
                    continue
                first = self.schedule.peek()
                await self._sleep(first.next_due - now if first is not None else None)
        finally:
            self._close()
            if self._fine is not None:
                self._fine.close()
                self._fine = None

    # -- connection --------------------------------------------------------

    def _new_client(self):
        c = self.cfg
        common = dict(timeout=c.timeout_s, retries=0, reconnect_delay=0,
                      reconnect_delay_max=0, trace_packet=self._rx.trace, name=c.name)
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
            self._port_lock = self._port_lock or PortLock(self.lock_path)
            why = self._port_lock.acquire()
            if why is not None:
                self._note_connect_error(f"{self.cfg.port}: {why}")
                return False
        self.client = self._new_client()
        self._rx.attach(self.client)
        self._beat(self.cfg.timeout_s)
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
        while (d := self.schedule.pop_due(now)) is not None:
            await self._finish(d, [], "bus_down")
        await self._sleep(self._backoff)
        self._backoff = min(self._backoff * 2, self.cfg.backoff_max_s)

    def _beat(self, within: float) -> None:
        if self.watchdog is not None:
            self.watchdog.beat(f"bus:{self.cfg.name}", within + BEAT_MARGIN_S)

    async def _sleep(self, timeout: float | None) -> None:
        """Until `timeout` passes or something wakes the bus. A bare timer on
        the event, not wait_for: a task per sleep would cost more than the
        poll's own bookkeeping."""
        self._beat(IDLE_BEAT_S if timeout is None else timeout)
        self._wake.clear()
        timer = None
        if timeout is not None:
            timer = asyncio.get_running_loop().call_later(max(0.0, timeout), self._wake.set)
        try:
            await self._wake.wait()
        finally:
            if timer is not None:
                timer.cancel()

    # -- requests ----------------------------------------------------------

    async def _request(self, unit: int, read: Read) -> list[int] | str:
        """One attempt; returns registers or a failure type. An answer is a
        value only if it answers this request (poll/answer.py), else `mismatch`."""
        st = self.stats
        st.requests += 1
        self._beat(self.cfg.timeout_s)
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
            self._rx.take_waiting()
            if self._rx.bytes:
                # pymodbus drops a sound frame from another unit id (or
                # transaction), or with a function it cannot decode, and
                # waits for a timeout: with such a frame in hand that is a
                # mismatch. Anything else is a garbled line, even a sound
                # answer that junk in front of it kept pymodbus from finding.
                if stray_answer(self._rx.data(), unit, fc, read.count, rtu):
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
        why = header_mismatch(rr, unit, fc)
        if why is None and rr.isError():
            st.exceptions += 1
            return f"exception_{getattr(rr, 'exception_code', 0)}"
        regs = list(getattr(rr, "registers", []) or [])
        if why is None and len(regs) != read.count:
            why = f"{len(regs)} registers"
        if why is None:
            if rtu:
                why = await self._quiet_line()
            why = why or wire_mismatch(self._rx.data(), unit, fc, regs, rtu)
        if why is not None:
            log.debug("bus %s: unit %d %s read at %d x%d: answered with %s", self.cfg.name, unit,
                      read.function, read.address, read.count, why)
            st.mismatch += 1
            return "mismatch"
        st.ok += 1
        return regs

    async def _quiet_line(self) -> str | None:
        """Wait out the 3.5-character silence after an answer: no second
        answer from this unit may come through it (answer.py says why). If
        bytes keep coming, wait until the line falls silent, so a second
        answer sent back to back is judged whole, not by its first bytes.
        Wake T35_SLACK_S short of t3.5: the next request takes the bus a
        fraction of a millisecond to write, and a real port reads the last
        byte some time after it left the wire, so on a site it still goes
        out after the line's own t3.5 (docs/operations.md). The wait is timed
        on a timerfd (poll/finetimer.py): asyncio's timer wakes up to a
        millisecond late."""
        rx = self._rx
        give_up = time.monotonic() + self._t35 + MAX_RTU_FRAME * self._char_s
        if self._fine is None:
            self._fine = FineTimer.create()
        while (until := rx.last_mono + self._t35 - T35_SLACK_S) > time.monotonic():
            if time.monotonic() > give_up:
                return "line not quiet"
            await self._fine.sleep_until(until)
        return None

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
        self.schedule.set(d, next_due(d, now, self.cfg.backoff_max_s))
        # The reading is processed while the next request is on the wire: the
        # bus task goes straight on to it, and the line loses no time to us.
        asyncio.get_running_loop().call_soon(self._deliver, d, reading)

    def _deliver(self, d: DeviceRuntime, reading: Reading) -> None:
        try:
            self.sink(d, reading)
        except Exception:  # noqa: BLE001 - a pipeline bug must not kill the bus
            log.exception("device %s: processing a reading failed", d.name)

    async def _run_diag(self) -> None:
        fn, fut = self._diag.get_nowait()
        if fut.done():
            return
        try:
            fut.set_result(await fn(self.client))
        except Exception as exc:  # noqa: BLE001 - handed back to the caller
            fut.set_exception(exc)
