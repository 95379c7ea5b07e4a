"""Report by exception: publish a device's telemetry only when something a
consumer would act on changed, and at least every heartbeat.

Sites on cellular links pay for every byte. With `[device.report]`, a
reading is published when any numeric value moved by more than its deadband
from the value last *published* (so a slow drift is reported once it adds
up), when any other value changed, when the reading's quality changed (a
field failed or recovered), or when `heartbeat_s` passed since the last
telemetry message. What is published is always the whole reading, so every
message stands on its own. Fault events and retained state do not depend on
this: an alarm is never held back. docs/mqtt.md says what a consumer may
assume.
"""
from __future__ import annotations

from gateway.site.config.types import ReportCfg

_MISSING = object()


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Reporter:
    def __init__(self, cfg: ReportCfg) -> None:
        self.heartbeat_s = cfg.heartbeat_s
        self.deadband = dict(cfg.deadband)
        self._values: dict = {}
        self._errors: dict | None = None
        self._at = float("-inf")

    def due(self, values: dict, errors: dict, now: float) -> bool:
        """Whether this reading goes out; `errors` is field -> failure type."""
        if now - self._at >= self.heartbeat_s or errors != self._errors:
            return True
        sent = self._values
        for k, v in values.items():
            old = sent.get(k, _MISSING)
            if old is _MISSING:
                return True
            if _number(v) and _number(old):
                if abs(v - old) > self.deadband.get(k, 0.0):
                    return True
            elif v != old:
                return True
        return False

    def sent(self, values: dict, errors: dict, now: float) -> None:
        self._values = dict(values)
        self._errors = dict(errors)
        self._at = now
