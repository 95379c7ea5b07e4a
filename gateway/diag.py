"""Field diagnostics: port lock, bus scan, raw reads and the `edgegw diag` self-test.

The same functions run inside the daemon (through Bus.call, between polls)
and in the CLI when no daemon runs (on a port the CLI opened itself, under
the same lock), so the two paths cannot drift apart.

The lock: <state_dir>/<bus>.lock, fcntl.flock'ed by whoever has the serial
port open (the daemon's bus task, or `edgegw scan`/`edgegw read`). It lives
in the state dir rather than /run/lock so two gateways on one box (a test
rig, the demo beside a site config) never block each other by bus name,
while the daemon and the CLI of one site, which read the same config,
always meet on the same file.
"""
from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import shutil
import socket
import ssl
import sys
import time
from functools import partial
from pathlib import Path

from . import i18n

BY_ID = "/dev/serial/by-id"
BROKER_TIMEOUT_S = 3.0
CERT_WARN_DAYS = 30


# =========================================================================== lock

def lock_path(state_dir, bus_name: str) -> Path:
    return Path(state_dir) / f"{bus_name}.lock"


def _whoami() -> str:
    argv = sys.argv
    prog = os.path.basename(argv[0]) if argv and argv[0] else "python"
    if prog in ("cli.py", "__main__.py", "edgegw", "-c", "-m"):
        prog = "edgegw"
    sub = argv[1] if len(argv) > 1 and not argv[1].startswith("-") else ""
    return f"{prog} {sub}".strip()


class PortLock:
    """An exclusive flock on a file; the file says who holds it (for the message)."""

    def __init__(self, path) -> None:
        self.path = Path(path)
        self.fd: int | None = None
        self.held = False

    def acquire(self) -> str | None:
        """None when held by us now, else why not ("in use by pid 12 (edgegw run)")."""
        if self.held:
            return None
        if self.fd is None:
            try:
                self.path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
            except OSError as exc:
                # A group member may lock the daemon's existing file read-only;
                # so may the daemon on a read-only filesystem.
                if not isinstance(exc, PermissionError) and exc.errno != errno.EROFS:
                    return f"cannot open the lock file {self.path}: {exc.strerror}"
                try:
                    self.fd = os.open(self.path, os.O_RDONLY)
                except OSError as exc2:
                    if exc.errno == errno.EROFS:
                        # Nothing can create it on a read-only filesystem, so
                        # no other tool can hold it either: polling goes on.
                        self.held = True
                        return None
                    return f"cannot open the lock file {self.path}: {exc2.strerror}"
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return f"in use by {self.holder() or 'another process'} (lock {self.path})"
        except OSError as exc:
            return f"cannot lock {self.path}: {exc.strerror}"
        self.held = True
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"pid {os.getpid()} ({_whoami()})\n".encode(), 0)
        except OSError:
            pass   # opened read-only: the lock holds all the same
        return None

    def holder(self) -> str:
        try:
            return self.path.read_text(errors="replace").strip()
        except OSError:
            return ""

    def release(self) -> None:
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
            self.fd = None
        self.held = False


# =========================================================================== scan / read

def ident_plan(models: dict) -> list[dict]:
    """The reads that identify a model, grouped by register: most models first,
    so a typical unit is recognised with the fewest requests."""
    groups: dict[tuple, dict] = {}
    for m in models.values():
        ident = m.identify
        if not ident:
            continue
        try:
            f = m.field(ident["field"])
        except KeyError:
            continue
        from protocols.modbus.types import register_count
        key = (f.function, f.address, register_count(f), f.type, f.order)
        g = groups.setdefault(key, {"function": f.function, "address": f.address,
                                    "count": register_count(f), "field": f, "candidates": []})
        g["candidates"].append((m.id, ident["equals"]))
    plan = sorted(groups.values(), key=lambda g: (-len(g["candidates"]), g["function"], g["address"]))
    if not plan:
        from protocols.modbus.types import Field
        plan = [{"function": "holding", "address": 0, "count": 1, "field": Field("r", 0), "candidates": []}]
    return plan


async def probe_unit(bus, unit: int, plan: list[dict]) -> dict:
    """Does `unit` answer, and which model is it? A silent unit costs one
    timeout (the first identify read); an answering one up to one read per
    identify register until a model code matches."""
    from protocols.modbus.types import DecodeError, decode
    res: dict = {"unit": unit, "responds": False, "model": None, "ident": None, "answers": [],
                 "response_ms": None}
    for g in plan:
        t0 = time.monotonic()
        out = await bus.probe(unit, g["function"], g["address"], g["count"])
        ms = round((time.monotonic() - t0) * 1000, 1)
        if out == "bus_down":
            raise ConnectionError(f"bus {bus.cfg.name} is down: {bus.stats.last_connect_error or 'connection lost'}")
        if out == "timeout":
            if not res["responds"]:
                return res
            res["answers"].append({"function": g["function"], "address": g["address"], "failure": out})
            continue
        res["responds"] = True
        if res["response_ms"] is None:
            res["response_ms"] = ms
        if not isinstance(out, list):
            res["answers"].append({"function": g["function"], "address": g["address"], "failure": out})
            continue
        try:
            value = decode(g["field"], out)
        except DecodeError:
            value = None
        res["answers"].append({"function": g["function"], "address": g["address"], "value": value})
        for model_id, equals in g["candidates"]:
            if value == equals:
                res["model"] = model_id
                res["ident"] = {"function": g["function"], "address": g["address"], "value": value}
                return res
    return res


async def scan_units(run_unit, first: int, last: int, configured: dict[int, str], progress) -> dict:
    """Probe units first..last one at a time; `progress` (async) after each."""
    found: list[dict] = []
    t0 = time.monotonic()
    total = last - first + 1
    for i, unit in enumerate(range(first, last + 1)):
        res = await run_unit(unit)
        if res["responds"]:
            res["configured_as"] = configured.get(unit)
            found.append(res)
        elapsed = time.monotonic() - t0
        done = i + 1
        await progress({"unit": unit, "done": done, "total": total, "found": len(found),
                        "elapsed_s": round(elapsed, 2), "eta_s": round(elapsed / done * (total - done), 1)})
    return {"first": first, "last": last, "found": found, "elapsed_s": round(time.monotonic() - t0, 2)}


async def read_registers(bus, unit: int, function: str, address: int, count: int) -> dict:
    t0 = time.monotonic()
    out = await bus.read(unit, function, address, count)
    ms = round((time.monotonic() - t0) * 1000, 1)
    if out == "bus_down":
        raise ConnectionError(f"bus {bus.cfg.name} is down: {bus.stats.last_connect_error or 'connection lost'}")
    if isinstance(out, list):
        return {"registers": out, "failure": None, "response_ms": ms}
    return {"registers": None, "failure": out, "response_ms": ms}


class PortError(Exception):
    pass


async def _no_sink(d, reading) -> None:
    pass


async def with_port(state_dir, bus_cfg, fn):
    """Open a bus the way the daemon does, under the same lock, and run fn(bus)."""
    import logging

    from .bus import Bus
    # The CLI explains a failure itself; the bus's reconnect warnings are for the daemon's log.
    logging.getLogger("gateway.bus").setLevel(logging.CRITICAL)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    bus = Bus(bus_cfg, [], _no_sink)
    if bus_cfg.kind == "serial":
        bus.lock_path = str(lock_path(state_dir, bus_cfg.name))
    if not await bus.open():
        bus.close()
        why = bus.stats.last_connect_error or "connect failed"
        # the bus words it for the daemon's log ("<port>: why"); the CLI names the port itself
        raise PortError(why[len(bus_cfg.port) + 2:] if why.startswith(f"{bus_cfg.port}: ") else why)
    try:
        return await fn(bus)
    finally:
        bus.close()


# =========================================================================== checks

def item(check: str, level: str, key: str, label_args: dict | None = None, **args) -> dict:
    return {"check": check, "label_args": label_args or {}, "level": level, "key": key, "args": args}


def check_config(path, started_epoch: float | None = None) -> dict:
    from protocols.models import load_models

    from .config import check_config as _check
    try:
        known = load_models().keys()
    except Exception:  # noqa: BLE001 - a broken model file is reported by config check too
        known = None
    problems = _check(path, known_models=known)
    if problems:
        return item("config", "fail", "dg.config_bad", path=str(path), n=len(problems), first=problems[0])
    if started_epoch is not None:
        try:
            if os.stat(path).st_mtime > started_epoch:
                return item("config", "warn", "dg.config_changed", path=str(path))
        except OSError:
            pass
    return item("config", "pass", "dg.config_ok", path=str(path))


def _by_id_names(real: str) -> list[str]:
    try:
        names = sorted(os.listdir(BY_ID))
    except OSError:
        return []
    return [os.path.join(BY_ID, n) for n in names if os.path.realpath(os.path.join(BY_ID, n)) == real]


def check_port(bus_cfg) -> dict:
    lab = {"bus": bus_cfg.name}
    if bus_cfg.kind == "tcp":
        return item("port", "pass", "dg.port_tcp", lab, where=f"{bus_cfg.port}:{bus_cfg.tcp_port}")
    p = bus_cfg.port
    if not os.path.exists(p):
        return item("port", "fail", "dg.port_missing", lab, port=p)
    real = os.path.realpath(p)
    if p.startswith(BY_ID + "/"):
        return item("port", "pass", "dg.port_byid", lab, port=p, real=real)
    names = _by_id_names(real)
    if names:
        return item("port", "warn", "dg.port_plain", lab, port=p, byid=names[0])
    return item("port", "pass", "dg.port_nobyid", lab, port=p)


def _mqtt_str(s: str) -> bytes:
    b = s.encode("utf-8")
    return len(b).to_bytes(2, "big") + b


def connect_packet(client_id: str, username: str | None, password: str | None, keepalive: int = 10) -> bytes:
    """MQTT 3.1.1 CONNECT, clean session."""
    flags = 0x02
    payload = _mqtt_str(client_id)
    if username is not None:
        flags |= 0x80
        payload += _mqtt_str(username)
        if password is not None:
            flags |= 0x40
            payload += _mqtt_str(password)
    body = _mqtt_str("MQTT") + bytes([4, flags]) + keepalive.to_bytes(2, "big") + payload
    n, rem = len(body), bytearray()
    while True:
        digit, n = n % 128, n // 128
        rem.append(digit | (0x80 if n else 0))
        if not n:
            break
    return bytes([0x10]) + bytes(rem) + body


CONNACK_CODES = {1: "unacceptable protocol version", 2: "client id rejected", 3: "server unavailable",
                 4: "bad user name or password", 5: "not authorised"}


def _cert_expiry(not_after: str) -> dict:
    exp = ssl.cert_time_to_seconds(not_after)
    return {"until": time.strftime("%Y-%m-%d", time.gmtime(exp)), "days": int((exp - time.time()) // 86400)}


def _cert_item(what: str, not_after: str | None, why: str | None = None) -> dict:
    label = "dg.tls_broker" if what == "broker" else "dg.tls_client"
    if why is not None or not not_after:
        return item("tls", "fail", "dg.tls_bad", what_key=label, why=why or "no expiry date")
    e = _cert_expiry(not_after)
    if e["days"] < 0:
        return item("tls", "fail", "dg.tls_expired", what_key=label, until=e["until"])
    level = "warn" if e["days"] < CERT_WARN_DAYS else "pass"
    return item("tls", level, "dg.tls_soon" if level == "warn" else "dg.tls_ok", what_key=label, **e)


def decode_cert_file(path) -> dict:
    # Stdlib only, as the gateway must install without a compiler: the ssl
    # module's own PEM decoder (private, so guarded by the caller).
    return ssl._ssl._test_decode_cert(str(path))  # type: ignore[attr-defined]


def check_broker(mqtt, timeout: float = BROKER_TIMEOUT_S) -> list[dict]:
    """TCP connect, TLS handshake when configured, MQTT CONNECT with the
    site's credentials under a client id of its own (the daemon's session
    is not disturbed), then DISCONNECT."""
    where = f"{mqtt.host}:{mqtt.port}"
    out: list[dict] = []
    t0 = time.monotonic()
    sock = None
    try:
        sock = socket.create_connection((mqtt.host, mqtt.port), timeout=timeout)
        sock.settimeout(timeout)
        if mqtt.tls is not None:
            ctx = ssl.create_default_context(cafile=str(mqtt.tls.ca_file))
            if mqtt.tls.cert_file:
                ctx.load_cert_chain(str(mqtt.tls.cert_file), str(mqtt.tls.key_file))
            if mqtt.tls.insecure:
                ctx.check_hostname = False
            try:
                sock = ctx.wrap_socket(sock, server_hostname=mqtt.host)
            except ssl.SSLCertVerificationError as exc:
                out.append(_cert_item("broker", None, exc.verify_message or str(exc)))
                raise
            not_after = (sock.getpeercert() or {}).get("notAfter")
            out.append(_cert_item("broker", not_after if isinstance(not_after, str) else None))
        sock.sendall(connect_packet(f"{mqtt.client_id}-diag", mqtt.username, mqtt.password))
        ack = b""
        while len(ack) < 4:
            chunk = sock.recv(4 - len(ack))
            if not chunk:
                raise ConnectionError("the broker closed the connection before CONNACK")
            ack += chunk
        if ack[0] != 0x20:
            raise ConnectionError(f"not an MQTT broker (answered 0x{ack[0]:02x})")
        rc = ack[3]
        ms = round((time.monotonic() - t0) * 1000)
        if rc:
            out.insert(0, item("broker", "fail", "dg.broker_refused", where=where,
                               why=CONNACK_CODES.get(rc, f"code {rc}")))
        else:
            try:
                sock.sendall(b"\xe0\x00")
            except OSError:
                pass
            who = mqtt.username
            out.insert(0, item("broker", "pass", "dg.broker_ok", where=where, ms=ms,
                               who_key="dg.broker_who" if who else None, user=who or ""))
    except (OSError, ssl.SSLError) as exc:
        why = getattr(exc, "verify_message", None) or getattr(exc, "strerror", None) or str(exc) \
            or type(exc).__name__
        if isinstance(exc, TimeoutError) or isinstance(exc, socket.timeout):
            why = f"no answer within {timeout:.0f} s"
        out.insert(0, item("broker", "fail", "dg.broker_unreachable", where=where, why=why))
    finally:
        if sock is not None:
            sock.close()
    if mqtt.tls is not None and mqtt.tls.cert_file:
        try:
            na = decode_cert_file(mqtt.tls.cert_file).get("notAfter")
            out.append(_cert_item("client", na))
        except Exception as exc:  # noqa: BLE001 - ssl's decoder raises various things
            out.append(_cert_item("client", None, f"cannot decode {mqtt.tls.cert_file}: {exc}"))
    return out


def check_clock() -> dict:
    from . import clock
    synced = clock.clock_synced()
    return item("clock", "pass" if synced else "warn", "dg.clock_ok" if synced else "dg.clock_bad")


def check_disk(state_dir) -> dict:
    p = Path(state_dir)
    while not p.exists() and p != p.parent:
        p = p.parent
    du = shutil.disk_usage(p)
    pct = round(du.free * 100 / du.total, 1) if du.total else 0.0
    mib = 1 << 20
    level = "fail" if du.free < 50 * mib or pct < 2 else "warn" if du.free < 500 * mib or pct < 10 else "pass"
    return item("disk", level, "dg.disk", path=str(state_dir), free=i18n.size(du.free),
                total=i18n.size(du.total), pct=pct)


def static_checks(cfg, started_epoch: float | None = None) -> list[dict]:
    """The checks that need no daemon; blocking (the daemon runs them in a thread)."""
    items = [check_config(cfg.path, started_epoch)]
    items += [check_port(b) for b in cfg.buses]
    items += check_broker(cfg.mqtt)
    items.append(check_clock())
    items.append(check_disk(cfg.gateway.state_dir))
    return items


def bus_item(name: str, s: dict | None, offline: bool = False) -> dict:
    lab = {"bus": name}
    if s is None:
        return item("bus", "warn", "dg.bus_offline" if offline else "dg.bus_idle", lab)
    if not s.get("connected"):
        return item("bus", "fail", "dg.bus_down", lab, err=s.get("last_connect_error") or "-")
    req = s.get("requests") or 0
    level = "pass"
    if req and (s.get("timeouts", 0) / req > 0.2 or s.get("crc_errors", 0) / req > 0.01):
        level = "warn"
    mean, p95 = s.get("response_ms_mean"), s.get("response_ms_p95")
    return item("bus", level, "dg.bus", lab, requests=req, timeouts=s.get("timeouts", 0),
                crc=s.get("crc_errors", 0), exc=s.get("exceptions", 0),
                mean="-" if mean is None else mean, p95="-" if p95 is None else p95)


def device_item(name: str, availability: str, last_error, last_error_ts, recorded: bool = False) -> dict:
    lab = {"device": name}
    extra = {"rec_key": "dg.recorded"} if recorded else {}
    if availability == "unavailable":
        return item("device", "fail", "dg.dev_down", lab, err=last_error or "-", ts=last_error_ts or "-", **extra)
    if availability != "online":
        return item("device", "warn", "dg.dev_unknown", lab, **extra)
    if last_error:
        return item("device", "pass", "dg.dev_ok_err", lab, err=last_error, ts=last_error_ts or "-", **extra)
    return item("device", "pass", "dg.dev_ok", lab, **extra)


def _order(items: list[dict]) -> list[dict]:
    rank = {"config": 0, "daemon": 1, "port": 2, "broker": 3, "tls": 4, "clock": 5, "disk": 6,
            "backlog": 7, "bus": 8, "device": 9}
    return sorted(items, key=lambda c: rank.get(c["check"], 99))   # stable: keeps config order within


def finish(gateway: str, running: bool, items: list[dict]) -> dict:
    """The diag result: checks in report order, each with its text in both
    languages for consumers of the MQTT reply, and the verdict."""
    from . import clock
    from .views import check_label, check_text, verdict, verdict_text
    checks = _order(items)
    for c in checks:
        c["label"] = {lang: check_label(c, lang) for lang in i18n.LANGS}
        c["text"] = {lang: check_text(c, lang) for lang in i18n.LANGS}
    v = verdict(checks)
    return {"v": 1, "ts": clock.utc_now_iso(), "gateway": gateway, "daemon": running, "checks": checks,
            "verdict": {"level": v["level"], "fails": v["fails"], "warns": v["warns"],
                        "text": {lang: verdict_text(checks, lang) for lang in i18n.LANGS}}}


async def live_diag(daemon) -> dict:
    cfg = daemon.cfg
    started_epoch = time.time() - (time.monotonic() - daemon.started_mono)
    loop = asyncio.get_running_loop()
    items = await loop.run_in_executor(None, partial(static_checks, cfg, started_epoch))
    items.append(item("daemon", "pass", "dg.daemon_up", pid=os.getpid(),
                      up_s=round(time.monotonic() - daemon.started_mono)))
    st = daemon.outbox.stats() if daemon.outbox else {}
    if st.get("health") not in (None, "ok"):
        items.append(item("backlog", "fail", "dg.backlog_store", health=st.get("health"),
                          detail=st.get("health_detail") or ""))
    else:
        dropped = st.get("dropped") or {}
        old = (st.get("oldest_age_s") or 0) > 600
        level = "warn" if old or dropped.get("event") else "pass"
        items.append(item("backlog", level, "dg.backlog", n=st.get("backlog_msgs", 0),
                          size=i18n.size(st.get("backlog_bytes")), age_s=st.get("oldest_age_s"),
                          dropped=sum(dropped.values())))
    running = {b.cfg.name: b for b in daemon.buses}
    for bc in cfg.buses:
        b = running.get(bc.name)
        items.append(bus_item(bc.name, b.stats.summary() if b else None))
    for name, rt in daemon.runtimes.items():
        av = "unknown" if rt.available is None else "online" if rt.available else "unavailable"
        items.append(device_item(name, av, rt.last_error, rt.last_error_ts))
    return finish(cfg.gateway.id, True, items)


def offline_diag(cfg, models, why: str) -> dict:
    from .control import read_state
    items = static_checks(cfg)
    items.append(item("daemon", "fail", "dg.daemon_down", why=why))
    db = Path(cfg.gateway.state_dir) / "outbox.db"
    try:
        size = db.stat().st_size
    except OSError:
        size = 0
    items.append(item("backlog", "pass", "dg.backlog_file", size=i18n.size(size)))
    for bc in cfg.buses:
        items.append(bus_item(bc.name, None, offline=True))
    recorded, _err = read_state(Path(cfg.gateway.state_dir) / "state.json")
    for dc in cfg.devices:
        if not dc.enabled:
            continue
        rec = (recorded or {}).get(dc.name) or {}
        a = rec.get("available")
        av = "unknown" if a is None else "online" if a else "unavailable"
        items.append(device_item(dc.name, av, rec.get("last_error"), None, recorded=True))
    return finish(cfg.gateway.id, False, items)


# =========================================================================== CLI

def _units(spec: str) -> tuple[int, int] | None:
    try:
        if "-" in spec:
            a, b = spec.split("-", 1)
            first, last = int(a), int(b)
        else:
            first = last = int(spec)
    except ValueError:
        return None
    if not 1 <= first <= last <= 247:
        return None
    return first, last


def _bus_cfg(site, name: str):
    for b in site.cfg.buses:
        if b.name == name:
            return b
    return None


def _site_and_bus(args):
    """The site and the configured bus a scan/read names; (exit code, None) if not."""
    from .control import err, load_site
    site = load_site(args)
    if isinstance(site, int):
        return site, None
    bc = _bus_cfg(site, args.bus)
    if bc is None:
        err(i18n.t(site.lang, "er.no_bus", bus=args.bus,
                   known=", ".join(b.name for b in site.cfg.buses) or "-"))
        return 2, None
    return site, bc


def cmd_scan(args) -> int:
    from .control import DaemonDenied, DaemonDown, DaemonError, daemon_error, err, print_json
    from .views import progress_line, render_scan
    site, bc = _site_and_bus(args)
    if isinstance(site, int):
        return site
    lang = site.lang
    units = _units(args.units)
    if units is None:
        err(i18n.t(lang, "er.units", units=args.units))
        return 2
    first, last = units
    show = not args.json and _isatty(sys.stderr)
    cols = shutil.get_terminal_size((80, 24)).columns

    def on_progress(p: dict) -> None:
        if show:
            sys.stderr.write("\r\x1b[K" + progress_line(p, lang, cols))
            sys.stderr.flush()

    plan = ident_plan(site.models)
    result = None
    via = "direct"
    try:
        with site.client(timeout=15.0 + bc.timeout_s * (1 + bc.retries) * (len(plan) + 1)) as c:
            result = c.request("scan", {"bus": bc.name, "first": first, "last": last}, on_progress=on_progress)
    except DaemonDenied as exc:
        return daemon_error(site, exc)
    except DaemonDown:
        pass
    except DaemonError as exc:
        if exc.code != "no_bus_task":
            if show:
                sys.stderr.write("\r\x1b[K")
            return daemon_error(site, exc)
        via = "direct_idle"
    if result is None:
        configured = {d.unit: d.name for d in site.cfg.devices if d.bus == bc.name}

        async def progress(p: dict) -> None:
            on_progress(p)

        async def run(bus):
            return await scan_units(lambda u: probe_unit(bus, u, plan), first, last, configured, progress)
        try:
            result = asyncio.run(with_port(site.state_dir, bc, run))
        except (PortError, ConnectionError) as exc:
            if show:
                sys.stderr.write("\r\x1b[K")
            err(i18n.t(lang, "er.port", port=bc.port, why=str(exc)))
            return 2
        result.update({"bus": bc.name, "port": bc.port, "via": via})
    if show:
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()
    if args.json:
        print_json(result)
    else:
        sys.stdout.write(render_scan(result, lang, site.color))
    return 0 if result.get("found") else 1


def cmd_read(args) -> int:
    from protocols.modbus.types import decode_all

    from .control import DaemonDenied, DaemonDown, DaemonError, daemon_error, err, print_json
    from .views import render_read
    site, bc = _site_and_bus(args)
    if isinstance(site, int):
        return site
    lang = site.lang
    if not (0 <= args.unit <= 247 and 0 <= args.address <= 65535 and 1 <= args.count <= 125
            and args.address + args.count <= 65536):
        err("unit 0-247, address 0-65535, count 1-125")
        return 2
    function = "input" if args.input else "holding"
    req = {"bus": bc.name, "unit": args.unit, "address": args.address, "count": args.count, "function": function}
    result = None
    via = "direct"
    try:
        with site.client(timeout=15.0 + bc.timeout_s * (1 + bc.retries)) as c:
            result = c.request("read", req)
    except DaemonDenied as exc:
        return daemon_error(site, exc)
    except DaemonDown:
        pass
    except DaemonError as exc:
        if exc.code != "no_bus_task":
            return daemon_error(site, exc)
        via = "direct_idle"
    if result is None:
        async def run(bus):
            return await read_registers(bus, args.unit, function, args.address, args.count)
        try:
            out = asyncio.run(with_port(site.state_dir, bc, run))
        except (PortError, ConnectionError) as exc:
            err(i18n.t(lang, "er.port", port=bc.port, why=str(exc)))
            return 2
        result = {**req, "port": bc.port, "via": via, **out}
    result["decoded"] = decode_all(result["registers"]) if result.get("registers") else []
    if args.json:
        print_json(result)
    else:
        sys.stdout.write(render_read(result, lang, site.color))
    return 0 if result.get("registers") is not None else 1


def cmd_diag(args) -> int:
    from protocols.models import load_models

    from .control import (ControlClient, DaemonDenied, DaemonDown, DaemonError, _raw_language, daemon_error,
                          load_cfg, print_json, socket_path)
    from .views import render_diag, use_color
    path = args.config
    models = load_models()
    color = use_color() and not args.json
    cfg, problems = load_cfg(path, models)
    if cfg is None:
        lang = i18n.norm(args.lang) or _raw_language(path) or "en"
        items = [item("config", "fail", "dg.config_bad", path=str(path), n=len(problems),
                      first=problems[0]), check_clock()]
        result = finish("?", False, items)
        _out_diag(result, args, lang, color, print_json, render_diag)
        return 1
    lang = i18n.norm(args.lang) or cfg.gateway.language
    sock = socket_path(cfg.gateway.state_dir)
    try:
        with ControlClient(sock, timeout=30.0) as c:
            result = c.request("diag")
    except DaemonDenied as exc:
        from .control import Site
        return daemon_error(Site(path, cfg, models, lang, color, Path(cfg.gateway.state_dir)), exc)
    except DaemonDown:
        result = offline_diag(cfg, models, f"no answer on {sock}")
    except DaemonError as exc:
        from .control import Site
        return daemon_error(Site(path, cfg, models, lang, color, Path(cfg.gateway.state_dir)), exc)
    _out_diag(result, args, lang, color, print_json, render_diag)
    return 1 if result["verdict"]["fails"] else 0


def _out_diag(result, args, lang, color, print_json, render_diag) -> None:
    if args.json:
        print_json(result)
    else:
        sys.stdout.write(render_diag(result, lang, color))


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

