"""A noisy RS-485 line and a malicious slave, polled for real, with the
promise counted (promise.py).

Four turbine meters sit behind the simulator's noisy line (simulators/noise.py,
relay.py: a socat pty pair, the real pymodbus server behind it), each
answer getting one of all ten faults by chance: bit flips, dropped bytes,
garbage, truncated frames, late answers, silence, and the hostile frames
with a valid CRC (wrong function, wrong unit id, lying byte count, double
answers). A fifth meter is a malicious slave: every answer hostile.
`python -m gateway run` polls them every 0.3 s and publishes to Mosquitto.

The meters' values are pinned, so a published value is either what the
meter served or a wrong one (the check of tests/integration/test_lying_slave.py).
"""
from __future__ import annotations

import time

import pytest

from tests.edges.promise import Figures, Watch, account, duration, tear_down, tracebacks
from tests.integration.test_lying_slave import PINNED, injected, wrong_values
from tests.support import Broker, Subscriber, gateway_config, start_gateway, start_sim, stop_proc

pytestmark = [pytest.mark.integration, pytest.mark.edges]

NOISY = ("fm-01", "fm-02", "fm-03", "fm-04")
EVIL = "fm-05"
NOISE = ("noise = { bit_flip = 0.04, drop_byte = 0.04, garbage = 0.04, truncate = 0.04, late = 0.03, "
         "silence = 0.03, wrong_function = 0.04, wrong_unit = 0.04, lying_count = 0.04, double = 0.04, "
         "late_s = 0.35, double_gap_s = 0.0 }")
LINE = ("bit_flip", "drop_byte", "garbage", "truncate", "late", "silence")
HOSTILE = ("wrong_function", "wrong_unit", "lying_count", "double")


def scenario() -> str:
    pin = ", ".join(f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v!r}" for k, v in PINNED.items())
    out = '[simulator]\nseed = 33\ntick_s = 0.1\n\n[[bus]]\nname = "rs485-1"\nkind = "pty"\nlink = "ttyEDGE"\n'
    for unit, name in enumerate((*NOISY, EVIL), start=1):
        noise = "malicious = true\nnoise = { double_gap_s = 0.0 }" if name == EVIL else NOISE
        out += (f'\n[[device]]\nbus = "rs485-1"\nunit = {unit}\nmodel = "turbine-evc"\nname = "{name}"\n'
                f'values = {{ volume_std_m3 = 1000.5, volume_work_m3 = 400.25 }}\npin = {{ {pin} }}\n{noise}\n')
    return out


def test_noisy_line_and_malicious_slave_keep_the_promise(tmp_path):
    run_s = duration(25.0)
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port)
    sim, where = start_sim(tmp_path, scenario())
    devices = [{"name": n, "bus": "rs485-1", "unit": u, "model": "turbine-evc"}
               for u, n in enumerate((*NOISY, EVIL), start=1)]
    cfg = gateway_config(tmp_path, broker.port, where["buses"], devices, poll_s=0.3, timeout_s=0.2)
    fig = Figures("noisy line + malicious slave")
    gw = start_gateway(cfg)
    watch = Watch(gw)
    t0 = time.monotonic()
    try:
        sub.wait_for(lambda s: all(s.select("/telemetry", n) for n in NOISY), 30, "telemetry from the noisy four")
        time.sleep(5.0)          # warm-up: every code path has run
        watch.start()
        while time.monotonic() - t0 < run_s:
            if gw.poll() is not None:
                break
            time.sleep(0.5)
        watch.end()
        fig.crashes = 0 if gw.poll() is None else 1
        assert stop_proc(gw) == 0, "the gateway did not stop cleanly"
        stop_proc(sim)
        elapsed = time.monotonic() - t0
        watch.into(fig)
        fig.seconds = round(elapsed, 1)
        lies = injected((tmp_path / "sim.log").read_text())
        bodies = sub.select("/telemetry")
        stopped = [b for b in sub.select("/t1/status") if b.get("online") is False and b.get("seq")]
    finally:
        tear_down(gw, sim, sub, broker)

    account(fig, sub, "edgegw/t1/status", tmp_path / "state")
    fig.tracebacks = tracebacks(tmp_path / "gateway.log")
    wrong = [(b["device"], wrong_values(b, elapsed)) for b in bodies if wrong_values(b, elapsed)]
    fig.wrong = len(wrong)
    total = {k: sum(c.get(k, 0) for c in lies.values()) for k in ("ok", *LINE, *HOSTILE)}
    bus = stopped[-1]["buses"]["rs485-1"]
    fig.notes.update(telemetry=len(bodies), answers_by_fault=total,
                     bus={k: bus[k] for k in ("requests", "ok", "crc_errors", "timeouts", "mismatch")})
    fig.report()

    assert not wrong, wrong[:5]
    # every fault kind happened, so every path ran
    assert all(total[k] >= 2 for k in total), total
    assert set(lies[EVIL]) == set(HOSTILE), lies[EVIL]
    assert not any(b["device"] == EVIL for b in bodies), "the malicious slave got a reading published"
    # Every request is an answer or a counted failure; a value only from a
    # sound answer (garbage after a frame costs nothing).
    failures = bus["crc_errors"] + bus["timeouts"] + bus["mismatch"]
    assert bus["requests"] == bus["ok"] + failures + bus["exceptions"], bus
    assert bus["ok"] <= total["ok"] + total["garbage"], (bus, total)
    codes = {b["code"] for b in sub.select("/event") if b.get("type") == "fault"}
    assert codes <= {"NO-RESPONSE"}, codes
    fig.check()
