"""A realistic site for the screen tests, built from the real catalogues.

Seven devices on two buses at 2026-11-23 08:30 UTC: a magnet-tampered
residential meter long past its 1 h promise, a minor battery prompt past its
72 h promise, a controller whose flowmeter lost power, a meter that stopped
answering, a flowmeter with a sensor fault and a flapping low flow, a sleeping
flowmeter and a quiet gas alarm; the clock is not synchronised and the outbox
has a 14-minute backlog. The texts come from protocols/models, so a
catalogue change shows in the golden screens built from it.
"""
from __future__ import annotations

import copy

from gateway.field.status import fault_entry
from protocols.models import load_models

NOW = "2026-11-23T08:30:00.000Z"
MODELS = load_models()

# name, model, bus, unit, availability, last good read, last error, serial reported, active {code: info}
_DEVICES = [
    ("m-01", "meihua-ic", "rs485-1", 1, "online", "2026-11-23T08:29:55.000Z", None, None,
     {"ERR-1": {"since": "2026-11-23T06:20:00.000Z"}}),
    ("m-02", "meihua-ic", "rs485-1", 2, "online", "2026-11-23T08:29:51.000Z", None, None,
     {"BATTERY-PROMPT": {"since": "2026-11-20T07:00:00.000Z"}}),
    ("c-01", "mhcg", "rs485-1", 3, "online", "2026-11-23T08:29:58.000Z", None, None,
     {"ERR-3": {"since": "2026-11-23T08:05:00.000Z"}}),
    ("q-01", "qianfeng-ic", "rs485-1", 4, "unavailable", "2026-11-23T08:10:12.000Z", "timeout", None,
     {"NO-RESPONSE": {"since": "2026-11-23T08:11:40.000Z"}}),
    ("fm-01", "turbine-evc", "rs485-2", 1, "online", "2026-11-23T08:29:59.000Z", None, "EVC0001",
     {"TEMP-SENSOR": {"since": "2026-11-23T07:02:11.000Z"},
      "FLOW-LOW": {"since": "2026-11-23T08:10:00.000Z", "flapping": True}}),
    ("fm-02", "turbine-evc", "rs485-2", 2, "online", "2026-11-23T08:29:59.500Z", None, "EVC0002",
     {"SLEEP": {"since": "2026-11-23T02:00:00.000Z"}}),
    ("a-01", "gas-alarm", "rs485-2", 5, "online", "2026-11-23T08:29:57.000Z", None, None, {}),
]

COUNTERS = {"polls": 18120, "ok": 18118, "timeout": 2}

META = {
    "m-01": '[device.meta]\naddress = "Xixi Garden 3-2-501, kitchen"\ncontact = "Ms Chen, 138 0000 1234"\n'
            'serial = "MH2025-004417"\n',
    "c-01": '[device.meta]\naddress = "Boiler house, gas inlet room"\ncontact = "Mr Wang (boiler room), ext. 8021"\n'
            'serial = "MHCG-DN80-00931"\nnote = "key at the gate house"\n',
    "fm-01": '[device.meta]\naddress = "Boiler house, line 1"\nserial = "PLATE-7731"\n',
}


def _device(name, model_id, bus, unit, avail, last_good, last_error, serial, active, service=None) -> dict:
    model = MODELS[model_id]
    faults, states = [], []
    for code, info in sorted(active.items()):
        item = fault_entry(code, info, model, service) if service is not None else fault_entry(code, info, model)
        (states if item.get("kind") == "state" else faults).append(item)
    values = {"serial_number": serial} if serial else {}
    return {
        "name": name, "model": model_id, "model_name": {"en": model.name_en, "zh": model.name_zh},
        "bus": bus, "unit": unit, "availability": avail, "last_good_ts": last_good,
        "last_error": last_error, "last_error_ts": "2026-11-23T08:29:59.300Z" if last_error else None,
        "counters": dict(COUNTERS, timeout=240) if last_error else dict(COUNTERS), "values": values,
        "faults": faults, "states": states,
    }


def seven_devices(service=None) -> dict:
    """`edgegw status --json` of the site, daemon running."""
    return {
        "v": 1, "ts": NOW, "ts_synced": False,
        "daemon": {"running": True, "pid": 812, "version": "0.1.0", "started": "2026-11-21T06:10:00.000Z",
                   "uptime_s": 181200.0, "socket": "/var/lib/edgegw/control.sock"},
        "gateway": {"id": "hz-0417", "site": "Hangzhou Xixi boiler house", "language": "zh"},
        "broker": {"host": "mqtt.example.net", "port": 8883, "tls": True, "connected": True, "connects": 3,
                   "last_error": None},
        "clock": {"synced": False},
        "outbox": {"backlog_msgs": 1250, "backlog_bytes": 524288, "oldest_age_s": 840.0, "inflight": 5,
                   "dropped": {"telemetry": 0, "state": 0, "event": 0}, "health": "ok", "health_detail": ""},
        "buses": {
            "rs485-1": {"connected": True, "requests": 96210, "ok": 95980, "timeouts": 221, "crc_errors": 9,
                        "exceptions": 0, "disconnects": 0, "last_connect_error": None,
                        "port": "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0"},
            "rs485-2": {"connected": True, "requests": 48100, "ok": 48100, "timeouts": 0, "crc_errors": 0,
                        "exceptions": 0, "disconnects": 0, "last_connect_error": None,
                        "port": "/dev/serial/by-id/usb-FTDI_FT232R-if01-port0"},
        },
        "devices": [_device(*d, service=service) for d in _DEVICES],
    }


def seven_devices_stopped(service=None) -> dict:
    """The same site as `edgegw status` shows it with the daemon stopped."""
    st = copy.deepcopy(seven_devices(service))
    for k in ("broker", "clock", "outbox", "buses"):
        del st[k]
    st["daemon"] = {"running": False, "why": "no answer on /var/lib/edgegw/control.sock",
                    "socket": "/var/lib/edgegw/control.sock"}
    st["recorded"] = {"path": "/var/lib/edgegw/state.json", "when": "2026-11-23T08:29:40.000Z"}
    for d in st["devices"]:
        d["counters"] = None
        d["last_error_ts"] = None
    return st


# The site's config, for the commands that read it beside the daemon's answer
# (`edgegw visit` takes [device.meta] from it). The ports need not exist.
CONFIG = """
[gateway]
id = "hz-0417"
site = "Hangzhou Xixi boiler house"
state_dir = "state"
language = "zh"

[[bus]]
name = "rs485-1"
port = "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0"

[[bus]]
name = "rs485-2"
port = "/dev/serial/by-id/usb-FTDI_FT232R-if01-port0"
""" + "".join(f"""
[[device]]
name = "{name}"
bus = "{bus}"
unit = {unit}
model = "{model}"
""" + META.get(name, "") for name, model, bus, unit, *_ in _DEVICES)
