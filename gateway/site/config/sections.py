"""[gateway], [mqtt] (with its credentials file and [mqtt.tls]), [outbox], and
the walk over the whole document."""
from __future__ import annotations

import stat
from typing import Any

from .buses import BusSections, raw_names
from .checker import BAD, q
from .doors import DoorSection
from .types import (
    DEFAULTS,
    MIB,
    NAME_RE,
    NAME_TEXT,
    Config,
    GatewayCfg,
    MqttCfg,
    OutboxCfg,
    TlsCfg,
)

# Keys that people try in the wrong place get a pointer instead of a guess.
_HINTS = {
    "mqtt": {
        "username": "the user name goes in the file named by credentials_file",
        "password": "the password goes in the file named by credentials_file",
    },
}

_TOP = ("gateway", "mqtt", "outbox", "bus", "device")


class Checker(BusSections, DoorSection):
    """The whole site config: every section, every problem by key path."""

    def document(self, doc: dict) -> Config | None:
        sections: dict[str, Any] = {}
        runners = {
            "gateway": self.gateway, "mqtt": self.mqtt, "outbox": self.outbox,
            "bus": self.buses, "device": self.devices, "doors": self.doors,
        }
        # Devices name buses that may be written after them; take every
        # string name now so one bad bus is not reported again per device.
        self.bus_names = raw_names(doc.get("bus"))
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
            "fault_history_days": lambda k, x: self.number(k, x, 1, 3650),
        }
        got = self.fields(data, kp, spec, required=("id",))
        d = DEFAULTS["gateway"]
        return GatewayCfg(
            id=got.get("id", ""),
            site=got.get("site", d["site"]),
            state_dir=got.get("state_dir", self.resolve(d["state_dir"])),
            language=got.get("language", d["language"]),
            log_level=got.get("log_level", d["log_level"]),
            fault_history_days=got.get("fault_history_days", 90.0),
        )

    def state_dir(self, kp, v):
        s = self.string(kp, v)
        if s is BAD:
            return BAD
        p = self.resolve(s)
        if p.exists() and not p.is_dir():
            self.add(kp, f"{p} exists and is not a folder")
            return BAD
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
        if s is BAD:
            return BAD
        if "://" in s:
            self.add(kp, f"{q(s)} is a URL; write the host name or address only "
                         f"([mqtt.tls] chooses TLS)")
            return BAD
        if any(c.isspace() for c in s) or "/" in s:
            self.add(kp, f"{q(s)} is not a host name or IP address")
            return BAD
        return s

    def topic_prefix(self, kp, v):
        s = self.string(kp, v)
        if s is BAD:
            return BAD
        # The prefix is the start of every published topic: a wildcard or an
        # empty level would publish where no subscriber expects it.
        if "+" in s or "#" in s:
            self.add(kp, f"{q(s)} must not contain the MQTT wildcards + or #")
        elif s.startswith("/") or s.endswith("/"):
            self.add(kp, f"{q(s)} must not start or end with /")
        elif "//" in s:
            self.add(kp, f"{q(s)} must not contain an empty level (//)")
        elif s.startswith("$"):
            self.add(kp, f"{q(s)} must not start with $ (reserved for the broker)")
        elif "\x00" in s:
            self.add(kp, f"{q(s)} must not contain a NUL character")
        else:
            return s
        return BAD

    def credentials(self, kp, v):
        p = self.existing_file(kp, v)
        if p is BAD:
            return BAD
        bad = False
        if p.stat().st_mode & stat.S_IROTH:
            self.add(kp, f"{p} is readable by everyone (run: chmod 600 {p})")
            bad = True
        try:
            text = p.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError:
            self.add(kp, f"{p} is not UTF-8 text")
            return BAD
        # Only line endings are stripped: spaces may belong to a password.
        lines = text.splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        if not lines or not lines[0]:
            self.add(kp, f"{p}: line 1 (the user name) is empty")
            return BAD
        if len(lines) < 2 or not lines[1]:
            self.add(kp, f"{p}: line 2 (the password) is missing")
            return BAD
        if len(lines) > 2:
            self.add(kp, f"{p}: expected 2 lines (user name, password), found {len(lines)}")
            return BAD
        return BAD if bad else (lines[0], lines[1])

    def tls(self, kp, v):
        data = self.table(kp, v)
        if data is None:
            return BAD
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
            return BAD
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
        if n is not BAD and n < MIB:
            self.add(kp, f"{n} is below the minimum {MIB} (1 MiB)")
            return BAD
        return n
