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
