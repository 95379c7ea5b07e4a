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
import os
import shutil
import ssl
import sys
import time
from functools import partial
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway.site import clock
from gateway.site.config import check_config as _check
from protocols.models import load_catalogue

from . import i18n
from .client import (
    ControlClient,
    DaemonDenied,
    DaemonDown,
    DaemonError,
    Site,
    _raw_language,
    daemon_error,
    load_cfg,
    print_json,
    site_catalogue,
    socket_path,
)
from .model import diag_items as model_items
from .status import read_state
from .text import use_color
from .tool_views import check_label, check_text, render_diag, verdict, verdict_text

BY_ID = "/dev/serial/by-id"
BROKER_TIMEOUT_S = 3.0
CERT_WARN_DAYS = 30


# =========================================================================== scan / read


# =========================================================================== checks

def item(check: str, level: str, key: str, label_args: dict | None = None, **args) -> dict:
    return {"check": check, "label_args": label_args or {}, "level": level, "key": key, "args": args}


def check_config(path, started_epoch: float | None = None) -> dict:
    problems = _check(path, known_models=site_catalogue(path))
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


# The v3.1.1 CONNACK codes in the words `edgegw diag` has always used; paho
# reports them as the MQTT 5 reason codes they map to.
CONNACK_CODES = {1: "unacceptable protocol version", 2: "client id rejected", 3: "server unavailable",
                 4: "bad user name or password", 5: "not authorised"}
_REFUSED = {int(paho.convert_connack_rc_to_reason_code(paho.ConnackCode(rc)).value): why
            for rc, why in CONNACK_CODES.items()}


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
    is not disturbed), then DISCONNECT: the same paho client the daemon uses."""
    where = f"{mqtt.host}:{mqtt.port}"
    out: list[dict] = []
    t0 = time.monotonic()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{mqtt.client_id}-diag",
                         protocol=paho.MQTTv311, clean_session=True)
    client.connect_timeout = timeout
    if mqtt.username is not None:
        client.username_pw_set(mqtt.username, mqtt.password)
    answer: list = []
    client.on_connect = lambda _c, _u, _flags, reason, _props: answer.append(reason)
    try:
        if mqtt.tls is not None:
            ctx = ssl.create_default_context(cafile=str(mqtt.tls.ca_file))
            if mqtt.tls.cert_file:
                ctx.load_cert_chain(str(mqtt.tls.cert_file), str(mqtt.tls.key_file))
            if mqtt.tls.insecure:
                ctx.check_hostname = False
            client.tls_set_context(ctx)
        try:
            client.connect(mqtt.host, mqtt.port, keepalive=10)
        except ssl.SSLCertVerificationError as exc:
            out.append(_cert_item("broker", None, exc.verify_message or str(exc)))
            raise
        if mqtt.tls is not None:
            sock = client.socket()
            not_after = (sock.getpeercert() if isinstance(sock, ssl.SSLSocket) else {}).get("notAfter")
            out.append(_cert_item("broker", not_after if isinstance(not_after, str) else None))
        deadline = t0 + timeout
        while not answer:
            if time.monotonic() > deadline:
                raise TimeoutError
            rc = client.loop(timeout=0.05)
            if rc != paho.MQTT_ERR_SUCCESS and not answer:
                raise ConnectionError("the broker closed the connection before CONNACK"
                                      if rc == paho.MQTT_ERR_CONN_LOST else f"not an MQTT broker ({paho.error_string(rc)})")
        reason = answer[0]
        ms = round((time.monotonic() - t0) * 1000)
        if reason.is_failure:
            why = _REFUSED.get(int(reason.value), f"code {int(reason.value)}")
            out.insert(0, item("broker", "fail", "dg.broker_refused", where=where, why=why))
        else:
            client.disconnect()
            who = mqtt.username
            out.insert(0, item("broker", "pass", "dg.broker_ok", where=where, ms=ms,
                               who_key="dg.broker_who" if who else None, user=who or ""))
    except (OSError, ssl.SSLError) as exc:
        why = getattr(exc, "verify_message", None) or getattr(exc, "strerror", None) or str(exc) \
            or type(exc).__name__
        if isinstance(exc, TimeoutError):
            why = f"no answer within {timeout:.0f} s"
        out.insert(0, item("broker", "fail", "dg.broker_unreachable", where=where, why=why))
    finally:
        sock = client.socket()
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
    items += model_items(load_catalogue(cfg.gateway.models_dir), item)
    items += [check_port(b) for b in cfg.buses]
    items += check_broker(cfg.mqtt)
    items.append(check_clock())
    items.append(check_disk(cfg.gateway.state_dir))
    return items


# The loop serves every bus and the broker link: a p99.9 above this means
# polls wait (docs/performance.md has the target).
LOOP_WARN_MS = 10.0
LOOP_FAIL_MS = 1000.0


def loop_item(lag: dict) -> dict:
    p999 = lag.get("p999")
    args = {k: "-" if lag.get(k) is None else lag[k] for k in ("p50", "p99", "p999", "max")}
    args["window_s"] = lag.get("window_s") or 0
    level = "pass" if p999 is None or p999 <= LOOP_WARN_MS else "warn" if p999 <= LOOP_FAIL_MS else "fail"
    return item("loop", level, "dg.loop" if level == "pass" else "dg.loop_slow", **args)


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
    rank = {"config": 0, "models": 0.5, "daemon": 1, "loop": 1.5, "port": 2, "broker": 3, "tls": 4, "clock": 5, "disk": 6,
            "backlog": 7, "bus": 8, "device": 9}
    return sorted(items, key=lambda c: rank.get(c["check"], 99))   # stable: keeps config order within


def finish(gateway: str, running: bool, items: list[dict]) -> dict:
    """The diag result: checks in report order, each with its text in both
    languages for consumers of the MQTT reply, and the verdict."""
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
    items.append(loop_item(daemon.lag.summary()))
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


def cmd_diag(args) -> int:

    path = args.config
    models = site_catalogue(path)
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
        return daemon_error(Site(path, cfg, models, lang, color, Path(cfg.gateway.state_dir)), exc)
    except DaemonDown:
        result = offline_diag(cfg, models, f"no answer on {sock}")
    except DaemonError as exc:
        return daemon_error(Site(path, cfg, models, lang, color, Path(cfg.gateway.state_dir)), exc)
    _out_diag(result, args, lang, color, print_json, render_diag)
    return 1 if result["verdict"]["fails"] else 0


def _out_diag(result, args, lang, color, print_json, render_diag) -> None:
    if args.json:
        print_json(result)
    else:
        sys.stdout.write(render_diag(result, lang, color))


