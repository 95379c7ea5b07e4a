"""`edgegw diag`: the self-test, one pass/warn/fail item per check.

Three ways in, one set of checks: the CLI asks the running daemon over the
control socket (live_diag: full detail, broker login included), or runs the
checks itself when no daemon answers (offline_diag). Over MQTT (mqtt_diag)
anyone who can publish on the broker may ask, so the reply carries levels
and keys only, and the daemon opens no second broker connection with its
credentials: its own link being up is the broker check.
"""
from __future__ import annotations

import asyncio
import os
import sys
import time
from functools import partial
from pathlib import Path

from gateway.site import clock
from gateway.site.config.checker import one_line

from . import i18n
from .checks import (
    check_client_cert,
    check_clock,
    check_config,
    check_disk,
    check_port,
    item,
    static_checks,
)
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
from .status import read_state
from .text import use_color
from .tool_views import check_label, check_text, render_diag, verdict, verdict_text

# =========================================================================== checks


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
    # An answer to another request (wrong unit, function or length) is never
    # line noise: two devices on one address, or a slave that lies. Any at all
    # is worth a look, unlike the odd timeout or CRC error.
    if req and (s.get("timeouts", 0) / req > 0.2 or s.get("crc_errors", 0) / req > 0.01 or s.get("mismatch", 0)):
        level = "warn"
    mean, p95 = s.get("response_ms_mean"), s.get("response_ms_p95")
    return item("bus", level, "dg.bus", lab, requests=req, timeouts=s.get("timeouts", 0),
                crc=s.get("crc_errors", 0), mismatch=s.get("mismatch", 0), exc=s.get("exceptions", 0),
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
    control = getattr(daemon, "control", None)
    extra = {"commands": control.command_counts()} if hasattr(control, "command_counts") else {}
    items.append(item("daemon", "pass", "dg.daemon_up", pid=os.getpid(),
                      up_s=round(time.monotonic() - daemon.started_mono), **extra))
    return finish(cfg.gateway.id, True, items + _daemon_items(daemon))


def _daemon_items(daemon) -> list[dict]:
    """What only the running daemon knows: its event loop, backlog, buses and devices."""
    cfg = daemon.cfg
    items = [loop_item(daemon.lag.summary())]
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
    return items


def mqtt_checks(cfg, started_epoch: float) -> list[dict]:
    """static_checks without a broker connection of its own: over MQTT the
    answer itself shows the daemon's link is up. Blocking (run in a thread)."""
    items = [check_config(cfg.path, started_epoch)]
    items += [check_port(b) for b in cfg.buses]
    items.append(item("broker", "pass", "dg.broker_ok"))
    if cfg.mqtt.tls is not None and cfg.mqtt.tls.cert_file:
        items.append(check_client_cert(cfg.mqtt.tls.cert_file))
    items.append(check_clock())
    items.append(check_disk(cfg.gateway.state_dir))
    return items


async def mqtt_diag(daemon) -> dict:
    """The diag reply over MQTT, for central monitoring: the verdict and each
    check's level and key, with the bus or device it is about; none of the
    paths, pids, user names, endpoints or disk figures the local diag shows."""
    cfg = daemon.cfg
    started_epoch = time.time() - (time.monotonic() - daemon.started_mono)
    loop = asyncio.get_running_loop()
    items = await loop.run_in_executor(None, partial(mqtt_checks, cfg, started_epoch))
    items.append(item("daemon", "pass", "dg.daemon_up"))
    checks = _order(items + _daemon_items(daemon))
    v = verdict(checks)
    return {"v": 1, "ts": clock.utc_now_iso(), "gateway": cfg.gateway.id,
            "checks": [{"check": c["check"], "level": c["level"], "key": c["key"],
                        **{k: c["label_args"][k] for k in ("bus", "device") if k in c["label_args"]}}
                       for c in checks],
            "verdict": {"level": v["level"], "fails": v["fails"], "warns": v["warns"]}}


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
        items = [item("config", "fail", "dg.config_bad", path=one_line(str(path)), n=len(problems),
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
