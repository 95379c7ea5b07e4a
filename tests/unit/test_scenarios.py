"""The shipped scenarios, run in-process against the gateway's interpreter.

No ports, no broker, no sleeping: each scenario is loaded with
simulators.scenario.load(), its simulated time stepped here, every device
read through SimulatedDevice.read() for the reads the gateway would plan,
decoded with the gateway's decoder and fed to an Interpreter with the
scenario's [gateway_params.<device>]. What a gateway on the pseudo-terminal
would see, minus the bytes.

A <model>-faults.toml must raise and clear every catalogue entry of its
model, except codes it excuses in `not_exercised` (neither) or
`not_cleared` (raised, but the clear cannot happen inside a scenario); each
excuse needs its reason, and the reasons are printed with the results.
"""
from __future__ import annotations

import random
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from protocols.modbus.plan import plan
from protocols.models import load_models
from simulators import scenario as scen

from gateway.faults.interpret import Interpreter
from gateway.poll.decode import decode_reads

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "simulators" / "scenarios"
SCENARIOS = sorted(SCENARIO_DIR.glob("*.toml"))
FAULT_SCENARIOS = [p for p in SCENARIOS if p.stem.endswith("-faults")]
PACKAGED_MODELS = ("gas-alarm-controller", "gas-alarm", "meihua-ic", "mhcg", "qianfeng-ic", "turbine-evc")
BASE_TS = datetime(2026, 1, 1, tzinfo=timezone.utc)
# A scenario without duration_s (the demo runs until stopped) is followed
# this long after its last event, long enough for the slowest clear.
TAIL_S = 20.0


@dataclass
class Run:
    doc: dict
    sc: scen.Scenario
    events: list[tuple[float, str, str, str]] = field(default_factory=list)  # t, device, code, state
    standing: dict[str, dict] = field(default_factory=dict)  # device -> Interpreter.active() at the end

    def codes(self, state: str) -> set[str]:
        return {code for _, _, code, st in self.events if st == state}


def _doc(path: Path) -> dict:
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def run_scenario(path: Path, workdir: Path, poll_s: float = 0.5) -> Run:
    doc = _doc(path)
    sc = scen.load(path, workdir)
    gateway_params = doc.get("gateway_params", {})
    # Only devices with a fault catalogue are polled: nothing to interpret
    # on the others (a door controller's log is read another way).
    polled = {name: d for name, d in sc.devices.items() if d.model.faults}
    interps = {name: Interpreter(d.model, name, {**gateway_params.get(name, {}), "poll_interval_s": poll_s})
               for name, d in polled.items()}
    reads = {name: plan(d.model.fields, max_count=d.model.max_registers_per_read)
             for name, d in polled.items()}
    bus_of = {d.name: b.name for b in sc.buses for d in b.devices}
    garble = random.Random(0)
    end = sc.duration_s or (max((e.t for e in sc.events), default=0.0) + TAIL_S)
    pending = list(sc.events)
    down_until: dict[str, float] = {}
    out = Run(doc=doc, sc=sc)
    steps = int(round(end / poll_s))
    for k in range(steps + 1):
        now = k * poll_s
        while pending and pending[0].t <= now:
            ev = pending.pop(0)
            if ev.unplug_s and ev.bus:
                down_until[ev.bus] = now + ev.unplug_s
            scen.apply(ev, sc)
        if k:
            for d in sc.devices.values():
                d.tick(poll_s)
        ts = (BASE_TS + timedelta(seconds=now)).isoformat().replace("+00:00", "Z")
        for name, dev in polled.items():
            results: list = []
            for r in reads[name]:
                if down_until.get(bus_of[name], -1.0) > now:
                    results.append((r, "bus_down"))
                elif dev.line.silent:
                    results.append((r, "timeout"))
                elif dev.line.garble_rate and garble.random() < dev.line.garble_rate:
                    results.append((r, "crc"))
                else:
                    regs = dev.read(r.function, r.address, r.count)
                    results.append((r, f"exception_{regs}" if isinstance(regs, int) else regs))
            reading = decode_reads(name, results, mono=now, ts=ts)
            for e in interps[name].step(reading):
                out.events.append((now, name, e.code, e.state))
    out.standing = {name: it.active() for name, it in interps.items()}
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Runs are deterministic (seeded): each (scenario, pace) is run once per module."""
    cache: dict[tuple[Path, float], Run] = {}

    def get(path: Path, poll_s: float = 0.5) -> Run:
        if (path, poll_s) not in cache:
            cache[path, poll_s] = run_scenario(path, tmp_path_factory.mktemp(path.stem), poll_s)
        return cache[path, poll_s]
    return get


def _model_of(path: Path) -> str:
    return path.stem.removesuffix("-faults")


# -- every scenario ------------------------------------------------------------

def test_a_faults_scenario_per_packaged_model():
    shipped = {_model_of(p) for p in FAULT_SCENARIOS}
    assert set(PACKAGED_MODELS) <= shipped, sorted(set(PACKAGED_MODELS) - shipped)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_loads_and_runs(path: Path, tmp_path, runs):
    doc = _doc(path)
    sc = scen.load(path, tmp_path)
    assert sc.devices
    # Pseudo-terminals refuse parity (tcsetattr EINVAL), so a pty bus is 8N1.
    for b in sc.buses:
        if b.kind == "pty":
            assert (b.parity, b.stopbits) == ("N", 1), b.name
    for name in doc.get("gateway_params", {}):
        assert name in sc.devices, f"[gateway_params.{name}]: no such device"
    runs(path)


# -- the fault scenarios -------------------------------------------------------

@pytest.mark.parametrize("path", FAULT_SCENARIOS, ids=[p.stem for p in FAULT_SCENARIOS])
@pytest.mark.parametrize("poll_s", [0.5, 1.0])
def test_faults_scenario_raises_and_clears_the_catalogue(path: Path, poll_s: float, runs, capsys):
    """At 0.5 s, and at the 1 s poll interval the scenarios' timing promises."""
    model_id = _model_of(path)
    model = load_models()[model_id]
    run = runs(path, poll_s)
    assert {d.model.id for d in run.sc.devices.values()} == {model_id}
    assert all(b.kind == "pty" for b in run.sc.buses) and len(run.sc.buses) == 1
    codes = [f.code for f in model.faults]
    skip = run.doc.get("not_exercised", {})
    no_clear = run.doc.get("not_cleared", {})
    for table, name in ((skip, "not_exercised"), (no_clear, "not_cleared")):
        assert set(table) <= set(codes), f"{name} names codes {model_id} does not have"
        assert all(isinstance(why, str) and why.strip() for why in table.values()), \
            f"{name}: every entry needs its reason"
    assert not set(skip) & set(no_clear)
    raised, cleared = run.codes("raised"), run.codes("cleared")
    missing_raise = [c for c in codes if c not in skip and c not in raised]
    missing_clear = [c for c in codes if c not in skip and c not in no_clear and c not in cleared]
    with capsys.disabled():
        print(f"\n{path.name} @ {poll_s} s: {len(run.events)} events, "
              f"{len(raised)} codes raised, {len(cleared)} cleared")
        for code, why in skip.items():
            print(f"  not exercised {code}: {why}")
        for code, why in no_clear.items():
            print(f"  not cleared   {code}: {why}")
    assert not missing_raise, f"never raised: {missing_raise}"
    assert not missing_clear, f"never cleared: {missing_clear}"
    # An excuse that stops being true goes, so the tables stay an honest list.
    assert not set(no_clear) & cleared, f"cleared after all, drop from not_cleared: {set(no_clear) & cleared}"
    assert not set(skip) & raised, f"raised after all, move to not_cleared: {set(skip) & raised}"
    # Flap suppression would hide the edges the scenario is there to show.
    # A flapping fault holds its clear back for 15 minutes (flap_hold_s).
    flapping = [(d, c) for d, act in run.standing.items() for c, info in act.items() if info["flapping"]]
    assert not flapping, f"flapping: {flapping}"


@pytest.mark.parametrize("path", FAULT_SCENARIOS, ids=[p.stem for p in FAULT_SCENARIOS])
def test_faults_scenario_documents_its_gateway_params(path: Path):
    # The comment block at the top is what someone copies into the gateway's
    # config: it must say the same as the table the test reads.
    text = path.read_text(encoding="utf-8")
    for name, params in _doc(path).get("gateway_params", {}).items():
        for key, value in params.items():
            assert f"{key} = {value}" in text.split("[simulator]")[0], \
                f"{name}.{key} = {value} missing from the header comment"


# -- the demo ------------------------------------------------------------------

def test_demo_raises_sleep_and_temp_sensor(runs):
    run = runs(SCENARIO_DIR / "demo.toml")
    assert ("SLEEP", "raised") in {(c, s) for _, d, c, s in run.events if d == "fm-02"}
    assert ("TEMP-SENSOR", "raised") in {(c, s) for _, d, c, s in run.events if d == "fm-03"}
    assert {"SLEEP", "TEMP-SENSOR"} <= run.codes("cleared")
