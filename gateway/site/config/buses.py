"""[[bus]] (serial port settings or tcp://host:port) and [[device]]."""
from __future__ import annotations

import difflib
import ipaddress
import re

from protocols.models import PARAM_HINTS, Catalogue, declared_params
from protocols.models.types import value_kind

from .checker import BAD, BaseChecker, Check, q
from .types import (
    BAUDRATES,
    DEFAULTS,
    DEVICE_META,
    META_MAX,
    MODBUS_TCP_PORT,
    NAME_RE,
    NAME_TEXT,
    BusCfg,
    DeviceCfg,
    ReportCfg,
)

_HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\Z")
_TCP_RE = re.compile(r"(?:\[(?P<v6>[^\]]*)\]|(?P<host>[^:/\[\]]*))(?::(?P<port>[0-9]+))?\Z")


def raw_names(entries) -> list[str]:
    if not isinstance(entries, list):
        return []
    names: list[str] = []
    for e in entries:
        if isinstance(e, dict) and isinstance(e.get("name"), str) and e["name"] not in names:
            names.append(e["name"])
    return names


# A device name is a topic level beside the gateway's own: commands
# (cmd/<name>) and the card registry (config/cards).
RESERVED_DEVICE_NAMES = ("cmd", "config")


class BusSections(BaseChecker):
    def buses(self, kp, v):
        entries = self.array_of_tables(kp, v)
        if entries is None:
            return ()
        self.seen_bus_names: dict[str, int] = {}
        self.seen_serial_ports: dict[str, str] = {}
        out = []
        for i, entry in enumerate(entries):
            bus = self.bus(f"{kp}[{i}]", entry)
            if bus is not None:
                out.append(bus)
        return out

    def bus(self, kp, v):
        data = self.table(kp, v)
        if data is None:
            return None
        raw_port = data.get("port")
        is_tcp = isinstance(raw_port, str) and "://" in raw_port

        def serial_only(check: Check) -> Check:
            def run(k, x):
                if is_tcp:
                    self.add(k, f"only applies to a serial bus; this bus is {raw_port}")
                    return BAD
                return check(k, x)
            return run

        spec = {
            "name": lambda k, x: self.unique_name(k, x, self.seen_bus_names),
            "port": self.bus_port,
            "baudrate": serial_only(self.baudrate),
            "parity": serial_only(lambda k, x: self.string(k, x, choices=("N", "E", "O"))),
            "stopbits": serial_only(lambda k, x: self.integer(k, x, choices=(1, 2))),
            "bytesize": serial_only(lambda k, x: self.integer(k, x, choices=(7, 8))),
            "timeout_s": lambda k, x: self.number(k, x, 0.05, 10),
            "retries": lambda k, x: self.integer(k, x, 0, 5),
            "gap": lambda k, x: self.integer(k, x, 0, 124),
            "max_registers": lambda k, x: self.integer(k, x, 1, 125),
            "backoff_max_s": lambda k, x: self.number(k, x, 1, 3600),
        }
        got = self.fields(data, kp, spec, required=("name", "port"))
        if "port" in got and got["port"][0] == "serial":
            # Two masters on one RS-485 line would garble each other's frames.
            device_path = got["port"][1]
            other = self.seen_serial_ports.get(device_path)
            if other is not None:
                self.add(f"{kp}.port", f"{q(device_path)} is already used by {other}")
            else:
                name = data.get("name")
                self.seen_serial_ports[device_path] = (
                    f"bus {q(name)}" if isinstance(name, str) else kp)
        if "name" not in got or "port" not in got:
            return None
        kind, host, tcp_port = got["port"]
        d = DEFAULTS["bus"]
        return BusCfg(
            name=got["name"], kind=kind, port=host, tcp_port=tcp_port,
            **{k: got.get(k, d[k]) for k in d},
        )

    def unique_name(self, kp, v, seen: dict[str, int], reserved: tuple[str, ...] = ()):
        s = self.string(kp, v, pattern=NAME_RE, pattern_text=NAME_TEXT)
        if s is BAD:
            return BAD
        if s in reserved:
            self.add(kp, f"{q(s)} is reserved: the gateway's own topics <prefix>/<gateway>/{s}/... "
                         f"are under that name")
            return BAD
        if s in seen:
            self.add(kp, f"{q(s)} is used twice")
            return BAD
        seen[s] = 1
        return s

    def bus_port(self, kp, v):
        s = self.string(kp, v)
        if s is BAD:
            return BAD
        usage = "a serial device path (/dev/serial/by-id/...) or tcp://host:port"
        if "://" not in s:
            if not s.startswith("/"):
                self.add(kp, f"{q(s)} is not {usage}")
                return BAD
            return ("serial", s, None)
        scheme, rest = s.split("://", 1)
        if scheme != "tcp":
            self.add(kp, f'{q(s)}: unsupported scheme "{scheme}" (expected {usage})')
            return BAD
        m = _TCP_RE.match(rest)
        if m is None or not (m["v6"] or m["host"]):
            self.add(kp, f"{q(s)} is not tcp://host:port (IPv6 in brackets: tcp://[::1]:502)")
            return BAD
        if m["v6"] is not None:
            host = m["v6"]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                self.add(kp, f"{q(s)}: [{host}] is not an IPv6 address")
                return BAD
        else:
            host = m["host"]
            if not _HOST_RE.match(host):
                self.add(kp, f"{q(s)}: {q(host)} is not a host name or IP address")
                return BAD
        port = int(m["port"]) if m["port"] is not None else MODBUS_TCP_PORT
        if not 1 <= port <= 65535:
            self.add(kp, f"{q(s)}: port {port} is outside 1-65535")
            return BAD
        return ("tcp", host, port)

    def baudrate(self, kp, v):
        n = self.integer(kp, v)
        if n is not BAD and n not in BAUDRATES:
            self.add(kp, f"{n} is not a standard rate ({', '.join(map(str, BAUDRATES))})")
            return BAD
        return n

    def devices(self, kp, v):
        entries = self.array_of_tables(kp, v)
        if entries is None:
            return ()
        self.seen_device_names: dict[str, int] = {}
        self.units: dict[tuple[str, int], str] = {}
        out = []
        for i, entry in enumerate(entries):
            dev = self.device(f"{kp}[{i}]", entry)
            if dev is not None:
                out.append(dev)
        return out

    def device(self, kp, v):
        data = self.table(kp, v)
        if data is None:
            return None
        spec = {
            "name": lambda k, x: self.unique_name(k, x, self.seen_device_names, RESERVED_DEVICE_NAMES),
            "bus": self.device_bus,
            "unit": lambda k, x: self.integer(k, x, 1, 247),
            "model": self.model,
            "poll_interval_s": lambda k, x: self.number(k, x, 0.1, 86400),
            "enabled": self.boolean,
            # the device's model names its params, whether written before or after
            "params": lambda k, x: self.params(k, x, data.get("model")),
            "report": self.report,
            "meta": self.meta,
        }
        got = self.fields(data, kp, spec, required=("name", "bus", "unit", "model"))
        if "report" in got and "model" in got:
            self.report_values(f"{kp}.report.deadband", got["report"], got["model"])
        if "bus" in got and "unit" in got:
            key = (got["bus"], got["unit"])
            if key in self.units:
                self.add(kp, f"unit {got['unit']} on bus {q(got['bus'])} "
                             f"is already used by {self.units[key]}")
            else:
                name = data.get("name")
                self.units[key] = f"device {q(name)}" if isinstance(name, str) else kp
        if not {"name", "bus", "unit", "model"} <= got.keys():
            return None
        d = DEFAULTS["device"]
        return DeviceCfg(
            name=got["name"], bus=got["bus"], unit=got["unit"], model=got["model"],
            poll_interval_s=got.get("poll_interval_s", d["poll_interval_s"]),
            enabled=got.get("enabled", d["enabled"]),
            params=got.get("params", {}),
            report=got.get("report"),
            meta=got.get("meta", {}),
        )

    def meta(self, kp, v):
        data = self.table(kp, v)
        if data is None:
            return BAD
        spec = {k: lambda kk, x: self.short_text(kk, x) for k in DEVICE_META}
        return self.fields(data, kp, spec)

    def short_text(self, kp, v):
        s = self.string(kp, v, empty_ok=True)
        if s is not BAD and len(s) > META_MAX:
            self.add(kp, f"{len(s)} characters: at most {META_MAX}")
            return BAD
        return s

    def report(self, kp, v):
        data = self.table(kp, v)
        if data is None:
            return BAD
        spec = {
            "heartbeat_s": lambda k, x: self.number(k, x, 1, 86400),
            "deadband": self.deadband,
        }
        got = self.fields(data, kp, spec, required=("heartbeat_s",))
        if "heartbeat_s" not in got:
            return BAD
        return ReportCfg(heartbeat_s=got["heartbeat_s"], deadband=got.get("deadband", {}))

    def deadband(self, kp, v):
        data = self.table(kp, v)
        if data is None:
            return BAD
        out = {}
        for key, value in data.items():
            n = self.number(f"{kp}.{key}", value, lo=0, hi=1e12)
            if n is not BAD:
                out[key] = n
        return out

    def report_values(self, kp, report: ReportCfg, model_id: str) -> None:
        """Deadbands name published values of the device's model."""
        model = (self.models or {}).get(model_id)
        if model is None:
            return
        names = [f.name for f in model.fields if f.publish]
        for key in report.deadband:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f'did you mean "{close[0]}"?' if close else f"values: {', '.join(names)}"
                self.add(f"{kp}.{key}", f"{q(key)} is not a value of model {q(model_id)} ({hint})")

    def device_bus(self, kp, v):
        s = self.string(kp, v)
        if s is BAD:
            return BAD
        if s not in self.bus_names:
            listed = ", ".join(self.bus_names) if self.bus_names else "no [[bus]] is configured"
            self.add(kp, f"{q(s)} is not a configured bus ({listed})")
            return BAD
        return s

    def model(self, kp, v):
        s = self.string(kp, v)
        if s is BAD:
            return BAD
        broken = self.models.broken if isinstance(self.models, Catalogue) else {}
        if s in broken:
            # A broken model file fails the config only where a device uses it.
            b = broken[s]
            self.add(kp, f"model {q(s)} cannot be used: {b.summary()} (edgegw model check {b.path})")
            return BAD
        if self.known_models is not None and s not in self.known_models:
            close = difflib.get_close_matches(s, self.known_models, n=1)
            hint = (f"did you mean {q(close[0])}?" if close
                    else ", ".join(self.known_models) or "none are installed")
            self.add(kp, f"{q(s)} is not a known model ({hint})")
            return BAD
        return s

    def params(self, kp, v, model_id=None):
        """[device.params]: with the models at hand, each key a param the
        device's model (or every device) declares, each value of its type and
        in its range; without them, plain values."""
        data = self.table(kp, v)
        if data is None:
            return BAD
        model = self.models.get(model_id) if self.models is not None and isinstance(model_id, str) else None
        declared = declared_params(model) if model is not None else None
        out = {}
        ok = True
        for key, value in data.items():
            k = f"{kp}.{key}"
            if declared is None:
                if isinstance(value, (bool, int, float, str)):
                    out[key] = value
                    continue
                self.add(k, f"expected a number, string or boolean, got {value_kind(value)}")
            elif key not in declared:
                self.unknown_param(k, key, model, declared)
            elif (why := declared[key].problem(value)) is not None:
                self.add(k, why)
            else:
                out[key] = value
                continue
            ok = False
        return out if ok else BAD

    def unknown_param(self, kp, key, model, declared) -> None:
        if key in PARAM_HINTS:
            hint = PARAM_HINTS[key]
        else:
            by_lower = {n.lower(): n for n in declared}
            close = difflib.get_close_matches(key.lower(), list(by_lower), n=1)
            own = [p.name for p in model.params]
            common = [n for n in declared if n not in own]
            hint = (f'did you mean "{by_lower[close[0]]}"?' if close else
                    f"its params: {', '.join(own) or 'none'}; every device's: {', '.join(common)}")
        self.add(kp, f"unknown param of model {q(model.id)} ({hint})")
