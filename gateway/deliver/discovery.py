"""Keeps the broker's retained Home Assistant discovery configs equal to what
the site config announces (deliver/hass.py builds them), sending only what
changed.

A site on a metered uplink must not resend hundreds of kilobytes of config
on every reconnect: the broker retains them. So the gateway remembers, in
the outbox's kv store, a hash of every config the broker acknowledged, and
on each connect publishes only configs that are new or changed, and an empty
retained message (which removes the entity) for each topic it announced
before and no longer wants: a device that left the config, or everything
when discovery is switched off. Sends go out a few at a time as PUBACKs
come back, outside the outbox: a discovery config carries no seq, and the
current one is always rebuilt from the config.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

from gateway import __version__

from . import hass
from .payloads import Topics

KV_KEY = "hass/announced"
WINDOW = 20        # configs in flight at once
SAVE_EVERY = 50    # acknowledged configs between saves of what is announced

Publish = Callable[[str, bytes], "int | None"]   # topic, payload -> paho mid, None when down


def digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()[:32]


class Announcer:
    def __init__(self, wanted: dict[str, bytes], announced: dict[str, str],
                 save: Callable[[dict[str, str]], None]) -> None:
        self.wanted = wanted
        self.announced = dict(announced)
        self.save = save
        self._pending: list[tuple[str, bytes]] = []
        self._inflight: dict[int, tuple[str, str | None]] = {}
        self._publish: Publish | None = None
        self._unsaved = 0
        self.sent = 0

    def due(self) -> list[tuple[str, bytes]]:
        """What the broker does not hold yet: changed configs, then removals."""
        out = [(t, p) for t, p in self.wanted.items() if self.announced.get(t) != digest(p)]
        out += [(t, b"") for t in sorted(self.announced) if t not in self.wanted]
        return out

    def on_up(self, publish: Publish) -> None:
        self._publish = publish
        self._inflight.clear()
        self._pending = self.due()
        self._pump()

    def on_down(self) -> None:
        self._publish = None
        self._inflight.clear()

    def on_ack(self, mid: int) -> bool:
        """True when the PUBACK was for a discovery config."""
        done = self._inflight.pop(mid, None)
        if done is None:
            return False
        topic, h = done
        if h is None:
            self.announced.pop(topic, None)
        else:
            self.announced[topic] = h
        self._unsaved += 1
        self._pump()
        if self._unsaved >= SAVE_EVERY or not (self._pending or self._inflight):
            self.save(dict(self.announced))
            self._unsaved = 0
        return True

    def _pump(self) -> None:
        while self._publish is not None and self._pending and len(self._inflight) < WINDOW:
            topic, payload = self._pending.pop(0)
            mid = self._publish(topic, payload)
            if mid is None:
                self._pending.insert(0, (topic, payload))
                return
            self._inflight[mid] = (topic, digest(payload) if payload else None)
            self.sent += 1


def announcer(cfg, runtimes: Mapping, bus_of: Mapping[str, str], topics: Topics,
              extra_values: Mapping[str, tuple[str, ...]], announced: dict[str, str],
              save: Callable[[dict[str, str]], None]) -> Announcer | None:
    """The announcer for this site config, or None when discovery is off and
    nothing was ever announced. `extra_values`: device -> numeric state keys
    beyond its register map (door controllers)."""
    ha = cfg.homeassistant
    if not ha.enabled and not announced:
        return None
    wanted: dict[str, bytes] = {}
    if ha.enabled:
        devices = []
        for name, rt in runtimes.items():
            meta = {"suggested_area": rt.cfg.meta.get("area"), "manufacturer": rt.cfg.meta.get("manufacturer"),
                    "extra_values": extra_values.get(name)}
            devices.append(hass.Device(name, rt.model, bus_of[name], rt.cfg.unit,
                                       {k: v for k, v in meta.items() if v}))
        msgs = hass.discovery(topics.base, cfg.gateway.id, ha.discovery_prefix, devices, sw_version=__version__)
        wanted = {topic: hass.encode(payload) for topic, payload in msgs}
    return Announcer(wanted, announced, save)
