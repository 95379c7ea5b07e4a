"""The checked site config: what the rest of the gateway reads."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable


@dataclass(frozen=True)
class GatewayCfg:
    id: str
    site: str
    state_dir: Path
    language: str          # "zh" | "en"
    log_level: str
    # the site's own model files (docs/models/format.md): added to the
    # packaged models, or replacing one by id
    models_dir: Path = Path("/etc/edgegw/models")
    fault_history_days: float = 90.0   # history.jsonl keeps fault events this long (docs/configuration.md)


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
class ReportCfg:
    """Report by exception (docs/configuration.md [device.report])."""
    heartbeat_s: float     # a full telemetry message at least this often
    deadband: dict         # value name -> change (absolute, in its unit) that is reported


@dataclass(frozen=True)
class DeviceCfg:
    name: str
    bus: str
    unit: int
    model: str
    poll_interval_s: float
    enabled: bool
    params: dict
    report: ReportCfg | None = None   # None: every reading is published
    meta: dict = field(default_factory=dict)   # [device.meta]: where it is, who to call (strings)


@dataclass(frozen=True)
class HomeAssistantCfg:
    enabled: bool
    discovery_prefix: str


@dataclass(frozen=True)
class ServiceCfg:
    """Service promises (docs/configuration.md [service]): hours to the first
    response by severity; 0 is no promise."""
    respond_within_h: dict


# Reference I's after-sales procedures: first response within 1 h, the account
# manager on site within 24 h of a quality complaint, a repair answer within
# 72 h. The gateway's default reading of them: critical (gas safety, no gas)
# 1 h, major 24 h, minor 72 h, info none.
RESPOND_MAX_H = 8760   # a year: beyond that it is no promise at all


@dataclass(frozen=True)
class Config:
    path: Path
    gateway: GatewayCfg
    mqtt: MqttCfg
    outbox: OutboxCfg
    buses: tuple[BusCfg, ...]
    devices: tuple[DeviceCfg, ...]
    doors: dict
    homeassistant: HomeAssistantCfg = HomeAssistantCfg(False, "homeassistant")
    service: ServiceCfg = field(default_factory=lambda: ServiceCfg(dict(DEFAULTS["service"]["respond_within_h"])))


class ConfigError(Exception):
    """Every problem of a config file; str() is one problem per line."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
NAME_TEXT = 'may only contain letters, digits, "_" and "-" (1-64 characters)'
BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
MIB = 1 << 20
MODBUS_TCP_PORT = 502
DOOR_KEY_NAME = "door-pseudonym.key"   # in state_dir when [doors] names no key file
SERIAL_ONLY = ("baudrate", "parity", "stopbits", "bytesize")
# [device.meta]: what a service visit record and Home Assistant may show.
# Contact details are personal data: they stay on the box (the visit record),
# never in an MQTT payload.
DEVICE_META = ("address", "contact", "area", "manufacturer", "serial", "note")
META_MAX = 200

DEFAULTS: dict[str, dict[str, Any]] = {
    "gateway": {"site": "", "state_dir": "/var/lib/edgegw", "language": "en", "log_level": "info",
                "models_dir": "/etc/edgegw/models"},
    "mqtt": {"host": "127.0.0.1", "topic_prefix": "edgegw", "keepalive": 30, "qos": 1},
    "tls": {"insecure": False},
    "outbox": {"max_bytes": 256 * MIB, "max_age_days": 30.0, "synchronous": "full", "inflight": 100},
    "bus": {"baudrate": 9600, "parity": "E", "stopbits": 1, "bytesize": 8, "timeout_s": 0.5,
            "retries": 1, "gap": 8, "max_registers": 125, "backoff_max_s": 60.0},
    "device": {"poll_interval_s": 10.0, "enabled": True},
    "homeassistant": {"enabled": False, "discovery_prefix": "homeassistant"},
    "service": {"respond_within_h": {"critical": 1, "major": 24, "minor": 72, "info": 0}},
}


# Home Assistant's discovery topics start with it (docs/integrations.md);
# the config check and gateway/deliver/hass.py apply the same rule.
DISCOVERY_PREFIX_MAX_BYTES = 200


def check_discovery_prefix(prefix: Any) -> str | None:
    """Why ``prefix`` cannot be a discovery prefix, or None when it can."""
    if not isinstance(prefix, str) or not prefix:
        return "must be a non-empty string"
    if "+" in prefix or "#" in prefix:
        return "must not contain + or #"
    if prefix.startswith("/") or prefix.endswith("/") or "//" in prefix:
        return "no leading or trailing /, no empty level (//)"
    if prefix.startswith("$"):
        return "must not start with $ (broker topics)"
    if "\x00" in prefix:
        return "must not contain a NUL character"
    if len(prefix.encode()) > DISCOVERY_PREFIX_MAX_BYTES:
        return f"{len(prefix.encode())} bytes, more than {DISCOVERY_PREFIX_MAX_BYTES}"
    return None
