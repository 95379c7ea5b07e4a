"""Site configuration: one TOML file, checked completely before any port opens.

A site installer fixes a config in one pass only if every problem is shown at
once, each with the key it is about, so the checker never stops at the first
problem: it walks the whole file and collects. Problems come out in file
order (tables in the order they first appear, keys in the order written) so
the list reads top to bottom next to the file. Reference: docs/configuration.md.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import ipaddress
import json
import math
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

__all__ = [
    "BusCfg", "Config", "ConfigError", "DeviceCfg", "GatewayCfg", "MqttCfg",
    "OutboxCfg", "TlsCfg", "check_config", "load_config",
]


# --------------------------------------------------------------------------- public types

@dataclass(frozen=True)
class GatewayCfg:
    id: str
    site: str
    state_dir: Path
    language: str          # "zh" | "en"
    log_level: str


@dataclass(frozen=True)
class TlsCfg:
    ca_file: Path
    cert_file: Path | None
    key_file: Path | None
    insecure: bool


@dataclass(frozen=True)
class MqttCfg:
    host: str
    port: int
    client_id: str
    topic_prefix: str
    keepalive: int
    username: str | None
    password: str | None = field(repr=False)   # keep it out of logs and tracebacks
    tls: TlsCfg | None
    qos: int


@dataclass(frozen=True)
class OutboxCfg:
    max_bytes: int
    max_age_days: float
    synchronous: str       # "full" | "normal"
    inflight: int


@dataclass(frozen=True)
class BusCfg:
    name: str
    kind: str              # "serial" | "tcp"
    port: str              # device path, or host for tcp
    tcp_port: int | None
    baudrate: int
    parity: str
    stopbits: int
    bytesize: int
    timeout_s: float
    retries: int
    gap: int
    max_registers: int
    backoff_max_s: float


@dataclass(frozen=True)
class DeviceCfg:
    name: str
    bus: str
    unit: int
    model: str
    poll_interval_s: float
    enabled: bool
    params: dict


@dataclass(frozen=True)
class Config:
    path: Path
    gateway: GatewayCfg
    mqtt: MqttCfg
    outbox: OutboxCfg
    buses: tuple[BusCfg, ...]
    devices: tuple[DeviceCfg, ...]
    doors: dict


class ConfigError(Exception):
    """Every problem of a config file; str() is one problem per line."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def load_config(path, *, known_models: Iterable[str] | None = None) -> Config:
    """Read and check `path`; raise ConfigError listing every problem."""
    config, problems = _check(path, known_models)
    if problems:
        raise ConfigError(problems)
    assert config is not None
    return config


def check_config(path, *, known_models: Iterable[str] | None = None) -> list[str]:
    """Every problem of `path`, in file order; [] when it is valid."""
    return _check(path, known_models)[1]


# --------------------------------------------------------------------------- rules

NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
NAME_TEXT = 'may only contain letters, digits, "_" and "-" (1-64 characters)'
BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
MIB = 1 << 20
MODBUS_TCP_PORT = 502
DOOR_KEY_NAME = "door-pseudonym.key"   # in state_dir when [doors] names no key file
SERIAL_ONLY = ("baudrate", "parity", "stopbits", "bytesize")

DEFAULTS: dict[str, dict[str, Any]] = {
    "gateway": {"site": "", "state_dir": "/var/lib/edgegw", "language": "en", "log_level": "info"},
    "mqtt": {"host": "127.0.0.1", "topic_prefix": "edgegw", "keepalive": 30, "qos": 1},
    "tls": {"insecure": False},
    "outbox": {"max_bytes": 256 * MIB, "max_age_days": 30.0, "synchronous": "full", "inflight": 100},
    "bus": {"baudrate": 9600, "parity": "E", "stopbits": 1, "bytesize": 8, "timeout_s": 0.5,
            "retries": 1, "gap": 8, "max_registers": 125, "backoff_max_s": 60.0},
    "device": {"poll_interval_s": 10.0, "enabled": True},
}

# Keys that people try in the wrong place get a pointer instead of a guess.
_HINTS = {
    "mqtt": {
        "username": "the user name goes in the file named by credentials_file",
        "password": "the password goes in the file named by credentials_file",
    },
}

_TOP = ("gateway", "mqtt", "outbox", "bus", "device")
_TOML_ERR = re.compile(r"(?s)(.*) \(at line (\d+), column (\d+)\)\Z")
_HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\Z")
_TCP_RE = re.compile(r"(?:\[(?P<v6>[^\]]*)\]|(?P<host>[^:/\[\]]*))(?::(?P<port>[0-9]+))?\Z")

_BAD = object()   # a value that failed its check; its problem is already recorded


def _q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _num(x) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return repr(x)


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return f"boolean {'true' if v else 'false'}"
    if isinstance(v, int):
        return f"integer {v}"
    if isinstance(v, float):
        return f"float {v!r}"
    if isinstance(v, str):
        return f"string {_q(v)}"
    if isinstance(v, dict):
        return "table"
    if isinstance(v, list):
        return "array"
    if isinstance(v, (_dt.datetime, _dt.date, _dt.time)):
        return f"date/time {v.isoformat()}"
    return type(v).__name__


# --------------------------------------------------------------------------- checker

Check = Callable[[str, Any], Any]


class _Checker:
    def __init__(self, path: Path, known_models: Iterable[str] | None):
        self.path = path
        self.base = path.parent
        self.known_models = None if known_models is None else sorted(set(known_models))
        self.problems: list[str] = []

    def add(self, keypath: str, message: str) -> None:
        self.problems.append(f"{keypath}: {message}")

    # ---- scalar checks: each records its own problem and returns _BAD

    def string(self, kp, v, *, choices=None, pattern=None, pattern_text="", empty_ok=False):
        if not isinstance(v, str):
            self.add(kp, f"expected a string, got {_kind(v)}")
            return _BAD
        if choices is not None and v not in choices:
            self.add(kp, f"{_q(v)} must be one of {', '.join(choices)}")
            return _BAD
        if not v and not empty_ok:
            self.add(kp, "must not be empty")
            return _BAD
        if pattern is not None and not pattern.match(v):
            self.add(kp, f"{_q(v)} {pattern_text}")
            return _BAD
        return v

    def integer(self, kp, v, lo=None, hi=None, choices=None):
        if isinstance(v, bool) or not isinstance(v, int):
            self.add(kp, f"expected an integer, got {_kind(v)}")
            return _BAD
        if choices is not None and v not in choices:
            self.add(kp, f"{v} must be one of {', '.join(map(str, choices))}")
            return _BAD
        if lo is not None and hi is not None and not lo <= v <= hi:
            self.add(kp, f"{v} is outside {lo}-{hi}")
            return _BAD
        if lo is not None and hi is None and v < lo:
            self.add(kp, f"{v} is below the minimum {lo}")
            return _BAD
        return v

    def number(self, kp, v, lo=None, hi=None, above=None):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.add(kp, f"expected a number, got {_kind(v)}")
            return _BAD
        if not math.isfinite(v):
            self.add(kp, f"{v!r} is not a finite number")
            return _BAD
        if lo is not None and not lo <= v <= hi:
            self.add(kp, f"{_num(v)} is outside {_num(lo)}-{_num(hi)}")
            return _BAD
        if above is not None and not v > above:
            self.add(kp, f"{_num(v)} must be greater than {_num(above)}")
            return _BAD
        return float(v)

    def boolean(self, kp, v):
        if not isinstance(v, bool):
            self.add(kp, f"expected true or false, got {_kind(v)}")
            return _BAD
        return v

    def table(self, kp, v) -> dict | None:
        if not isinstance(v, dict):
            self.add(kp, f"expected a table, got {_kind(v)}")
            return None
        return v

    def resolve(self, p: str) -> Path:
        return self.base / p   # an absolute p replaces the base

    def existing_file(self, kp, v):
        s = self.string(kp, v)
        if s is _BAD:
            return _BAD
        p = self.resolve(s)
        if not p.exists():
            self.add(kp, f"{p} does not exist")
            return _BAD
        if not p.is_file():
            self.add(kp, f"{p} is not a file")
            return _BAD
        try:
            with open(p, "rb"):
                pass
        except OSError as e:
            self.add(kp, f"{p} cannot be read ({e.strerror})")
            return _BAD
        return p

    # ---- tables

    def fields(self, data: dict, path: str, spec: dict[str, Check], *,
               required: tuple[str, ...] = (), hints: dict[str, str] | None = None) -> dict:
        """Check every key of `data` in file order; unknown keys are problems."""
        out: dict = {}
        for key, value in data.items():
            kp = f"{path}.{key}" if path else key
            check = spec.get(key)
            if check is None:
                self.unknown(kp, key, spec, hints or {})
                continue
            result = check(kp, value)
            if result is not _BAD:
                out[key] = result
        for key in required:
            if key not in data:
                self.add(f"{path}.{key}", "required key is missing")
        return out

    def unknown(self, kp, key, known: Iterable[str], hints: dict[str, str]) -> None:
        known = list(known)
        if key in hints:
            self.add(kp, f"unknown key ({hints[key]})")
            return
        by_lower = {k.lower(): k for k in known}
        close = difflib.get_close_matches(key.lower(), list(by_lower), n=1)
        if close:
            self.add(kp, f'unknown key (did you mean "{by_lower[close[0]]}"?)')
        else:
            self.add(kp, f"unknown key (known keys: {', '.join(known)})")

    def array_of_tables(self, kp, v) -> list | None:
        if isinstance(v, dict):
            self.add(kp, f"expected an array of tables ([[{kp}]]), got a single table ([{kp}])")
            return None
        if not isinstance(v, list):
            self.add(kp, f"expected an array of tables ([[{kp}]]), got {_kind(v)}")
            return None
        return v

    # ---- the document

    def document(self, doc: dict) -> Config | None:
        sections: dict[str, Any] = {}
        runners = {
            "gateway": self.gateway, "mqtt": self.mqtt, "outbox": self.outbox,
            "bus": self.buses, "device": self.devices, "doors": self.doors,
        }
        # Devices name buses that may be written after them; take every
        # string name now so one bad bus is not reported again per device.
        self.bus_names = _raw_names(doc.get("bus"))
        self.gateway_id: str | None = None
        if isinstance(doc.get("gateway"), dict) and isinstance(doc["gateway"].get("id"), str):
            self.gateway_id = doc["gateway"]["id"]
        self.tls_present = isinstance(doc.get("mqtt"), dict) and "tls" in doc["mqtt"]

        for key, value in doc.items():
            if key not in runners:
                self.unknown(key, key, _TOP, {})
                continue
            sections[key] = runners[key](key, value)
        if "gateway" not in doc:
            self.add("gateway", 'required table is missing (add [gateway] with id = "...")')
        if "mqtt" not in doc:
            sections["mqtt"] = self.mqtt("mqtt", {})
        if "outbox" not in doc:
            sections["outbox"] = self.outbox("outbox", {})
        self.door_key_mode(doc, sections.get("doors") or {})

        if self.problems:
            return None
        return Config(
            path=self.path,
            gateway=sections["gateway"],
            mqtt=sections["mqtt"],
            outbox=sections["outbox"],
            buses=tuple(sections.get("bus", ())),
            devices=tuple(sections.get("device", ())),
            doors=sections.get("doors") or {},
        )

    def gateway(self, kp, v):
        data = self.table(kp, v)
        if data is None:
            return None
        spec = {
            "id": lambda k, x: self.string(k, x, pattern=NAME_RE, pattern_text=NAME_TEXT),
            "site": lambda k, x: self.string(k, x, empty_ok=True),
            "state_dir": self.state_dir,
            "language": lambda k, x: self.string(k, x, choices=("zh", "en")),
            "log_level": lambda k, x: self.string(k, x, choices=("debug", "info", "warning", "error")),
        }
        got = self.fields(data, kp, spec, required=("id",))
        d = DEFAULTS["gateway"]
        return GatewayCfg(
            id=got.get("id", ""),
            site=got.get("site", d["site"]),
            state_dir=got.get("state_dir", self.resolve(d["state_dir"])),
            language=got.get("language", d["language"]),
            log_level=got.get("log_level", d["log_level"]),
        )

    def state_dir(self, kp, v):
        s = self.string(kp, v)
        if s is _BAD:
            return _BAD
        p = self.resolve(s)
        if p.exists() and not p.is_dir():
            self.add(kp, f"{p} exists and is not a folder")
            return _BAD
        return p

    def mqtt(self, kp, v):
        data = self.table(kp, v)
        if data is None:
            return None
        spec = {
            "host": self.host,
            "port": lambda k, x: self.integer(k, x, 1, 65535),
            "client_id": lambda k, x: self.string(k, x),
            "topic_prefix": self.topic_prefix,
            "keepalive": lambda k, x: self.integer(k, x, 5, 3600),
            "qos": lambda k, x: self.integer(k, x, choices=(0, 1)),
            "credentials_file": self.credentials,
            "tls": self.tls,
        }
        got = self.fields(data, kp, spec, hints=_HINTS["mqtt"])
        d = DEFAULTS["mqtt"]
        username, password = got.get("credentials_file", (None, None))
        tls = got.get("tls")
        return MqttCfg(
            host=got.get("host", d["host"]),
            port=got.get("port", 8883 if "tls" in data else 1883),
            client_id=got.get("client_id", f"edgegw-{self.gateway_id}"),
            topic_prefix=got.get("topic_prefix", d["topic_prefix"]),
            keepalive=got.get("keepalive", d["keepalive"]),
            username=username,
            password=password,
            tls=tls,
            qos=got.get("qos", d["qos"]),
        )

    def host(self, kp, v):
        s = self.string(kp, v)
        if s is _BAD:
            return _BAD
        if "://" in s:
            self.add(kp, f"{_q(s)} is a URL; write the host name or address only "
                         f"([mqtt.tls] chooses TLS)")
            return _BAD
        if any(c.isspace() for c in s) or "/" in s:
            self.add(kp, f"{_q(s)} is not a host name or IP address")
            return _BAD
        return s

    def topic_prefix(self, kp, v):
        s = self.string(kp, v)
        if s is _BAD:
            return _BAD
        # The prefix is the start of every published topic: a wildcard or an
        # empty level would publish where no subscriber expects it.
        if "+" in s or "#" in s:
            self.add(kp, f"{_q(s)} must not contain the MQTT wildcards + or #")
        elif s.startswith("/") or s.endswith("/"):
            self.add(kp, f"{_q(s)} must not start or end with /")
        elif "//" in s:
            self.add(kp, f"{_q(s)} must not contain an empty level (//)")
        elif s.startswith("$"):
            self.add(kp, f"{_q(s)} must not start with $ (reserved for the broker)")
        elif "\x00" in s:
            self.add(kp, f"{_q(s)} must not contain a NUL character")
        else:
            return s
        return _BAD

    def credentials(self, kp, v):
        p = self.existing_file(kp, v)
        if p is _BAD:
            return _BAD
        bad = False
        if p.stat().st_mode & stat.S_IROTH:
            self.add(kp, f"{p} is readable by everyone (run: chmod 600 {p})")
            bad = True
        try:
            text = p.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError:
            self.add(kp, f"{p} is not UTF-8 text")
            return _BAD
        # Only line endings are stripped: spaces may belong to a password.
        lines = text.splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        if not lines or not lines[0]:
            self.add(kp, f"{p}: line 1 (the user name) is empty")
            return _BAD
        if len(lines) < 2 or not lines[1]:
            self.add(kp, f"{p}: line 2 (the password) is missing")
            return _BAD
        if len(lines) > 2:
            self.add(kp, f"{p}: expected 2 lines (user name, password), found {len(lines)}")
            return _BAD
        return _BAD if bad else (lines[0], lines[1])

    def tls(self, kp, v):
        data = self.table(kp, v)
        if data is None:
            return _BAD
        spec = {
            "ca_file": self.existing_file,
            "cert_file": self.existing_file,
            "key_file": self.existing_file,
            "insecure": self.boolean,
        }
        got = self.fields(data, kp, spec, required=("ca_file",))
        if ("cert_file" in data) != ("key_file" in data):
            missing = "key_file" if "cert_file" in data else "cert_file"
            self.add(kp, f"cert_file and key_file go together ({missing} is missing)")
        if "ca_file" not in got:
            return _BAD
        return TlsCfg(
            ca_file=got["ca_file"],
            cert_file=got.get("cert_file"),
            key_file=got.get("key_file"),
            insecure=got.get("insecure", DEFAULTS["tls"]["insecure"]),
        )

    def outbox(self, kp, v):
        data = self.table(kp, v)
        if data is None:
            return None
        spec = {
            "max_bytes": self.max_bytes,
            "max_age_days": lambda k, x: self.number(k, x, above=0),
            "synchronous": lambda k, x: self.string(k, x, choices=("full", "normal")),
            "inflight": lambda k, x: self.integer(k, x, 1, 1000),
        }
        got = self.fields(data, kp, spec)
        d = DEFAULTS["outbox"]
        return OutboxCfg(
            max_bytes=got.get("max_bytes", d["max_bytes"]),
            max_age_days=got.get("max_age_days", d["max_age_days"]),
            synchronous=got.get("synchronous", d["synchronous"]),
            inflight=got.get("inflight", d["inflight"]),
        )

    def max_bytes(self, kp, v):
        n = self.integer(kp, v)
        if n is not _BAD and n < MIB:
            self.add(kp, f"{n} is below the minimum {MIB} (1 MiB)")
            return _BAD
        return n

    # ---- buses

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
                    return _BAD
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
                self.add(f"{kp}.port", f"{_q(device_path)} is already used by {other}")
            else:
                name = data.get("name")
                self.seen_serial_ports[device_path] = (
                    f"bus {_q(name)}" if isinstance(name, str) else kp)
        if "name" not in got or "port" not in got:
            return None
        kind, host, tcp_port = got["port"]
        d = DEFAULTS["bus"]
        return BusCfg(
            name=got["name"], kind=kind, port=host, tcp_port=tcp_port,
            **{k: got.get(k, d[k]) for k in d},
        )

    def unique_name(self, kp, v, seen: dict[str, int]):
        s = self.string(kp, v, pattern=NAME_RE, pattern_text=NAME_TEXT)
        if s is _BAD:
            return _BAD
        if s in seen:
            self.add(kp, f"{_q(s)} is used twice")
            return _BAD
        seen[s] = 1
        return s

    def bus_port(self, kp, v):
        s = self.string(kp, v)
        if s is _BAD:
            return _BAD
        usage = "a serial device path (/dev/serial/by-id/...) or tcp://host:port"
        if "://" not in s:
            if not s.startswith("/"):
                self.add(kp, f"{_q(s)} is not {usage}")
                return _BAD
            return ("serial", s, None)
        scheme, rest = s.split("://", 1)
        if scheme != "tcp":
            self.add(kp, f'{_q(s)}: unsupported scheme "{scheme}" (expected {usage})')
            return _BAD
        m = _TCP_RE.match(rest)
        if m is None or not (m["v6"] or m["host"]):
            self.add(kp, f"{_q(s)} is not tcp://host:port (IPv6 in brackets: tcp://[::1]:502)")
            return _BAD
        if m["v6"] is not None:
            host = m["v6"]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                self.add(kp, f"{_q(s)}: [{host}] is not an IPv6 address")
                return _BAD
        else:
            host = m["host"]
            if not _HOST_RE.match(host):
                self.add(kp, f"{_q(s)}: {_q(host)} is not a host name or IP address")
                return _BAD
        port = int(m["port"]) if m["port"] is not None else MODBUS_TCP_PORT
        if not 1 <= port <= 65535:
            self.add(kp, f"{_q(s)}: port {port} is outside 1-65535")
            return _BAD
        return ("tcp", host, port)

    def baudrate(self, kp, v):
        n = self.integer(kp, v)
        if n is not _BAD and n not in BAUDRATES:
            self.add(kp, f"{n} is not a standard rate ({', '.join(map(str, BAUDRATES))})")
            return _BAD
        return n

    # ---- devices

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
            "name": lambda k, x: self.unique_name(k, x, self.seen_device_names),
            "bus": self.device_bus,
            "unit": lambda k, x: self.integer(k, x, 1, 247),
            "model": self.model,
            "poll_interval_s": lambda k, x: self.number(k, x, 0.1, 86400),
            "enabled": self.boolean,
            "params": self.params,
        }
        got = self.fields(data, kp, spec, required=("name", "bus", "unit", "model"))
        if "bus" in got and "unit" in got:
            key = (got["bus"], got["unit"])
            if key in self.units:
                self.add(kp, f"unit {got['unit']} on bus {_q(got['bus'])} "
                             f"is already used by {self.units[key]}")
            else:
                name = data.get("name")
                self.units[key] = f"device {_q(name)}" if isinstance(name, str) else kp
        if not {"name", "bus", "unit", "model"} <= got.keys():
            return None
        d = DEFAULTS["device"]
        return DeviceCfg(
            name=got["name"], bus=got["bus"], unit=got["unit"], model=got["model"],
            poll_interval_s=got.get("poll_interval_s", d["poll_interval_s"]),
            enabled=got.get("enabled", d["enabled"]),
            params=got.get("params", {}),
        )

    def device_bus(self, kp, v):
        s = self.string(kp, v)
        if s is _BAD:
            return _BAD
        if s not in self.bus_names:
            listed = ", ".join(self.bus_names) if self.bus_names else "no [[bus]] is configured"
            self.add(kp, f"{_q(s)} is not a configured bus ({listed})")
            return _BAD
        return s

    def model(self, kp, v):
        s = self.string(kp, v)
        if s is _BAD:
            return _BAD
        if self.known_models is not None and s not in self.known_models:
            listed = ", ".join(self.known_models) or "none are installed"
            self.add(kp, f"{_q(s)} is not a known model ({listed})")
            return _BAD
        return s

    # ---- doors (docs/doors.md): checked here, interpreted by gateway/cards.py

    def doors(self, kp, v):
        data = self.table(kp, v)
        if data is None:
            return {}
        years = lambda k, x: self.integer(k, x, 1, 10)  # noqa: E731
        spec = {
            "pseudonym_key_file": self.door_key_file,
            "publish_raw_card_numbers": self.boolean,
            "registry_csv": self.registry_csv,
            "history_days": lambda k, x: self.number(k, x, 1, 3650),
            "clock_skew_warn_s": lambda k, x: self.number(k, x, 1, 86400),
            "owner_years": years, "family_years": years,
            "tenant_years": years, "merchant_years": years,
            "parking_months": lambda k, x: self.integer(k, x, 1, 24),
            "expiry_reminder_days": lambda k, x: self.integer(k, x, 1, 365),
            "reminder_hour": lambda k, x: self.integer(k, x, 0, 23),
            "timezone": self.timezone,
        }
        return self.fields(data, kp, spec)

    def door_key_file(self, kp, v):
        s = self.string(kp, v)
        if s is _BAD:
            return _BAD
        p = self.resolve(s)
        if not p.exists():
            self.add(kp, f"{p} does not exist (leave pseudonym_key_file out and the gateway "
                         f"creates a key in state_dir)")
            return _BAD
        if not p.is_file():
            self.add(kp, f"{p} is not a file")
            return _BAD
        return p

    def door_key_mode(self, doc: dict, doors: dict) -> None:
        # Whoever can read the key can turn published pseudonyms back into
        # card numbers (2^32 tries), so it must be the service's alone. The
        # key the gateway generated itself (state_dir) is checked as well.
        p = doors.get("pseudonym_key_file")
        if p is None:
            raw = doc.get("gateway", {}).get("state_dir") if isinstance(doc.get("gateway"), dict) else None
            p = self.resolve(raw if isinstance(raw, str) else DEFAULTS["gateway"]["state_dir"]) / DOOR_KEY_NAME
            if not p.is_file():
                return
        try:
            mode = p.stat().st_mode
        except OSError:
            return
        if mode & 0o077:
            self.add("doors.pseudonym_key_file",
                     f"{p} is readable or writable by group or others (run: chmod 600 {p})")

    def registry_csv(self, kp, v):
        p = self.existing_file(kp, v)
        if p is _BAD:
            return _BAD
        from .cards import RegistryError, parse_csv
        try:
            parse_csv(p.read_bytes(), source=str(p))
        except RegistryError as exc:
            for problem in exc.problems:
                self.add(kp, f"{p}: {problem}")
            return _BAD
        return p

    def timezone(self, kp, v):
        s = self.string(kp, v)
        if s is _BAD:
            return _BAD
        import zoneinfo
        try:
            zoneinfo.ZoneInfo(s)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            self.add(kp, f"{_q(s)} is not a time zone (e.g. \"Asia/Shanghai\", \"UTC\")")
            return _BAD
        return s

    def params(self, kp, v):
        data = self.table(kp, v)
        if data is None:
            return _BAD
        out = {}
        ok = True
        for key, value in data.items():
            if isinstance(value, (bool, int, float, str)):
                out[key] = value
            else:
                self.add(f"{kp}.{key}", f"expected a number, string or boolean, got {_kind(value)}")
                ok = False
        return out if ok else _BAD


def _raw_names(entries) -> list[str]:
    if not isinstance(entries, list):
        return []
    names: list[str] = []
    for e in entries:
        if isinstance(e, dict) and isinstance(e.get("name"), str) and e["name"] not in names:
            names.append(e["name"])
    return names


def _check(path, known_models) -> tuple[Config | None, list[str]]:
    given = str(path)
    path = Path(os.path.abspath(path))
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, [f"{given}: file not found"]
    except IsADirectoryError:
        return None, [f"{given}: is a folder, expected a TOML file"]
    except OSError as e:
        return None, [f"{given}: cannot be read ({e.strerror})"]
    try:
        # utf-8-sig: editors on Windows add a BOM, which TOML itself rejects.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return None, [f"{given}: is not UTF-8 text (bad byte at offset {e.start})"]
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = _TOML_ERR.match(str(e))
        if m:
            return None, [f"{given}: TOML syntax error at line {m[2]}, column {m[3]}: {m[1]}"]
        return None, [f"{given}: TOML syntax error: {e}"]
    checker = _Checker(path, known_models)
    config = checker.document(doc)
    return config, checker.problems


def _main(argv: list[str] | None = None) -> int:
    # Lets an installer check a file before the CLI or the daemon exist on
    # the box: python3 -m gateway.config /etc/edgegw/edgegw.toml
    import sys
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python3 -m gateway.config CONFIG.toml", file=sys.stderr)
        return 2
    problems = check_config(args[0])
    for p in problems:
        print(p)
    if not problems:
        print(f"{args[0]}: OK")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(_main())
