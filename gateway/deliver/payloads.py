"""MQTT topics and payload bodies (contract v1, docs/mqtt.md).

The outbox adds `seq` when a message is first sent; everything else a
consumer relies on is built here, in one place, so the contract has one owner.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from gateway.site import clock
from gateway.site.config.types import DEFAULTS

SCHEMA_VERSION = 1


def envelope(ts: str | None = None) -> dict:
    return {"v": SCHEMA_VERSION, "ts": ts or clock.utc_now_iso(), "ts_synced": clock.clock_synced()}


class Topics:
    def __init__(self, prefix: str, gateway_id: str) -> None:
        self.base = f"{prefix}/{gateway_id}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    def state(self, device: str) -> str:
        return f"{self.base}/{device}/state"

    def telemetry(self, device: str) -> str:
        return f"{self.base}/{device}/telemetry"

    def event(self, device: str) -> str:
        return f"{self.base}/{device}/event"

    @property
    def cmd(self) -> str:
        return f"{self.base}/cmd"


_hidden: dict[str, frozenset] = {}


def published_values(model, values: dict) -> dict:
    hidden = _hidden.get(model.id)
    if hidden is None:
        hidden = _hidden[model.id] = frozenset(f.name for f in model.fields if not f.publish)
    return {k: v for k, v in values.items() if k not in hidden}


def telemetry(d, reading) -> dict:
    body = envelope(reading.ts)
    body.update({
        "device": d.name,
        "model": d.model.id,
        "values": published_values(d.model, reading.values),
        "quality": "good" if reading.ok else "partial",
    })
    bad = {k: q for k, q in reading.quality.items() if q != "good"}
    if bad:
        body["errors"] = bad
    return body


def respond_within_h(service, severity: str | None):
    """Hours to the first response the site promises for a fault of this
    severity ([service] respond_within_h; 0: no promise)."""
    table = service.respond_within_h if service is not None else DEFAULTS["service"]["respond_within_h"]
    return table.get(severity, 0)


def respond_by(since: str | None, hours) -> str | None:
    """since + hours, in the payloads' own timestamp form; None without a promise."""
    if not hours or not since:
        return None
    try:
        t0 = datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        return None
    t = (t0 + timedelta(hours=hours)).astimezone(timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def fault_event(ev, service=None) -> dict:
    """The fault event body (docs/mqtt.md): the interpreter's event and the
    site's response promise for its severity."""
    body = envelope(ev.ts)
    body.update(ev.payload())
    body["respond_within_h"] = respond_within_h(service, ev.fault.severity)
    return body


def fault_summary(code: str, info: dict, model, service=None) -> dict:
    out = {"code": code, "since": info.get("since")}
    try:
        f = model.fault(code)
    except KeyError:
        return out
    hours = respond_within_h(service, f.severity)
    out.update({
        "kind": f.kind, "severity": f.severity, "valve_closed": f.valve_closed,
        "site_visit": f.site_visit, "ref": f.ref,
        "meaning": {"zh": f.zh.meaning, "en": f.en.meaning},
        "remedy": {"zh": f.zh.remedy[0] if f.zh.remedy else "", "en": f.en.remedy[0] if f.en.remedy else ""},
        "cleared_by": {"code": f.cleared_by, "zh": f.zh.cleared_by, "en": f.en.cleared_by},
        "respond_within_h": hours, "respond_by": respond_by(out["since"], hours),
    })
    if info.get("flapping"):
        out["flapping"] = True
    return out


def state(d, bus_name: str, active: dict, service=None) -> dict:
    faults, states = [], []
    for code, info in sorted(active.items()):
        item = fault_summary(code, info, d.model, service)
        (states if item.get("kind") == "state" else faults).append(item)
    if d.available is None:
        availability = "unknown"
    else:
        availability = "online" if d.available else "unavailable"
    body = envelope()
    body.update({
        "device": d.name,
        "model": d.model.id,
        "bus": bus_name,
        "unit": d.cfg.unit,
        "availability": availability,
        "last_good_ts": d.last_good_ts,
        "last_error": d.last_error,
        "last_error_ts": d.last_error_ts,
        "values": published_values(d.model, d.last_values),
        "states": [s["code"] for s in states],
        "faults": faults,
        "counters": dict(d.counters),
    })
    return body


def gateway_status(gw, *, online: bool, version: str, started: str, uptime_s: float, connects: int,
                   store: dict, loop_lag_ms: dict, buses: dict, devices: dict, commands: dict | None = None) -> dict:
    """The retained `<prefix>/<gw>/status` body (docs/mqtt.md); `store` is Outbox.stats()."""
    body = envelope()
    body.update({
        "online": online,
        "gateway": gw.id,
        "site": gw.site,
        "version": version,
        "started": started,
        "uptime_s": round(uptime_s, 1),
        "mqtt": {"connects": connects},
        "commands": commands,
        "backlog": {k: store.get(k) for k in ("backlog_msgs", "backlog_bytes", "oldest_age_s", "inflight")},
        "dropped": store.get("dropped"),
        "coalesced": store.get("coalesced"),
        "store": {"health": store.get("health"), "detail": store.get("health_detail") or None},
        "loop_lag_ms": loop_lag_ms,
        "buses": buses,
        "devices": devices,
    })
    return body


def dumps(body: dict) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
