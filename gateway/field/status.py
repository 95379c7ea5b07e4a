"""`edgegw status`: what the daemon knows of every device, from its memory,
or with the daemon stopped, from what it last wrote to the state folder."""

import json
import os
import shutil
import sys
import time
from pathlib import Path

from gateway import __version__
from gateway.deliver import payloads
from gateway.site import clock
from gateway.site.state import StateStore

from . import i18n
from .client import (
    ask_daemon,
    err,
    load_site,
    print_json,
    socket_path,
)
from .views import problems, render_device, render_status, render_status_all


def fault_entry(code: str, info: dict, model, service=None) -> dict:
    """The state topic's fault summary, plus every remedy step for `edgegw faults`."""
    item = payloads.fault_summary(code, info, model, service)
    try:
        f = model.fault(code)
    except KeyError:
        return item
    item["remedy_steps"] = {"en": list(f.en.remedy), "zh": list(f.zh.remedy)}
    item["causes"] = {"en": list(f.en.causes), "zh": list(f.zh.causes)}
    return item


def split_active(active: dict, model, service=None) -> tuple[list[dict], list[dict]]:
    faults: list[dict] = []
    states: list[dict] = []
    for code, info in sorted(active.items()):
        item = fault_entry(code, info or {}, model, service)
        (states if item.get("kind") == "state" else faults).append(item)
    return faults, states


def _availability(available) -> str:
    return "unknown" if available is None else "online" if available else "unavailable"


def device_entry(daemon, name: str) -> dict:
    rt = daemon.runtimes[name]
    faults, states = split_active(daemon.interps[name].active(), rt.model, getattr(daemon.cfg, "service", None))
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
        faults, states = split_active(rec.get("active") or {}, model, cfg.service) if model else ([], [])
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


def cmd_status(args) -> int:
    """`edgegw status [DEVICE] [--all]`: one screen; one device in full; or
    the full listing. --json is always the whole status (of one device when
    DEVICE is given)."""
    site = load_site(args)
    if isinstance(site, int):
        return site
    device = getattr(args, "device", None)
    names = [d.name for d in site.cfg.devices if d.enabled]
    if device is not None and device not in names:
        err(i18n.t(site.lang, "fl.unknown_device", name=device, known=", ".join(names) or "-"))
        return 2
    st, rc = ask_daemon(site, "status")
    if rc is not None:
        return rc
    if st is None:
        st = recorded_status(site.cfg, site.models, f"no answer on {site.socket}")
        rc = 2
    if device is not None:
        st = {**st, "devices": [d for d in st.get("devices") or [] if d["name"] == device]}
    if args.json:
        print_json(st)
    elif device is not None:
        sys.stdout.write(render_device(st, device, site.lang, site.color))
    elif getattr(args, "all", False):
        sys.stdout.write(render_status_all(st, site.lang, site.color))
    else:
        # the terminal's size; piped, 100x30 (COLUMNS/LINES when set)
        size = shutil.get_terminal_size((100, 30))
        sys.stdout.write(render_status(st, site.lang, site.color, width=size.columns, height=size.lines))
    if rc is None:
        rc = 1 if any(p["level"] == "fail" for p in problems(st)) else 0
    return rc
