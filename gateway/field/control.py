"""The daemon's control socket: what the field tools attach to the daemon.

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

Idle connections cannot hold the socket shut: a connection is closed
IDLE_TIMEOUT_S after its last request (blank lines are not requests), and
when all MAX_CLIENTS slots are taken a newcomer takes the slot of the
connection idle the longest. A connection with a request in progress (a
watch or a scan streaming) is never idle; watches are capped (requests.py)
so that they cannot take every slot.

Permissions: the socket is 0660 and belongs to group `edgegw` when that
group exists (else the service user's group); the state dir is 0750 with
the same group, so members of the group can use the CLI without sudo.

The server is also the daemon's `attach`ment (gateway/daemon.py): it sees
every processed reading (fault history, live watchers) and answers the MQTT
commands (field/commands.py). What each request does is in field/requests.py;
the CLI side is field/client.py.
"""
from __future__ import annotations

import asyncio
import grp
import json
import logging
import os
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from .client import socket_path
from .commands import Commands
from .requests import RequestError, Requests

log = logging.getLogger(__name__)

GROUP = "edgegw"
MAX_CLIENTS = 16
MAX_LINE = 64 * 1024
IDLE_TIMEOUT_S = 60.0
WRITE_TIMEOUT_S = 5.0


@dataclass(eq=False)
class _Conn:
    writer: asyncio.StreamWriter
    last_request: float       # monotonic; the connect counts as the first
    busy: bool = False        # a request is being answered (or streamed)


class ControlServer:
    def __init__(self, daemon, requests: type[Requests] = Requests) -> None:
        self.daemon = daemon
        self.path = socket_path(daemon.cfg.gateway.state_dir)
        self.requests = requests(daemon)
        self.commands = Commands(self.requests, daemon)
        self.subscriptions = self.commands.subscriptions
        self._server: asyncio.base_events.Server | None = None
        self._clients: dict[asyncio.Task, _Conn] = {}

    # -- what the daemon calls ------------------------------------------------

    def on_message(self, topic: str, payload: bytes) -> None:
        self.commands.on_message(topic, payload)

    def observe(self, d, reading, events) -> None:
        self.requests.observe(d, reading, events)

    def command_counts(self) -> dict:
        """MQTT commands since start: received, ok, refused, rate_limited."""
        return dict(self.commands.counts)

    async def start(self) -> None:
        """Bind the socket. Failing to serve diagnostics must not stop the
        gateway from doing its job, so problems are logged, not raised."""
        sd = Path(self.daemon.cfg.gateway.state_dir)
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
        self.commands.close()
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

    # -- connections ---------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        conn = _Conn(writer, time.monotonic())
        try:
            if len(self._clients) >= MAX_CLIENTS and not self._evict_idle():
                await self._write(writer, {"id": None, "ok": False, "code": "busy",
                                           "error": f"too many clients (at most {MAX_CLIENTS}), all busy"})
                return
            self._clients[task] = conn
            await self._session(reader, writer, conn)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Only the server cancels a connection (eviction, stop), and
            # nothing awaits its result. Ending it cancelled would make
            # Python 3.11's stream server log "Exception in callback" with
            # a traceback for a connection closed on purpose.
            task.uncancel()
        except Exception:  # noqa: BLE001 - one client's trouble is not the daemon's
            log.exception("control: client session failed")
        finally:
            self._clients.pop(task, None)
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (OSError, TimeoutError, asyncio.CancelledError):
                pass

    def _evict_idle(self) -> bool:
        """Make room: close the connection idle the longest. False if every
        connection is in the middle of a request."""
        idle = [(c.last_request, t) for t, c in self._clients.items() if not c.busy]
        if not idle:
            return False
        _, task = min(idle, key=lambda x: x[0])
        conn = self._clients.pop(task)
        # Said before it is closed; write() only buffers, the close flushes it.
        conn.writer.write(json.dumps({"id": None, "ok": False, "code": "evicted",
                                      "error": f"closed to make room for a new client "
                                               f"(at most {MAX_CLIENTS}; this one was idle)"}).encode() + b"\n")
        task.cancel()
        log.info("control: closed the connection idle the longest to make room for a new one")
        return True

    async def _session(self, reader, writer, conn: _Conn) -> None:
        while True:
            # A deadline from the last request, not from the last line: blank
            # lines (or a line sent a byte at a time) do not keep a slot.
            left = conn.last_request + IDLE_TIMEOUT_S - time.monotonic()
            if left <= 0:
                return
            try:
                line = await asyncio.wait_for(reader.readline(), left)
            except (ValueError, asyncio.LimitOverrunError):
                await self._write(writer, {"id": None, "ok": False, "code": "bad_request",
                                           "error": f"request longer than {MAX_LINE} bytes"})
                return
            if not line:
                return
            if not line.strip():
                continue
            req_id, reply = None, None
            conn.busy = True
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
                handler = self.requests.HANDLERS.get(cmd)
                if handler is None:
                    raise RequestError("unknown_cmd", f"unknown cmd {cmd!r} (known: {', '.join(self.requests.HANDLERS)})")

                async def send(obj: dict, _id=req_id) -> None:
                    await self._write(writer, {"id": _id, **obj})
                result = await handler(self.requests, args, send)
                reply = {"id": req_id, "ok": True, "result": result}
            except RequestError as exc:
                reply = {"id": req_id, "ok": False, "code": exc.code, "error": exc.message}
            except (ConnectionError, TimeoutError, asyncio.CancelledError):
                raise
            except Exception as exc:  # noqa: BLE001 - reported to the client, logged for us
                log.exception("control: request failed")
                reply = {"id": req_id, "ok": False, "code": "internal", "error": f"{type(exc).__name__}: {exc}"}
            try:
                await self._write(writer, reply)
            finally:
                conn.busy = False
                conn.last_request = time.monotonic()

    async def _write(self, writer: asyncio.StreamWriter, obj: dict) -> None:
        writer.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str).encode() + b"\n")
        # A client that does not read gets dropped, not waited for.
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)


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
