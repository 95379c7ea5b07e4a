"""Scenario files: which simulated devices exist, where they listen, and what
happens to them over time. Format: docs/simulators.md.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from protocols.models import load_models

from . import noise
from .device import SimulatedDevice
from .families import make_device
from .relay import Relay
from .server import BusServer

log = logging.getLogger(__name__)

BUS_KINDS = ("pty", "serial", "tcp")


class ScenarioError(ValueError):
    pass


@dataclass
class SimBus:
    name: str
    kind: str
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    link: str | None = None        # pty: gateway-side path
    port: str | None = None        # serial: path the simulator serves on
    listen: tuple[str, int] | None = None
    devices: list[SimulatedDevice] = field(default_factory=list)
    server: BusServer | None = None
    socat: subprocess.Popen | None = None
    noisy: bool = False            # a noisy line (relay.py) between the gateway and the server
    relay: Relay | None = None

    def where(self) -> str:
        if self.kind == "tcp":
            return f"tcp://{self.listen[0]}:{self.listen[1]}"
        return self.link if self.kind == "pty" else self.port


@dataclass
class Event:
    t: float
    device: str | None = None
    bus: str | None = None
    set: dict = field(default_factory=dict)
    unpin: list = field(default_factory=list)
    bits: dict | None = None
    silent: bool | None = None
    garble_rate: float | None = None
    strict_holes: bool | None = None
    exception: int | None = None
    unplug_s: float | None = None
    params: dict = field(default_factory=dict)
    door: dict | None = None       # door controllers: add/burst/clear/replace/clock_offset_s
    noise: dict | None = None      # noisy line (noise.py): fault probabilities
    noise_script: list | None = None
    malicious: object = None       # true, false, or hostile faults
    done: bool = False


@dataclass
class Scenario:
    tick_s: float
    duration_s: float
    buses: list[SimBus]
    events: list[Event]
    devices: dict[str, SimulatedDevice]


def load(path: str | Path, workdir: str | Path) -> Scenario:
    path = Path(path)
    with open(path, "rb") as fh:
        doc = tomllib.load(fh)
    workdir = Path(workdir)
    models = load_models()
    sim = doc.get("simulator", {})
    rng = random.Random(sim.get("seed", 1))
    problems: list[str] = []
    buses: dict[str, SimBus] = {}
    for i, b in enumerate(doc.get("bus", [])):
        kind = b.get("kind", "pty")
        if kind not in BUS_KINDS:
            problems.append(f"bus[{i}].kind: {kind!r} must be one of {', '.join(BUS_KINDS)}")
            continue
        sb = SimBus(name=b["name"], kind=kind, baudrate=b.get("baudrate", 9600),
                    parity=b.get("parity", "N"), stopbits=b.get("stopbits", 1))
        if kind == "pty":
            sb.link = str(workdir / b.get("link", f"tty-{sb.name}"))
        elif kind == "serial":
            sb.port = b["port"]
        else:
            host, _, port = b.get("listen", "127.0.0.1:5020").rpartition(":")
            sb.listen = (host.strip("[]"), int(port))
        buses[sb.name] = sb
    devices: dict[str, SimulatedDevice] = {}
    for i, d in enumerate(doc.get("device", [])):
        model = models.get(d.get("model", ""))
        bus = buses.get(d.get("bus", ""))
        if model is None:
            problems.append(f"device[{i}].model: {d.get('model')!r} is not a known model")
            continue
        if bus is None:
            problems.append(f"device[{i}].bus: {d.get('bus')!r} is not a bus of this scenario")
            continue
        dev = make_device(model, d, random.Random(rng.random()))
        devices[dev.name] = dev
        bus.devices.append(dev)
        for key in noise.KEYS:
            if key in d:
                wrong = noise.problems(key, d[key], f"device[{i}]")
                problems += wrong
                bus.noisy = True
                if not wrong:
                    dev.line.noise = noise.update(dev.line.noise, key, d[key])
    events = []
    for i, e in enumerate(doc.get("event", [])):
        known = set(Event.__dataclass_fields__) - {"done"}
        extra = set(e) - known
        if extra:
            problems.append(f"event[{i}]: unknown keys {sorted(extra)}")
            continue
        ev = Event(**e)
        if ev.device and ev.device not in devices:
            problems.append(f"event[{i}].device: {ev.device!r} is not a device of this scenario")
        if ev.bus and ev.bus not in buses:
            problems.append(f"event[{i}].bus: {ev.bus!r} is not a bus of this scenario")
        for key in noise.KEYS:
            if key in e:
                problems += noise.problems(key, e[key], f"event[{i}]")
                if ev.device in devices:
                    owner = next(b for b in buses.values() if devices[ev.device] in b.devices)
                    owner.noisy = True
                elif not ev.device:
                    problems.append(f"event[{i}].{key}: needs a device")
        events.append(ev)
    for b in buses.values():
        if b.noisy and b.kind != "pty":
            problems.append(f"bus {b.name!r}: a noisy line (noise, noise_script, malicious) "
                            f"needs kind = \"pty\", not {b.kind!r}")
    if problems:
        raise ScenarioError("\n".join(problems))
    events.sort(key=lambda e: e.t)
    return Scenario(tick_s=float(sim.get("tick_s", 0.2)), duration_s=float(sim.get("duration_s", 0)),
                    buses=list(buses.values()), events=events, devices=devices)


def apply(ev: Event, sc: Scenario) -> None:
    dev = sc.devices.get(ev.device) if ev.device else None
    if dev is not None:
        beh = dev.behaviour
        for k, v in ev.set.items():
            dev.values[k] = v
            if beh is not None:
                beh.pinned.add(k)
        for k in ev.unpin:
            if beh is not None:
                beh.pinned.discard(k)
        if ev.bits:
            fld = ev.bits["field"]
            for b in ev.bits.get("on", []):
                dev.set_bit(fld, b, True)
            for b in ev.bits.get("off", []):
                dev.set_bit(fld, b, False)
            if beh is not None:
                beh.pinned.add(fld)
        if ev.params and beh is not None:
            beh.params.update(ev.params)
        if ev.door and hasattr(dev, "door_action"):
            dev.door_action(ev.door)
        for attr in ("silent", "garble_rate", "strict_holes", "exception"):
            val = getattr(ev, attr)
            if val is not None:
                setattr(dev.line, attr, val if attr != "exception" else (val or None))
        for key in noise.KEYS:
            val = getattr(ev, key)
            if val is not None:
                dev.line.noise = noise.update(dev.line.noise, key, val)
    log.info("scenario t=%.1f: %s", ev.t, {k: v for k, v in ev.__dict__.items() if v not in (None, {}, [], False)})


# -- running ----------------------------------------------------------------

def _socat_pair(sim_end: str, gw_end: str) -> subprocess.Popen:
    if shutil.which("socat") is None:
        raise ScenarioError("socat is not installed: it provides the pseudo-terminal pairs "
                            "(apt-get install socat)")
    for p in (sim_end, gw_end):
        if os.path.islink(p):
            os.unlink(p)
    proc = subprocess.Popen(
        ["socat", "-d", "-d", f"pty,raw,echo=0,link={sim_end}", f"pty,raw,echo=0,link={gw_end}"],
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen = 0
    while seen < 2:
        line = proc.stderr.readline()
        if not line:
            raise ScenarioError(f"socat exited: {proc.poll()}")
        if re.search(r"PTY is", line):
            seen += 1
    # Keep reading socat's chatter so its pipe never fills.
    asyncio.get_event_loop().run_in_executor(None, _drain_pipe, proc.stderr)
    return proc


async def _start_bus(b: SimBus) -> None:
    if b.kind == "pty":
        sim_end = b.link + ".sim"
        b.socat = _socat_pair(sim_end, b.link)
        if b.noisy:
            b.relay = Relay(sim_end, b.devices)
            sim_end = b.relay.start()
        b.server = BusServer(b.devices, port=sim_end, baudrate=b.baudrate, parity=b.parity,
                             stopbits=b.stopbits)
    elif b.kind == "serial":
        b.server = BusServer(b.devices, port=b.port, baudrate=b.baudrate, parity=b.parity,
                             stopbits=b.stopbits)
    else:
        b.server = BusServer(b.devices, tcp=b.listen)
    await b.server.start()


async def _unplug(b: SimBus, seconds: float) -> None:
    """Simulate a USB adapter pulled out: both pty ends vanish, then return."""
    if b.kind != "pty":
        log.warning("unplug only applies to pty buses")
        return
    await b.server.stop()
    _stop_relay(b)
    _kill(b.socat)
    await asyncio.sleep(seconds)
    await _start_bus(b)
    log.info("bus %s plugged back in at %s", b.name, b.link)


def _stop_relay(b: SimBus) -> None:
    if b.relay is not None:
        b.relay.stop()
        b.relay = None


def _kill(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


async def run(sc: Scenario, ready=None) -> None:
    for b in sc.buses:
        await _start_bus(b)
    if ready:
        ready(sc)
    loop = asyncio.get_running_loop()
    start = last = loop.time()
    pending = list(sc.events)
    try:
        while True:
            await asyncio.sleep(sc.tick_s)
            now = loop.time()
            dt, last = now - last, now
            elapsed = now - start
            for d in sc.devices.values():
                d.tick(dt)
            while pending and pending[0].t <= elapsed:
                ev = pending.pop(0)
                if ev.unplug_s and ev.bus:
                    bus = next(b for b in sc.buses if b.name == ev.bus)
                    asyncio.create_task(_unplug(bus, ev.unplug_s))
                apply(ev, sc)
            if sc.duration_s and elapsed >= sc.duration_s:
                return
    finally:
        for b in sc.buses:
            try:
                await b.server.stop()
            except Exception:  # noqa: BLE001
                pass
            _stop_relay(b)
            _kill(b.socat)


def _drain_pipe(pipe) -> None:
    try:
        for _ in iter(lambda: pipe.read(4096), ""):
            pass
    except (OSError, ValueError):
        pass
