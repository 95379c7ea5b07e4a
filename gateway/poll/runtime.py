"""What the bus task knows of each device and of the line: schedule, failure
counts, availability, last values; request counters and response times."""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from gateway.site.config import BusCfg, DeviceCfg
from protocols.modbus.plan import Read, plan
from protocols.models import Model

# Consecutive failed polls before a device is reported unavailable; one
# garbled frame on a noisy line must not flap the availability.
UNAVAILABLE_AFTER = 3
RESPONSE_SAMPLES = 256


@dataclass(slots=True)           # one per device
class DeviceRuntime:
    cfg: DeviceCfg
    model: Model
    reads: list[Read]
    next_due: float = 0.0
    fails: int = 0
    available: bool | None = None
    last_error: str | None = None
    last_error_ts: str | None = None
    last_good_mono: float | None = None
    last_good_ts: str | None = None
    last_values: dict = field(default_factory=dict)
    counters: Counter = field(default_factory=Counter)
    # A device that is not polled by register map (a door controller's event
    # log) brings its own poller: an object with `async poll(bus, device)`.
    custom: object | None = None

    @property
    def name(self) -> str:
        return self.cfg.name


# The plan of a model on a bus's limits, for every device of that model:
# its Reads are frozen, and a device's own list of them is what changes
# (a read split after exception 02). Keyed by id(); the entry keeps the
# model alive. 500 devices' own plans were 0.15 MB.
_PLANS: dict[tuple, tuple[Model, tuple[Read, ...]]] = {}


def make_runtime(cfg: DeviceCfg, model: Model, bus: BusCfg) -> DeviceRuntime:
    limit = min(bus.max_registers, model.max_registers_per_read)
    key = (id(model), limit, bus.gap)
    hit = _PLANS.get(key)
    if hit is None or hit[0] is not model:
        hit = _PLANS[key] = (model, tuple(plan(model.fields, max_count=limit, gap=bus.gap)))
    return DeviceRuntime(cfg=cfg, model=model, reads=list(hit[1]))


@dataclass
class BusStats:
    requests: int = 0
    ok: int = 0
    timeouts: int = 0
    crc: int = 0
    mismatch: int = 0
    exceptions: int = 0
    disconnects: int = 0
    connected: bool = False
    last_connect_error: str | None = None
    response_s: deque = field(default_factory=lambda: deque(maxlen=RESPONSE_SAMPLES))

    def summary(self) -> dict:
        samples = sorted(self.response_s)
        mean = sum(samples) / len(samples) if samples else None
        p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))] if samples else None
        return {
            "connected": self.connected, "requests": self.requests, "ok": self.ok,
            "timeouts": self.timeouts, "crc_errors": self.crc, "mismatch": self.mismatch,
            "exceptions": self.exceptions,
            "disconnects": self.disconnects, "last_connect_error": self.last_connect_error,
            "response_ms_mean": round(mean * 1000, 2) if mean is not None else None,
            "response_ms_p95": round(p95 * 1000, 2) if p95 is not None else None,
        }
