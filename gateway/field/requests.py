"""What each control request does, for the control socket and the MQTT
commands alike: status, faults, history, repoll, doorlog, read, scan, watch,
diag. Every argument from outside is checked here against what is asked
(names that exist, numbers in range) before it reaches a bus.

Each handler is `async (args, send) -> result`; `send` streams progress or
events to a socket client and is None over MQTT.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.deliver import payloads
from gateway.doors.view import doorlog_view

from .diag import live_diag, mqtt_diag
from .history import (
    HISTORY_MAX_DAYS,
    HISTORY_MAX_LINES,
    HISTORY_NAME,
    History,
    history_record,
)
from .scan import ident_plan, probe_unit, read_registers
from .status import _availability, build_status

log = logging.getLogger(__name__)

WATCH_QUEUE = 256
MAX_WATCHERS = 8          # watch streams at once: the other control slots stay for short requests
MQTT_DIAG_EVERY_S = 60.0  # diag over MQTT runs at most this often


class RequestError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


Send = Callable[[dict], Awaitable[None]]

# Door logs: the daemon's door controllers answer through
# gateway.doors.doorlog_view; a site with none answers "not configured", over
# the socket and over MQTT alike. A provider registered here (an async
# callable (daemon, args) -> dict) takes precedence, for tests and for a
# door integration that wants to answer differently.
_doorlog_provider: Callable[[object, dict], Awaitable[dict]] | None = None


def register_doorlog(provider: Callable[[object, dict], Awaitable[dict]] | None) -> None:
    global _doorlog_provider
    _doorlog_provider = provider


@dataclass(eq=False)
class _Watcher:
    queue: asyncio.Queue
    devices: frozenset
    lost: int = 0


class Requests:
    def __init__(self, daemon) -> None:
        self.daemon = daemon
        self.history = History(Path(daemon.cfg.gateway.state_dir) / HISTORY_NAME,
                               max_days=getattr(daemon.cfg.gateway, "fault_history_days", HISTORY_MAX_DAYS))
        self._watchers: set[_Watcher] = set()
        self._history_lost = 0      # events not written to history.jsonl since the last success
        self._scanning: set[str] = set()
        self._diag_lock = asyncio.Lock()
        self._mqtt_diag_at: float | None = None

    def observe(self, d, reading, events) -> None:
        """One processed reading: fault events go to the history file, the
        reading to live watchers. Never raises: the pipeline comes first."""
        try:
            if events:
                self.history.append([history_record(ev) for ev in events])
                if self._history_lost:
                    log.info("control: %s written again; %d fault events of the time before are not in it "
                             "(they went to the outbox and MQTT as usual)",
                             self.history.path, self._history_lost)
                    self._history_lost = 0
        except OSError as exc:
            # Once per spell, not once per event: on a full disk the journal
            # may be on the same disk.
            if not self._history_lost:
                log.warning("control: cannot append to %s: %s; the fault history misses events "
                            "until it can (one line when it can again)", self.history.path, exc)
            self._history_lost += len(events)
        if not self._watchers:
            return
        try:
            ev = self._watch_event(d.name, reading, events)
        except Exception:  # noqa: BLE001 - a watch bug must not touch the pipeline
            log.exception("control: building a watch event failed")
            return
        for w in list(self._watchers):
            if w.devices and d.name not in w.devices:
                continue
            try:
                w.queue.put_nowait(ev)
            except asyncio.QueueFull:
                w.lost += 1

    def _watch_event(self, name: str, reading=None, events=()) -> dict:
        daemon = self.daemon
        rt = daemon.runtimes[name]
        active = daemon.interps[name].active()
        faults: list[str] = []
        states: list[str] = []
        for code in sorted(active):
            try:
                kind = rt.model.fault(code).kind
            except KeyError:
                kind = "fault"
            (states if kind == "state" else faults).append(code)
        return {
            "device": name, "ts": reading.ts if reading is not None else rt.last_good_ts,
            "ok": reading.ok if reading is not None else None,
            "error": reading.error if reading is not None else None,
            "availability": _availability(rt.available),
            "values": payloads.published_values(rt.model, rt.last_values),
            "faults": faults, "states": states,
            "edges": [{"code": e.code, "state": e.state} for e in events],
        }

    def _bus(self, args: dict):
        name = args.get("bus")
        if not isinstance(name, str):
            raise RequestError("bad_args", "bus: expected a bus name")
        for b in self.daemon.buses:
            if b.cfg.name == name:
                return b
        if any(bc.name == name for bc in self.daemon.cfg.buses):
            raise RequestError("no_bus_task", f"the daemon does not poll bus {name!r} (no device on it)")
        known = ", ".join(bc.name for bc in self.daemon.cfg.buses) or "none"
        raise RequestError("unknown_bus", f"no bus {name!r} (buses: {known})")

    def _devices(self, args: dict) -> list[str]:
        devs = args.get("devices") or []
        if not isinstance(devs, list) or not all(isinstance(x, str) for x in devs):
            raise RequestError("bad_args", "devices: expected a list of device names")
        unknown = [x for x in devs if x not in self.daemon.runtimes]
        if unknown:
            raise RequestError("unknown_device", f"no device {unknown[0]!r} "
                               f"(devices: {', '.join(self.daemon.runtimes) or 'none'})")
        return devs

    @staticmethod
    def _int(args: dict, key: str, lo: int, hi: int, default: int | None = None) -> int:
        v = args.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise RequestError("bad_args", f"{key}: expected a whole number {lo}..{hi}, got {v!r}")
        return v

    async def h_ping(self, args, send) -> dict:
        return {"pid": os.getpid(), "gateway": self.daemon.cfg.gateway.id}

    async def h_status(self, args, send) -> dict:
        return build_status(self.daemon)

    async def h_faults(self, args, send) -> dict:
        devs = self._devices(args)
        limit = self._int(args, "history", 0, HISTORY_MAX_LINES, 20)
        st = build_status(self.daemon)
        active = [d for d in st["devices"] if not devs or d["name"] in devs]
        return {"ts": st["ts"], "active": active,
                "history": self.history.read(limit, devs) if limit else []}

    async def h_history(self, args, send) -> list:
        devs = self._devices(args)
        return self.history.read(self._int(args, "limit", 1, HISTORY_MAX_LINES, 100), devs)

    async def h_repoll(self, args, send) -> dict:
        name = args.get("device")
        if not isinstance(name, str) or name not in self.daemon.runtimes:
            raise RequestError("unknown_device", f"no device {name!r} "
                               f"(devices: {', '.join(self.daemon.runtimes) or 'none'})")
        bus = self.daemon.bus_of[name]
        for b in self.daemon.buses:
            if b.cfg.name == bus and b.poke(name):
                return {"device": name, "bus": bus, "queued": True}
        raise RequestError("unknown_device", f"device {name!r} is not polled")

    async def h_doorlog(self, args, send) -> dict:
        controller = args.get("controller")
        if not isinstance(controller, str) or not controller:
            raise RequestError("bad_args", "controller: expected a door controller's device name")
        if _doorlog_provider is not None:
            return await _doorlog_provider(self.daemon, args)
        if getattr(self.daemon, "doors", None) is None:
            raise RequestError("not_configured", "not configured")
        try:
            return doorlog_view(self.daemon, controller)
        except KeyError as exc:
            raise RequestError("unknown_controller", str(exc.args[0] if exc.args else exc)) from None

    async def h_read(self, args, send) -> dict:
        bus = self._bus(args)
        unit = self._int(args, "unit", 0, 247)
        address = self._int(args, "address", 0, 65535)
        count = self._int(args, "count", 1, 125, 1)
        function = args.get("function", "holding")
        if function not in ("holding", "input"):
            raise RequestError("bad_args", "function: expected holding or input")
        if address + count > 65536:
            raise RequestError("bad_args", "address + count runs past 65535")
        try:
            out = await bus.call(lambda _client: read_registers(bus, unit, function, address, count))
        except ConnectionError as exc:
            raise RequestError("bus_down", str(exc)) from None
        return {"bus": bus.cfg.name, "port": bus.cfg.port, "unit": unit, "function": function,
                "address": address, "count": count, "via": "daemon", **out}

    async def h_scan(self, args, send) -> dict:
        bus = self._bus(args)
        first = self._int(args, "first", 1, 247, 1)
        last = self._int(args, "last", first, 247, 247)
        name = bus.cfg.name
        if name in self._scanning:
            raise RequestError("busy", f"a scan of bus {name} is already running")
        self._scanning.add(name)
        try:
            plan = ident_plan(self.daemon.models)
            configured = {d.cfg.unit: d.name for d in bus.devices}
            found: list[dict] = []
            t0 = time.monotonic()
            total = last - first + 1
            for i, unit in enumerate(range(first, last + 1)):
                # One unit per turn of the bus: polls that fall due in
                # between run before the next unit is probed.
                try:
                    res = await bus.call(lambda _client, u=unit: probe_unit(bus, u, plan))
                except ConnectionError as exc:
                    raise RequestError("bus_down", str(exc)) from None
                if res["responds"]:
                    res["configured_as"] = configured.get(unit)
                    found.append(res)
                elapsed = time.monotonic() - t0
                done = i + 1
                await send({"progress": {"unit": unit, "done": done, "total": total, "found": len(found),
                                         "elapsed_s": round(elapsed, 2),
                                         "eta_s": round(elapsed / done * (total - done), 1)}})
            return {"bus": name, "port": bus.cfg.port, "first": first, "last": last, "via": "daemon",
                    "found": found, "elapsed_s": round(time.monotonic() - t0, 2)}
        finally:
            self._scanning.discard(name)

    async def h_watch(self, args, send) -> dict:
        devs = self._devices(args)
        if len(self._watchers) >= MAX_WATCHERS:
            raise RequestError("busy", f"at most {MAX_WATCHERS} watch streams at a time")
        w = _Watcher(asyncio.Queue(WATCH_QUEUE), frozenset(devs))
        self._watchers.add(w)
        try:
            for name in (devs or list(self.daemon.runtimes)):
                await send({"event": self._watch_event(name)})
            while True:
                ev = await w.queue.get()
                if w.lost:
                    ev = {**ev, "lost": w.lost}
                    w.lost = 0
                await send({"event": ev})
        finally:
            self._watchers.discard(w)

    async def h_diag(self, args, send) -> dict:
        return await self.run_diag()

    async def run_diag(self) -> dict:
        if self._diag_lock.locked():
            raise RequestError("busy", "a diag is already running")
        async with self._diag_lock:
            return await live_diag(self.daemon)

    async def run_mqtt_diag(self) -> dict:
        """diag over MQTT: anyone who can publish on the broker can ask, so
        it runs at most once per MQTT_DIAG_EVERY_S, opens no connection of
        its own and says nothing about paths, pids, user names or endpoints."""
        now = time.monotonic()
        if self._mqtt_diag_at is not None and now - self._mqtt_diag_at < MQTT_DIAG_EVERY_S:
            wait = MQTT_DIAG_EVERY_S - (now - self._mqtt_diag_at)
            raise RequestError("rate_limited", f"diag over MQTT runs at most once every "
                               f"{MQTT_DIAG_EVERY_S:.0f} s; the next one in {wait:.0f} s")
        if self._diag_lock.locked():
            raise RequestError("busy", "a diag is already running")
        self._mqtt_diag_at = now
        async with self._diag_lock:
            return await mqtt_diag(self.daemon)

    HANDLERS = {
        "ping": h_ping, "status": h_status, "faults": h_faults, "history": h_history, "scan": h_scan,
        "read": h_read, "watch": h_watch, "diag": h_diag, "repoll": h_repoll, "doorlog": h_doorlog,
    }
