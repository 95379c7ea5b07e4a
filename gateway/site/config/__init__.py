"""Site configuration: one TOML file, checked completely before any port opens.

A site installer fixes a config in one pass only if every problem is shown at
once, each with the key it is about, so the checker never stops at the first
problem: it walks the whole file and collects. Problems come out in file
order (tables in the order they first appear, keys in the order written) so
the list reads top to bottom next to the file. Reference: docs/configuration.md.

    types.py     the checked config as frozen dataclasses, defaults
    checker.py   scalar checks and the problem list (key path: message)
    sections.py  [gateway], [mqtt], [mqtt.tls], [outbox], and the document
    buses.py     [[bus]] and [[device]]
    doors.py     [doors]
    load.py      read the file (encoding, TOML syntax) and run the checker
"""

from .load import Checker, check_config, load_config
from .types import (
    DEFAULTS,
    BusCfg,
    Config,
    ConfigError,
    DeviceCfg,
    GatewayCfg,
    HomeAssistantCfg,
    MqttCfg,
    OutboxCfg,
    ReportCfg,
    TlsCfg,
)

__all__ = [
    "DEFAULTS", "BusCfg", "Checker", "Config", "ConfigError", "DeviceCfg", "GatewayCfg", "HomeAssistantCfg", "MqttCfg",
    "OutboxCfg", "ReportCfg", "TlsCfg", "check_config", "load_config",
]
