"""A door controller and its reader wired together without a serial line:
the simulator's DoorDevice answers the reader's bus calls directly, so the
cursor rules run fast and deterministically. The real line is exercised in
test_line.py and test_e2e.py."""
from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

from gateway.doors.site import DoorSite
from protocols.models import load_models
from simulators.door import make_door_device

from gateway.deliver import payloads
from gateway.deliver.outbox import Outbox
from gateway.poll.runtime import make_runtime
from gateway.site.config import BusCfg, DeviceCfg

MODEL = load_models()["door-controller"]
T0 = 1_780_000_000.0  # 2026-05-28


def bus_cfg() -> BusCfg:
    return BusCfg(name="b", kind="serial", port="/dev/null", tcp_port=None, baudrate=9600, parity="N",
                  stopbits=1, bytesize=8, timeout_s=0.2, retries=0, gap=8, max_registers=125,
                  backoff_max_s=2.0)


class FakeBus:
    """Bus.read/write/finish answered by a simulated device."""

    def __init__(self, dev) -> None:
        self.dev = dev
        self.finished: list[tuple[list, str | None]] = []
        self.before_window = None   # hook(dev) run before each window read
        self.fail_next: str | None = None
        self.windows = 0

    async def read(self, unit, function, address, count):
        if self.fail_next:
            why, self.fail_next = self.fail_next, None
            return why
        if address >= self.dev.layout.slot_address and self.before_window:
            self.before_window(self.dev)
        if address >= self.dev.layout.slot_address:
            self.windows += 1
        r = self.dev.read(function, address, count)
        return f"exception_{r}" if isinstance(r, int) else r

    async def write(self, unit, address, values):
        r = self.dev.write(address, list(values))
        return None if r is None else f"exception_{r}"

    async def finish(self, d, results, reason):
        self.finished.append((results, reason))

    def reschedule(self, d, due):
        d.next_due = due


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Rig:
    def __init__(self, tmp: Path, *, capacity=100, serial="DC000001", doors: dict | None = None,
                 name="door-1", seed=1, prefill=0) -> None:
        self.tmp = Path(tmp)
        self.name = name
        self.clock = Clock()
        self.doors_cfg = dict(doors or {})
        self.dev = make_door_device(MODEL, {"unit": 5, "params": {"capacity": capacity, "serial": serial}},
                                    random.Random(seed))
        self.dev.clock = self.clock
        for _ in range(prefill):
            self.dev.random_event()
        self.bus = FakeBus(self.dev)
        self.published: list[dict] = []
        self.start()

    # -- the gateway side, restartable

    def start(self) -> None:
        self.outbox = Outbox.open(self.tmp / "outbox.db", max_age_s=None)
        cfg = SimpleNamespace(doors=self.doors_cfg, gateway=SimpleNamespace(state_dir=self.tmp))
        self.topics = payloads.Topics("edgegw", "gw1")
        self.site = DoorSite(cfg, self.outbox, self.topics, now=self.clock)
        dc = DeviceCfg(name=self.name, bus="b", unit=5, model=MODEL.id, poll_interval_s=1.0,
                       enabled=True, params={})
        self.rt = make_runtime(dc, MODEL, bus_cfg())
        self.rt.counters = Counter()
        self.poller = self.site.poller(self.rt)
        self.rt.custom = self.poller

    def restart(self) -> None:
        self.site.history.close()
        self.site.close()
        self.outbox.close()
        self.start()

    def poll(self, n: int = 1) -> None:
        for _ in range(n):
            asyncio.run(self.poller.poll(self.bus, self.rt))

    def poll_until_caught_up(self, limit: int = 100) -> None:
        for _ in range(limit):
            self.poll()
            if self.poller.caught_up:
                return
        raise AssertionError("never caught up")

    def drain(self) -> list[dict]:
        """Hand everything queued to a pretend broker; returns new event bodies."""
        new = []
        while True:
            batch = self.outbox.next_batch(100)
            if not batch:
                break
            for p in batch:
                body = json.loads(p.payload)
                body["_topic"] = p.topic
                new.append(body)
                self.outbox.ack(p.id)
        self.outbox.flush()
        self.published += new
        return new

    def events(self, kind: str | None = None) -> list[dict]:
        self.drain()
        return [b for b in self.published if kind is None or b.get("type") == kind]

    def access_ids(self) -> list[str]:
        return [b["id"] for b in self.events("access")]

    def cursor(self) -> dict:
        return self.outbox.kv_get(f"door/{self.name}")
