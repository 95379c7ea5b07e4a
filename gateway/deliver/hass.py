"""Home Assistant MQTT discovery: retained config messages for the documented topics.

Pure data in, messages out; nothing here publishes. The daemon (when
``[homeassistant] enabled = true``) publishes every message of
``discovery()`` retained at QoS 1, remembers the topics it announced, and on
the next start publishes ``removals(announced, current)`` so a device that
left the config, or a value a model no longer has, disappears from Home
Assistant. The choices (topic layout, ids, units, availability) are in
docs/integrations.md; the state and status payloads read by the templates are
docs/mqtt.md's.

Home Assistant drops discovery keys it does not know without a word, so
tests/unit/test_hass.py checks every key and every unit against HA's own
tables, and renders every template against real payloads.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.site.config.types import NAME_RE, check_discovery_prefix
from protocols.models import Model
from protocols.models.check_base import NAME as VALUE_NAME

from .hass_units import classify, label_of, unit_of
from .outbox_file import HEALTHS

__all__ = ["Device", "check_discovery_prefix", "discovery", "encode", "removals", "topics"]

# Gateway ids and device names are [A-Za-z0-9_-] by the site config; relying
# on it keeps ids readable and lets "." and "__" act as separators that no
# name can contain (ids are then injective, see _object_id): NAME_RE.
# A value key as the model format allows it (VALUE_NAME): no "__", never starts with "_".
_CODE_SAFE = re.compile(r"[A-Za-z0-9-]+\Z")
_PLAIN_TEXT = re.compile(r"[^'\"\\\x00-\x1f\x7f]*\Z")
_META_KEYS = ("suggested_area", "manufacturer", "extra_values")


_ONLINE = "{{ 'online' if value_json.online else 'offline' }}"
_DEVICE_ONLINE = "{{ 'online' if value_json.availability == 'online' else 'offline' }}"
_FAULT_ON = "{{{{ 'ON' if value_json.faults | selectattr('code', 'eq', {code}) | list else 'OFF' }}}}"
_FAULT_ATTRS = ("{{% set f = value_json.faults | selectattr('code', 'eq', {code}) | list %}}"
                "{{{{ dict({static}, active_since=(f[0].get('since') if f else none), "
                "flapping=(f[0].get('flapping', false) if f else false)) | tojson }}}}")
_LINK_ATTRS = ("{{ dict(bus=value_json.get('bus'), unit=value_json.get('unit'), "
               "last_good_ts=value_json.get('last_good_ts'), last_error=value_json.get('last_error'), "
               "last_error_ts=value_json.get('last_error_ts'), "
               "counters=(value_json.get('counters') or {})) | tojson }}")


@dataclass(frozen=True)
class Device:
    """One configured device as discovery needs it.

    ``bus`` and ``unit`` are taken for the wiring's convenience but kept out
    of every id: a meter moved to another port keeps its Home Assistant
    history. The live bus and unit are on the Link sensor, from the state.
    ``meta``: ``suggested_area`` and ``manufacturer`` (the model files name
    no manufacturer, so none is claimed unless the site says), and
    ``extra_values``, keys the state carries beyond the model's registers
    (a door controller's ``log_gaps``, ``clock_skew_s``), typed by their
    unit suffix like the rest.
    """
    name: str
    model: Model
    bus: str = ""
    unit: int = 0
    meta: Mapping[str, Any] = field(default_factory=dict)


def discovery(base: str, gateway_id: str, discovery_prefix: str,
              devices: Iterable[Device | Sequence[Any]], *,
              sw_version: str | None = None) -> list[tuple[str, dict]]:
    """Every retained discovery message: the gateway's entities, then each device's.

    ``base`` is ``<topic_prefix>/<gateway id>``, under which the state and
    status topics of docs/mqtt.md live. Raises ValueError on names the site
    config would have refused.
    """
    problem = check_discovery_prefix(discovery_prefix)
    if problem:
        raise ValueError(f"discovery prefix {discovery_prefix!r}: {problem}")
    _check_name("gateway id", gateway_id)
    ctx = _Ctx(base, gateway_id, discovery_prefix, sw_version)
    out = _gateway_entities(ctx)
    seen: set[str] = set()
    for d in devices:
        d = d if isinstance(d, Device) else Device(*d)
        _check_name("device name", d.name)
        if d.name in seen:
            raise ValueError(f"device {d.name!r} given twice")
        seen.add(d.name)
        out += _device_entities(ctx, d)
    return out


def removals(announced: Iterable[str], current: Iterable[str]) -> list[tuple[str, bytes]]:
    """Empty retained payloads for config topics announced before and not now.

    An empty retained message both deletes the retained config at the broker
    and tells Home Assistant to remove the entity (and the device, once it
    has none left). Pass ``current`` empty to remove everything, e.g. when
    discovery is switched off.
    """
    now = set(current)
    return [(t, b"") for t in sorted(set(announced) - now)]


def topics(messages: Iterable[tuple[str, Any]]) -> list[str]:
    """The config topics of ``discovery()``'s messages: what to remember as announced."""
    return [t for t, _ in messages]


def encode(payload: dict) -> bytes:
    """Discovery payload bytes: deterministic, so an unchanged config is byte-identical."""
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- internals

@dataclass(frozen=True)
class _Ctx:
    base: str
    gw: str
    prefix: str
    sw_version: str | None

    @property
    def node(self) -> str:
        # The gateway id alone, a whole topic level: Mosquitto substitutes
        # %u only as a whole level, so `pattern write <prefix>/+/%u/#` lets
        # each gateway write its own configs and no other's.
        return self.gw

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    def topic(self, component: str, object_id: str) -> str:
        return f"{self.prefix}/{component}/{self.node}/{object_id}/config"

    def origin(self) -> dict:
        o = {"name": "edgegw"}
        if self.sw_version:
            o["sw_version"] = self.sw_version
        return o

    def gateway_availability(self) -> dict:
        return {"topic": self.status, "value_template": _ONLINE,
                "payload_available": "online", "payload_not_available": "offline"}


def _check_name(what: str, name: Any) -> None:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"{what} {name!r} is not 1..64 of A-Z a-z 0-9 _ -")


def _lit(obj: Any) -> str:
    """``obj`` as a Jinja literal. Text without quote, backslash or control
    characters goes in single quotes as it is (readable in the JSON config);
    anything else in JSON string syntax, which is also a valid Jinja string
    (the lexer undoes backslash escapes); ensure_ascii=False keeps astral
    characters whole."""
    if isinstance(obj, bool):
        return "true" if obj else "false"
    if obj is None:
        return "none"
    if isinstance(obj, str):
        if _PLAIN_TEXT.match(obj):
            return f"'{obj}'"
        return json.dumps(obj, ensure_ascii=False)
    if isinstance(obj, (int, float)):
        return repr(obj)
    if isinstance(obj, (list, tuple)):
        return "[" + ", ".join(_lit(x) for x in obj) + "]"
    if isinstance(obj, Mapping):
        return "{" + ", ".join(f"{_lit(str(k))}: {_lit(v)}" for k, v in obj.items()) + "}"
    raise TypeError(f"no Jinja literal for {type(obj).__name__}")


def _object_id(device: str, part: str) -> str:
    # device is [A-Za-z0-9_-]; part never contains "__" nor starts with "_",
    # so the last "__" splits the pair back: distinct pairs, distinct ids.
    return f"{device}__{part}"


def _fault_part(code: str) -> str:
    # "fault-" + code when the code is topic-safe and has no "_"; otherwise
    # the UTF-8 bytes in hex ("故障+关阀", "请速购气"). The two forms differ
    # at the sixth character, so no code can take another's id.
    if _CODE_SAFE.match(code):
        return f"fault-{code}"
    return "fault_x" + code.encode().hex()


def _device_block(ctx: _Ctx, d: Device) -> dict:
    block = {"identifiers": [f"edgegw.{ctx.gw}.{d.name}"], "name": d.name,
             "model": d.model.name_en, "model_id": d.model.id,
             "via_device": f"edgegw.{ctx.gw}"}
    if d.meta.get("manufacturer"):
        block["manufacturer"] = str(d.meta["manufacturer"])
    if d.meta.get("suggested_area"):
        block["suggested_area"] = str(d.meta["suggested_area"])
    return block


def _values(d: Device) -> list[tuple[str, str, bool]]:
    """(key, model unit, is text) for every value the state publishes."""
    vals = [(f.name, f.unit, f.type == "string") for f in d.model.fields if f.publish]
    known = {v[0] for v in vals}
    extra = d.meta.get("extra_values") or ()
    if isinstance(extra, str):
        raise ValueError(f"device {d.name!r}: extra_values must be a list of keys")
    for key in extra:
        if not isinstance(key, str) or not VALUE_NAME.match(key):
            raise ValueError(f"device {d.name!r}: extra value {key!r} is not a value key")
        if key not in known:
            known.add(key)
            vals.append((key, "", False))
    return vals


def _device_entities(ctx: _Ctx, d: Device) -> list[tuple[str, dict]]:
    unknown = sorted(set(d.meta) - set(_META_KEYS))
    if unknown:
        raise ValueError(f"device {d.name!r}: unknown metadata {unknown} (allowed: {', '.join(_META_KEYS)})")
    state = f"{ctx.base}/{d.name}/state"
    device = _device_block(ctx, d)
    both = [ctx.gateway_availability(),
            {"topic": state, "value_template": _DEVICE_ONLINE,
             "payload_available": "online", "payload_not_available": "offline"}]

    def entity(part: str, name: str, extra: dict, availability: list[dict]) -> dict:
        body = {"name": name, "unique_id": f"edgegw.{ctx.gw}.{d.name}.{part}",
                "state_topic": state, "qos": 1, "availability": availability,
                "availability_mode": "all", "device": device, "origin": ctx.origin()}
        body.update(extra)
        return body

    out: list[tuple[str, dict]] = []
    vals = _values(d)
    labels = [label_of(k, unit_of(k, u)) for k, u, _ in vals]
    for (key, model_unit, is_text), label in zip(vals, labels):
        c = classify(key, model_unit, is_text)
        extra = {"value_template": f"{{{{ value_json['values'].get({_lit(key)}) }}}}"}
        for k in ("device_class", "state_class", "entity_category"):
            if c[k]:
                extra[k] = c[k]
        if c["unit"]:
            extra["unit_of_measurement"] = c["unit"]
        # two keys with one label (volume_m3, volume_L) would be two entities
        # HA cannot tell apart by name: fall back to the key itself
        name = key if labels.count(label) > 1 else label
        out.append((ctx.topic("sensor", _object_id(d.name, key)), entity(key, name, extra, both)))

    # The link sensor says why values are unavailable, so it must not be
    # made unavailable by the device's own availability.
    link = {"value_template": "{{ value_json.availability }}", "device_class": "enum",
            "options": ["online", "unavailable", "unknown"], "entity_category": "diagnostic",
            "json_attributes_topic": state, "json_attributes_template": _LINK_ATTRS}
    out.append((ctx.topic("sensor", _object_id(d.name, "link-state")),
                entity("link-state", "Link", link, [ctx.gateway_availability()])))

    for f in d.model.faults:
        if f.kind != "fault":
            continue
        part = _fault_part(f.code)
        static = {"code": f.code, "ref": f.ref, "severity": f.severity,
                  "valve_closed": f.valve_closed, "site_visit": f.site_visit,
                  "cleared_by": f.cleared_by,
                  "meaning_en": f.en.meaning, "meaning_zh": f.zh.meaning,
                  "remedy_en": list(f.en.remedy), "remedy_zh": list(f.zh.remedy),
                  "cleared_by_en": f.en.cleared_by, "cleared_by_zh": f.zh.cleared_by}
        code = _lit(f.code)
        extra = {"device_class": "problem", "payload_on": "ON", "payload_off": "OFF",
                 "value_template": _FAULT_ON.format(code=code),
                 "json_attributes_topic": state,
                 "json_attributes_template": _FAULT_ATTRS.format(code=code, static=_lit(static))}
        # Only the gateway's availability: a device that stops answering
        # keeps its faults (docs/mqtt.md), and NO-RESPONSE is raised exactly
        # when the device goes unavailable; hiding them then would hide the alarm.
        out.append((ctx.topic("binary_sensor", _object_id(d.name, part)),
                    entity(part, f"Fault {f.code}", extra, [ctx.gateway_availability()])))
    return out


def _gateway_entities(ctx: _Ctx) -> list[tuple[str, dict]]:
    device = {"identifiers": [f"edgegw.{ctx.gw}"], "name": f"edgegw {ctx.gw}",
              "model": "edgegw gateway"}
    if ctx.sw_version:
        device["sw_version"] = ctx.sw_version

    def entity(part: str, name: str, extra: dict, available: bool = True) -> dict:
        body = {"name": name, "unique_id": f"edgegw.{ctx.gw}.{part}", "state_topic": ctx.status,
                "qos": 1, "device": device, "origin": ctx.origin()}
        if available:
            body.update(availability=[ctx.gateway_availability()], availability_mode="all")
        body.update(extra)
        return body

    def status_value(path: str) -> str:
        outer, inner = path.split(".")
        return f"{{{{ (value_json.get({_lit(outer)}) or {{}}).get({_lit(inner)}) }}}}"

    # Gateway object ids have no "__", device ones always do: never the same.
    return [
        # No availability on purpose: it is the one entity that must say "off"
        # when the Last Will arrives.
        (ctx.topic("binary_sensor", "gateway_online"),
         entity("online", "Online", {"device_class": "connectivity", "payload_on": "ON", "payload_off": "OFF",
                                     "value_template": "{{ 'ON' if value_json.online else 'OFF' }}"},
                available=False)),
        (ctx.topic("sensor", "gateway_backlog_msgs"),
         entity("backlog_msgs", "Backlog", {"value_template": status_value("backlog.backlog_msgs"),
                                            "unit_of_measurement": "msgs", "state_class": "measurement"})),
        (ctx.topic("sensor", "gateway_oldest_age_s"),
         entity("oldest_age_s", "Oldest unsent", {"value_template": status_value("backlog.oldest_age_s"),
                                                  "device_class": "duration", "unit_of_measurement": "s",
                                                  "state_class": "measurement"})),
        (ctx.topic("sensor", "gateway_devices_with_faults"),
         entity("devices_with_faults", "Devices with faults",
                {"value_template": status_value("devices.with_faults"), "state_class": "measurement"})),
        (ctx.topic("sensor", "gateway_devices_unavailable"),
         entity("devices_unavailable", "Devices unavailable",
                {"value_template": status_value("devices.unavailable"), "state_class": "measurement"})),
        (ctx.topic("sensor", "gateway_store_health"),
         entity("store_health", "Store", {"value_template": status_value("store.health"),
                                          "device_class": "enum", "entity_category": "diagnostic",
                                          "options": list(HEALTHS)})),
    ]
