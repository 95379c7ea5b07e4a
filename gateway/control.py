"""The daemon's control socket, and the CLI side that talks to it.

The daemon owns the serial ports, so a field engineer's diagnostics (status,
scan, raw reads, live watch) go through it rather than opening the port
beside it. Protocol: JSON lines on a Unix socket, <state_dir>/control.sock.

    request  {"id": 7, "cmd": "status", "args": {}}
    reply    {"id": 7, "ok": true, "result": {...}}
             {"id": 7, "ok": false, "error": "...", "code": "bad_request"}
    stream   {"id": 7, "progress": {...}}   (scan, before its reply)
             {"id": 7, "event": {...}}      (watch, until the client leaves)

Several requests may follow one another on a connection. Each connection is
its own task and every write has a deadline, so a client that stops reading
is dropped rather than holding up the daemon; a line that is not a request
gets an error reply, never an exception in the daemon.

Permissions: the socket is 0660 and belongs to group `edgegw` when that
group exists (else the service user's group); the state dir is 0750 with
the same group, so members of the group can use the CLI without sudo.
"""
from __future__ import annotations

import asyncio
import errno
import grp
import json
import logging
import os
import shutil
import socket
import stat
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import clock, payloads

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
HISTORY_NAME = "history.jsonl"
GROUP = "edgegw"
MAX_CLIENTS = 16
MAX_LINE = 64 * 1024
IDLE_TIMEOUT_S = 60.0
WRITE_TIMEOUT_S = 5.0
WATCH_QUEUE = 256
HISTORY_MAX_LINES = 5000


def socket_path(state_dir) -> Path:
    return Path(state_dir) / SOCKET_NAME


# =========================================================================== history

class History:
    """The daemon's fault-event history: JSON lines, bounded.

    The live file is rotated to `.1` at half the cap, so the two files hold
    at most HISTORY_MAX_LINES events and the SD card never fills with it.
    Appends are not fsynced: the outbox is the durable record; this is the
    engineer's view of what happened on site.
    """

    def __init__(self, path, max_lines: int = HISTORY_MAX_LINES) -> None:
        self.path = Path(path)
        self.old = self.path.with_name(self.path.name + ".1")
        self.rotate_at = max(1, max_lines // 2)
        self._lines: int | None = None

    def _count(self) -> int:
        try:
            with open(self.path, "rb") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    def append(self, records: list[dict]) -> None:
        if not records:
            return
        if self._lines is None:
            self._lines = self._count()
        if self._lines + len(records) > self.rotate_at:
            try:
                os.replace(self.path, self.old)
            except FileNotFoundError:
                pass
            self._lines = 0
        data = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, data.encode())
        finally:
            os.close(fd)
        self._lines += len(records)

    def read(self, limit: int | None = None, devices: list[str] | None = None) -> list[dict]:
        """Oldest first; the last `limit` events of `devices` (all when empty)."""
        out: list[dict] = []
        for p in (self.old, self.path):
            try:
                with open(p, encoding="utf-8") as f:
                    for line in f:
                        try:
                            rec = json.loads(line)
                        except ValueError:
                            continue   # a line torn by a power cut
                        if isinstance(rec, dict) and (not devices or rec.get("device") in devices):
                            out.append(rec)
            except FileNotFoundError:
                continue
        return out[-limit:] if limit else out


def history_record(ev) -> dict:
    f = ev.fault
    return {"ts": ev.ts, "device": ev.device, "model": ev.model, "code": ev.code, "state": ev.state,
            "severity": f.severity, "kind": f.kind, "ref": f.ref, "valve_closed": f.valve_closed,
            "site_visit": f.site_visit, "since": ev.since,
            "meaning": {"en": f.en.meaning, "zh": f.zh.meaning}}


# =========================================================================== status

def fault_entry(code: str, info: dict, model) -> dict:
    """The state topic's fault summary, plus every remedy step for `edgegw faults`."""
    item = payloads.fault_summary(code, info, model)
    try:
        f = model.fault(code)
    except KeyError:
        return item
    item["remedy_steps"] = {"en": list(f.en.remedy), "zh": list(f.zh.remedy)}
    item["causes"] = {"en": list(f.en.causes), "zh": list(f.zh.causes)}
    return item


def split_active(active: dict, model) -> tuple[list[dict], list[dict]]:
    faults: list[dict] = []
    states: list[dict] = []
    for code, info in sorted(active.items()):
        item = fault_entry(code, info or {}, model)
        (states if item.get("kind") == "state" else faults).append(item)
    return faults, states


def _availability(available) -> str:
    return "unknown" if available is None else "online" if available else "unavailable"


def device_entry(daemon, name: str) -> dict:
    rt = daemon.runtimes[name]
    faults, states = split_active(daemon.interps[name].active(), rt.model)
    return {
        "name": name, "model": rt.model.id, "model_name": {"en": rt.model.name_en, "zh": rt.model.name_zh},
        "bus": daemon.bus_of[name], "unit": rt.cfg.unit, "availability": _availability(rt.available),
        "last_good_ts": rt.last_good_ts, "last_error": rt.last_error, "last_error_ts": rt.last_error_ts,
        "counters": dict(rt.counters), "values": payloads.published_values(rt.model, rt.last_values),
        "faults": faults, "states": states,
    }


def build_status(daemon) -> dict:
    """Everything `edgegw status` shows, from the running daemon's memory."""
    cfg = daemon.cfg
    stats = daemon.outbox.stats() if daemon.outbox else {}
    link = daemon.link
    bus_ports = {b.name: b.port for b in cfg.buses}
    body = payloads.envelope()
    body.update({
        "daemon": {"running": True, "pid": os.getpid(), "version": _version(), "started": daemon.started_ts,
                   "uptime_s": round(time.monotonic() - daemon.started_mono, 1),
                   "socket": str(socket_path(cfg.gateway.state_dir))},
        "gateway": {"id": cfg.gateway.id, "site": cfg.gateway.site, "language": cfg.gateway.language},
        "broker": {"host": cfg.mqtt.host, "port": cfg.mqtt.port, "tls": cfg.mqtt.tls is not None,
                   "connected": bool(link and link.connected), "connects": link.connects if link else 0,
                   "last_error": link.last_error if link else None},
        "clock": {"synced": clock.clock_synced()},
        "outbox": {k: stats.get(k) for k in ("backlog_msgs", "backlog_bytes", "oldest_age_s", "inflight",
                                             "dropped", "health", "health_detail")},
        "buses": {b.cfg.name: {**b.stats.summary(), "port": bus_ports.get(b.cfg.name)} for b in daemon.buses},
        "devices": [device_entry(daemon, n) for n in daemon.runtimes],
    })
    return body


def _version() -> str:
    from . import __version__
    return __version__


def recorded_status(cfg, models, why: str) -> dict:
    """What the stopped daemon last wrote to <state_dir>/state.json, shaped like build_status."""
    path = Path(cfg.gateway.state_dir) / "state.json"
    body = payloads.envelope()
    body.update({
        "daemon": {"running": False, "why": why, "socket": str(socket_path(cfg.gateway.state_dir))},
        "gateway": {"id": cfg.gateway.id, "site": cfg.gateway.site, "language": cfg.gateway.language},
        "recorded": {"path": str(path), "when": None},
        "devices": [],
    })
    recorded, err = read_state(path)
    if err:
        body["recorded"]["error"] = err
    if recorded is not None:
        body["recorded"]["when"] = _mtime_iso(path)
    for dc in cfg.devices:
        if not dc.enabled:
            continue
        model = models.get(dc.model)
        rec = (recorded or {}).get(dc.name) or {}
        faults, states = split_active(rec.get("active") or {}, model) if model else ([], [])
        body["devices"].append({
            "name": dc.name, "model": dc.model,
            "model_name": {"en": model.name_en, "zh": model.name_zh} if model else {},
            "bus": dc.bus, "unit": dc.unit, "availability": _availability(rec.get("available")),
            "last_good_ts": rec.get("last_good_ts"), "last_error": rec.get("last_error"),
            "last_error_ts": None, "counters": None, "values": rec.get("values") or {},
            "faults": faults, "states": states,
        })
    return body


def read_state(path: Path) -> tuple[dict | None, str | None]:
    """The state store's "devices" table, or (None, why not).

    The file is checked before StateStore opens it: StateStore moves an
    unreadable file aside, and a read-only command must not do that."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, exc.strerror or str(exc)
    try:
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a table")
    except (UnicodeDecodeError, ValueError) as exc:
        return None, f"unreadable ({exc})"
    from .state import StateStore
    try:
        return StateStore(str(path)).all("devices"), None
    except OSError as exc:
        return None, exc.strerror or str(exc)


def _mtime_iso(path: Path) -> str | None:
    try:
        m = path.stat().st_mtime
    except OSError:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(m)) + f".{int(m % 1 * 1000):03d}Z"


# =========================================================================== server

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


class ControlServer:
    def __init__(self, daemon) -> None:
        from .commands import Commands
        self.daemon = daemon
        self.path = socket_path(daemon.cfg.gateway.state_dir)
        self.history = History(Path(daemon.cfg.gateway.state_dir) / HISTORY_NAME)
        self.commands = Commands(self)
        self._server: asyncio.base_events.Server | None = None
        self._clients: set[asyncio.Task] = set()
        self._watchers: set[_Watcher] = set()
        self._scanning: set[str] = set()
        self._diag_lock = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Bind the socket. Failing to serve diagnostics must not stop the
        gateway from doing its job, so problems are logged, not raised."""
        from .diag import lock_path
        sd = Path(self.daemon.cfg.gateway.state_dir)
        # The CLI takes this same lock before it opens a serial port itself.
        for b in self.daemon.buses:
            if b.cfg.kind == "serial":
                b.lock_path = str(lock_path(sd, b.cfg.name))
        gid = _group_id()
        try:
            os.chown(sd, -1, gid)
        except OSError as exc:
            log.warning("control: cannot give %s to group %s: %s", sd, gid, exc.strerror)
        try:
            if self.path.exists() or self.path.is_symlink():
                if _socket_alive(self.path):
                    log.error("control: another daemon answers on %s; not serving the control socket", self.path)
                    return
                if not stat.S_ISSOCK(self.path.lstat().st_mode):
                    log.error("control: %s exists and is not a socket; not serving the control socket", self.path)
                    return
                self.path.unlink()
            # umask makes the socket 0660 from its first instant: no window
            # in which anyone else could connect.
            old = os.umask(0o117)
            try:
                self._server = await asyncio.start_unix_server(self._serve, path=str(self.path),
                                                               limit=MAX_LINE)
            finally:
                os.umask(old)
            os.chmod(self.path, 0o660)
            try:
                os.chown(self.path, -1, gid)
            except OSError as exc:
                log.warning("control: cannot give %s to group %s: %s", self.path, gid, exc.strerror)
            log.info("control: serving %s", self.path)
        except OSError as exc:
            log.error("control: cannot serve %s: %s", self.path, exc)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._clients) + list(self.commands.tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            try:
                self.path.unlink()
            except OSError:
                pass
            self._server = None

    # -- fed by Daemon._sink -----------------------------------------------

    def observe(self, d, reading, events) -> None:
        """One processed reading: fault events go to the history file, the
        reading to live watchers. Never raises: the pipeline comes first."""
        try:
            if events:
                self.history.append([history_record(ev) for ev in events])
        except OSError as exc:
            log.warning("control: cannot append to %s: %s", self.history.path, exc)
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

    # -- connections ---------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            if len(self._clients) > MAX_CLIENTS:
                await self._write(writer, {"id": None, "ok": False, "code": "busy",
                                           "error": f"too many clients (at most {MAX_CLIENTS})"})
                return
            await self._session(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one client's trouble is not the daemon's
            log.exception("control: client session failed")
        finally:
            self._clients.discard(task)
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (OSError, TimeoutError, asyncio.CancelledError):
                pass

    async def _session(self, reader, writer) -> None:
        while True:
            try:
                line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT_S)
            except (ValueError, asyncio.LimitOverrunError):
                await self._write(writer, {"id": None, "ok": False, "code": "bad_request",
                                           "error": f"request longer than {MAX_LINE} bytes"})
                return
            if not line:
                return
            if not line.strip():
                continue
            req_id, reply = None, None
            try:
                try:
                    req = json.loads(line)
                except ValueError as exc:
                    raise RequestError("bad_request", f"not JSON: {exc}") from None
                if not isinstance(req, dict):
                    raise RequestError("bad_request", "a request is a JSON object {id, cmd, args}")
                req_id = req.get("id")
                if not isinstance(req_id, (str, int, type(None))) or isinstance(req_id, bool):
                    req_id = None
                    raise RequestError("bad_request", "id must be a string, a number or null")
                cmd = req.get("cmd")
                args = req.get("args")
                args = {} if args is None else args
                if not isinstance(cmd, str):
                    raise RequestError("bad_request", "cmd must be a string")
                if not isinstance(args, dict):
                    raise RequestError("bad_request", "args must be a JSON object")
                handler = self.HANDLERS.get(cmd)
                if handler is None:
                    raise RequestError("unknown_cmd", f"unknown cmd {cmd!r} (known: {', '.join(self.HANDLERS)})")

                async def send(obj: dict, _id=req_id) -> None:
                    await self._write(writer, {"id": _id, **obj})
                result = await handler(self, args, send)
                reply = {"id": req_id, "ok": True, "result": result}
            except RequestError as exc:
                reply = {"id": req_id, "ok": False, "code": exc.code, "error": exc.message}
            except (ConnectionError, TimeoutError, asyncio.CancelledError):
                raise
            except Exception as exc:  # noqa: BLE001 - reported to the client, logged for us
                log.exception("control: request failed")
                reply = {"id": req_id, "ok": False, "code": "internal", "error": f"{type(exc).__name__}: {exc}"}
            await self._write(writer, reply)

    async def _write(self, writer: asyncio.StreamWriter, obj: dict) -> None:
        writer.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str).encode() + b"\n")
        # A client that does not read gets dropped, not waited for.
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)

    # -- helpers ----------------------------------------------------------------

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

    # -- requests ---------------------------------------------------------------

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
        from .doors import doorlog_view
        try:
            return doorlog_view(self.daemon, controller)
        except KeyError as exc:
            raise RequestError("unknown_controller", str(exc.args[0] if exc.args else exc)) from None

    async def h_read(self, args, send) -> dict:
        from .diag import read_registers
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
        from .diag import ident_plan, probe_unit
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
        from .diag import live_diag
        if self._diag_lock.locked():
            raise RequestError("busy", "a diag is already running")
        async with self._diag_lock:
            return await live_diag(self.daemon)

    HANDLERS = {
        "ping": h_ping, "status": h_status, "faults": h_faults, "history": h_history, "scan": h_scan,
        "read": h_read, "watch": h_watch, "diag": h_diag, "repoll": h_repoll, "doorlog": h_doorlog,
    }


def _group_id() -> int:
    try:
        return grp.getgrnam(GROUP).gr_gid
    except KeyError:
        return os.getgid()


def _socket_alive(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


# =========================================================================== client

class DaemonDown(Exception):
    """Nothing answers on the socket: the daemon is not running."""


class DaemonDenied(Exception):
    """The socket is there but this user may not use it."""


class DaemonError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ControlClient:
    def __init__(self, path, timeout: float = 15.0) -> None:
        self.path = str(path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""
        self._n = 0

    def connect(self) -> "ControlClient":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.path)
        except PermissionError as exc:
            s.close()
            raise DaemonDenied(str(exc)) from None
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            s.close()
            raise DaemonDown(str(exc)) from None
        except OSError as exc:
            s.close()
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise DaemonDenied(str(exc)) from None
            raise DaemonDown(str(exc)) from None
        self._sock = s
        return self

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self):
        return self.connect() if self._sock is None else self

    def __exit__(self, *exc) -> None:
        self.close()

    def _line(self) -> dict:
        assert self._sock is not None
        while b"\n" not in self._buf:
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                raise DaemonError("timeout", f"no answer from the daemon within {self.timeout:.0f} s") from None
            if not chunk:
                raise DaemonError("closed", "the daemon closed the connection")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def send(self, cmd: str, args: dict | None = None) -> int:
        self._n += 1
        req = {"id": self._n, "cmd": cmd, "args": args or {}}
        assert self._sock is not None
        try:
            self._sock.sendall(json.dumps(req).encode() + b"\n")
        except OSError as exc:
            raise DaemonError("closed", f"cannot send to the daemon: {exc}") from None
        return self._n

    def request(self, cmd: str, args: dict | None = None,
                on_progress: Callable[[dict], None] | None = None) -> object:
        """One request; progress lines go to on_progress; the result, or DaemonError."""
        if self._sock is None:
            self.connect()
        rid = self.send(cmd, args)
        while True:
            msg = self._line()
            if msg.get("id") not in (rid, None):
                continue
            if "progress" in msg:
                if on_progress is not None:
                    on_progress(msg["progress"])
                continue
            if "event" in msg:
                continue
            if msg.get("ok"):
                return msg.get("result")
            raise DaemonError(msg.get("code") or "error", msg.get("error") or "failed")

    def events(self, cmd: str, args: dict | None = None):
        """A streaming request (watch): yields each event until the daemon ends it."""
        if self._sock is None:
            self.connect()
        rid = self.send(cmd, args)
        while True:
            msg = self._line()
            if msg.get("id") != rid:
                continue
            if "event" in msg:
                yield msg["event"]
                continue
            if msg.get("ok") is False:
                raise DaemonError(msg.get("code") or "error", msg.get("error") or "failed")
            return


# =========================================================================== CLI side

@dataclass
class Site:
    path: str
    cfg: Config
    models: dict
    lang: str
    color: bool
    state_dir: Path

    @property
    def socket(self) -> Path:
        return socket_path(self.state_dir)

    def client(self, timeout: float = 15.0) -> ControlClient:
        return ControlClient(self.socket, timeout)


def err(msg: str) -> None:
    print(f"edgegw: {msg}", file=sys.stderr)


_SECRETS = ("mqtt.credentials_file", "mqtt.tls")


def load_cfg(path: str, models: dict):
    """The site config for a field command: (config, problems).

    The MQTT password and the TLS key are the service user's (mode 0600), so
    a member of group edgegw cannot read them; the commands need neither (the
    daemon, which can, talks to the broker). When those unreadable files are
    the only problems, the rest of the config is used as is."""
    from .config import ConfigError, load_config
    try:
        return load_config(path, known_models=models.keys()), []
    except ConfigError as exc:
        problems = exc.problems
    if not all(p.startswith(_SECRETS) and "cannot be read" in p for p in problems):
        return None, problems
    return _without_secrets(path, models), problems


def _without_secrets(path: str, models: dict):
    import tomllib

    from . import config as C

    class Checker(C._Checker):
        def existing_file(self, kp, v):
            if not kp.startswith(_SECRETS):
                return super().existing_file(kp, v)
            got = self.string(kp, v)
            return got if got is C._BAD else self.resolve(got)

        def credentials(self, kp, v):
            got = self.existing_file(kp, v)
            return got if got is C._BAD else (None, None)

    try:
        doc = tomllib.loads(Path(path).read_bytes().decode("utf-8-sig"))
    except (OSError, ValueError):
        return None
    checker = Checker(Path(os.path.abspath(path)), models.keys())
    cfg = checker.document(doc)
    return None if checker.problems else cfg


def load_site(args) -> Site | int:
    """The site config named by --config; the exit code 2 (with the reason
    printed) when it cannot be used."""
    from protocols.models import load_models

    from . import i18n
    from .views import use_color

    path = str(getattr(args, "config", None) or "/etc/edgegw/edgegw.toml")
    lang = i18n.norm(getattr(args, "lang", None))
    color = use_color() and not getattr(args, "json", False)
    models = load_models()
    cfg, problems = load_cfg(path, models)
    if cfg is None:
        lang = lang or _raw_language(path) or "en"
        if len(problems) == 1 and problems[0].startswith(path + ":"):
            err(i18n.t(lang, "er.no_config", path=path, why=problems[0][len(path) + 1:].strip()))
        else:
            err(i18n.t(lang, "er.config_bad", path=path, n=len(problems)))
        return 2
    return Site(path=path, cfg=cfg, models=models, lang=lang or cfg.gateway.language, color=color,
                state_dir=Path(cfg.gateway.state_dir))


def _raw_language(path: str) -> str | None:
    import tomllib
    from . import i18n
    try:
        with open(path, "rb") as f:
            return i18n.norm(tomllib.load(f).get("gateway", {}).get("language"))
    except (OSError, ValueError, AttributeError):
        return None


def daemon_error(site: Site, exc: Exception) -> int:
    from .i18n import t
    if isinstance(exc, DaemonDenied):
        err(t(site.lang, "er.denied", sock=site.socket))
    elif isinstance(exc, DaemonDown):
        err(t(site.lang, "er.daemon_down", sock=site.socket))
    else:
        err(t(site.lang, "er.daemon_error", err=getattr(exc, "message", str(exc))))
    return 2


def print_json(obj) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


def cmd_status(args) -> int:
    from .views import problems, render_status
    site = load_site(args)
    if isinstance(site, int):
        return site
    try:
        with site.client() as c:
            st = c.request("status")
        rc = None
    except DaemonDenied as exc:
        return daemon_error(site, exc)
    except DaemonDown:
        st = recorded_status(site.cfg, site.models, f"no answer on {site.socket}")
        rc = 2
    except DaemonError as exc:
        return daemon_error(site, exc)
    if args.json:
        print_json(st)
    else:
        sys.stdout.write(render_status(st, site.lang, site.color))
    if rc is None:
        rc = 1 if any(p["level"] == "fail" for p in problems(st)) else 0
    return rc


def cmd_watch(args) -> int:
    from . import i18n
    from .views import clip, render_watch_table, watch_line
    site = load_site(args)
    if isinstance(site, int):
        return site
    tty = site.color or (sys.stdout.isatty() and not args.json)
    shown = 0
    latest: dict[str, dict] = {}
    drawn = 0
    lost = 0
    try:
        with site.client(timeout=max(60.0, 10 * _longest_interval(site))) as c:
            if tty:
                print(i18n.t(site.lang, "wt.title", n=len(args.devices) or len(site.cfg.devices)))
            for ev in c.events("watch", {"devices": list(args.devices)}):
                initial = ev.get("ok") is None
                lost += ev.get("lost", 0)
                if args.json:
                    print(json.dumps(ev, ensure_ascii=False), flush=True)
                elif tty:
                    latest[ev["device"]] = ev
                    cols = shutil.get_terminal_size((100, 24)).columns
                    table = [clip(x, cols - 1) for x in render_watch_table(latest, site.lang, site.color, lost)]
                    # Redraw in place: cursor up over the previous table, clear to the end.
                    sys.stdout.write((f"\x1b[{drawn}F\x1b[J" if drawn else "") + "\n".join(table) + "\n")
                    sys.stdout.flush()
                    drawn = len(table)
                else:
                    print(watch_line(ev, site.lang), flush=True)
                if not initial:
                    shown += 1
                    if args.count and shown >= args.count:
                        return 0
    except (DaemonDown, DaemonDenied) as exc:
        if isinstance(exc, DaemonDown):
            err(i18n.t(site.lang, "er.watch_needs_daemon"))
        return daemon_error(site, exc)
    except DaemonError as exc:
        return daemon_error(site, exc)
    return 0


def _longest_interval(site: Site) -> float:
    return max((d.poll_interval_s for d in site.cfg.devices), default=10.0)
