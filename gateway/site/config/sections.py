"""[gateway], [mqtt] (with its credentials file and [mqtt.tls]), [outbox], and
the walk over the whole document."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from protocols.models.types import SEVERITIES

from .buses import BusSections, raw_names
from .checker import BAD, MAX_FILE_LINE, key_path, q
from .doors import DoorSection
from .types import (
    DEFAULTS,
    MIB,
    NAME_RE,
    NAME_TEXT,
    RESPOND_MAX_H,
    Config,
    GatewayCfg,
    HomeAssistantCfg,
    MqttCfg,
    OutboxCfg,
    ServiceCfg,
    TlsCfg,
    check_discovery_prefix,
)

# Keys that people try in the wrong place get a pointer instead of a guess.
_HINTS = {
    "mqtt": {
        "username": "the user name goes in the file named by credentials_file",
        "password": "the password goes in the file named by credentials_file",
    },
}

_TOP = ("gateway", "mqtt", "outbox", "bus", "device", "doors", "homeassistant", "service")


def models_dir_of(doc: dict, config_path) -> Path:
    """The site model folder a config names, read from its raw TOML: what the
    field commands load models from before the config can be checked (the
    check needs the models). The same rule as the checked key: relative to
    the config's folder, the default when absent or not a string."""
    raw = doc.get("gateway", {}).get("models_dir") if isinstance(doc.get("gateway"), dict) else None
    if not isinstance(raw, str) or not raw:
        raw = DEFAULTS["gateway"]["models_dir"]
    return Path(os.path.abspath(config_path)).parent / raw


class Checker(BusSections, DoorSection):
    """The whole site config: every section, every problem by key path."""

    def document(self, doc: dict) -> Config | None:
        sections: dict[str, Any] = {}
        runners = {
            "gateway": self.gateway, "mqtt": self.mqtt, "outbox": self.outbox,
            "bus": self.buses, "device": self.devices, "doors": self.doors,
            "homeassistant": self.homeassistant, "service": self.service,
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
                self.unknown(key_path("", key), key, _TOP, {})
                continue
            got = self.guarded(runners[key], key, value)
            sections[key] = None if got is BAD else got
        if "gateway" not in doc:
            self.add("gateway", 'required table is missing (add [gateway] with id = "...")')
        if "mqtt" not in doc:
            sections["mqtt"] = self.mqtt("mqtt", {})
        if "outbox" not in doc:
            sections["outbox"] = self.outbox("outbox", {})
        self.guarded(self._door_key_mode, "doors.pseudonym_key_file", (doc, sections.get("doors") or {}))

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
            homeassistant=sections.get("homeassistant") or self.homeassistant("homeassistant", {}),
            service=sections.get("service") or self.service("service", {}),
        )

    def service(self, kp, v):
        data = self.table(kp, v)
        if data is None:
            return None
        got = self.fields(data, kp, {"respond_within_h": self.respond_within_h})
        hours = dict(DEFAULTS["service"]["respond_within_h"])
        hours.update(got.get("respond_within_h") or {})
        return ServiceCfg(respond_within_h=hours)

    def respond_within_h(self, kp, v):
        data = self.table(kp, v)
        if data is None:
            return None
        spec = {sev: (lambda k, x: self.number(k, x, 0, RESPOND_MAX_H)) for sev in SEVERITIES}
        # whole hours stay integers, so the payload says 24, not 24.0
        return {k: int(h) if h.is_integer() else h for k, h in self.fields(data, kp, spec).items()}

    def homeassistant(self, kp, v):
        data = self.table(kp, v)
        if data is None:
            return None
        spec = {"enabled": self.boolean,
                "discovery_prefix": self.discovery_prefix}
        got = self.fields(data, kp, spec)
        d = DEFAULTS["homeassistant"]
        return HomeAssistantCfg(enabled=got.get("enabled", d["enabled"]),
                                discovery_prefix=got.get("discovery_prefix", d["discovery_prefix"]))

    def discovery_prefix(self, kp, v):
        # A topic prefix (worded as topic_prefix's problems), and whatever
        # else Home Assistant's discovery topics need (its length).
        s = self.topic_prefix(kp, v)
        if s is BAD:
            return BAD
        why = check_discovery_prefix(s)
        if why is not None:
            self.add(kp, f"{q(s) if len(s) <= 80 else q(s[:80]) + '...'}: {why}")
            return BAD
        return s

    def _door_key_mode(self, _kp, args) -> None:
        try:
            self.door_key_mode(*args)
        except OSError:
            pass   # the key file it looks at is state_dir's, whose own problem is reported

    def registry_csv(self, kp, v):
        # The door registry is read by gateway/site/cardfile.py; a file in
        # an encoding it does not read is a problem of this key, in words.
        try:
            return super().registry_csv(kp, v)
        except UnicodeDecodeError as e:
            self.add(kp, f"{self.resolve(v)}: is not {e.encoding.upper()} text (bad byte at offset {e.start}); "
                         f"save it as UTF-8 (in Excel: \"CSV UTF-8\")")
            return BAD

    def gateway(self, kp, v):
        data = self.table(kp, v)
        if data is None:
            return None
        spec = {
            "id": lambda k, x: self.string(k, x, pattern=NAME_RE, pattern_text=NAME_TEXT),
            "site": lambda k, x: self.string(k, x, empty_ok=True),
            "state_dir": self.folder,
            "language": lambda k, x: self.string(k, x, choices=("zh", "en")),
            "log_level": lambda k, x: self.string(k, x, choices=("debug", "info", "warning", "error")),
            "models_dir": self.folder,
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
            models_dir=got.get("models_dir", self.resolve(d["models_dir"])),
            fault_history_days=got.get("fault_history_days", 90.0),
        )

    def folder(self, kp, v):
        # state_dir and models_dir: a folder, or nothing there yet
        s = self.string(kp, v)
        if s is BAD:
            return BAD
        p = self.resolve(s)
        try:
            if p.exists() and not p.is_dir():
                self.add(kp, f"{p} exists and is not a folder")
                return BAD
        except OSError as e:   # e.g. a name longer than the filesystem allows
            self.add(kp, f"{p} cannot be used ({e.strerror})")
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

    def owner_only(self, kp, p, st) -> bool:
        """A secret (the broker password, a TLS client key) readable by its
        owner only. The edgegw group is the field engineers' (it opens the
        control socket), so a group-readable secret is theirs too."""
        if st.st_mode & stat.S_IROTH:
            self.add(kp, f"{p} is readable by everyone (run: chmod 600 {p})")
            return False
        if st.st_mode & stat.S_IRGRP:
            self.add(kp, f"{p} is readable by its group (run: chmod 600 {p})")
            return False
        return True

    def secret_file(self, kp, v):
        p = self.existing_file(kp, v)
        if p is BAD or not self.owner_only(kp, p, p.stat()):
            return BAD
        return p

    def credentials(self, kp, v):
        p = self.existing_file(kp, v)
        if p is BAD:
            return BAD
        st = p.stat()
        bad = not self.owner_only(kp, p, st)
        if st.st_size > MAX_FILE_LINE:
            self.add(kp, f"{p} is {st.st_size} bytes; expected 2 short lines (user name, password)")
            return BAD
        try:
            with open(p, "rb") as f:
                text = f.read(MAX_FILE_LINE + 1).decode("utf-8-sig")
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
            "key_file": self.secret_file,
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
