"""Gateway killed between reading and publishing: no duplicate, no loss.

The controller is the simulator behind the real pymodbus server on a socat
pseudo-terminal pair; the reader is the real Bus + DoorPoller + Outbox in a
child process that "publishes" by draining its outbox (printing seq and id
of every access event, then acknowledging). Children are SIGKILLed at random
moments, and some kill themselves just before or just after an outbox
commit. At the end one child runs until it has caught up, and every record
the controller numbered up to the final cursor must have been enqueued
exactly once: one id, one seq (a message resent with its seq after a kill is
transport-level, consumers drop it by seq; the same id under two seqs would
be a duplicate event)."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from tests.support import ROOT, start_sim, stop_proc

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCENARIO = """
[simulator]
seed = 5
tick_s = 0.05

[[bus]]
name = "doors"
kind = "pty"
link = "ttyCRASH"
baudrate = 9600
parity = "N"

[[device]]
bus = "doors"
unit = 9
model = "door-controller"
name = "door-c"
[device.params]
serial = "DCCRASH1"
capacity = 5000
rate_per_min = 900
prefill = 700
"""

CHILD = r"""
import asyncio, json, os, random, signal, sys
from types import SimpleNamespace
from gateway.deliver import payloads
from gateway.poll.bus import Bus
from gateway.poll.runtime import make_runtime
from gateway.site.config import BusCfg, DeviceCfg
from gateway.doors.site import DoorSite
from gateway.deliver.outbox import Outbox
from protocols.models import load_models

state, port, seed, final = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "final"
rng = random.Random(seed)
model = load_models()["door-controller"]
ob = Outbox.open(os.path.join(state, "outbox.db"), max_age_s=None, inflight=50)
if not final:
    real_put = ob.put
    def put(msgs, kv=None):
        # die on purpose right before or right after a commit, now and then
        if kv and rng.random() < 0.04:
            os.kill(os.getpid(), signal.SIGKILL)
        real_put(msgs, kv)
        if kv and rng.random() < 0.04:
            os.kill(os.getpid(), signal.SIGKILL)
    ob.put = put
site = DoorSite(SimpleNamespace(doors={}, gateway=SimpleNamespace(state_dir=state)), ob,
                payloads.Topics("edgegw", "crash"))
bc = BusCfg(name="doors", kind="serial", port=port, tcp_port=None, baudrate=9600, parity="N",
            stopbits=1, bytesize=8, timeout_s=0.3, retries=2, gap=8, max_registers=125,
            backoff_max_s=1.0)
rt = make_runtime(DeviceCfg(name="door-c", bus="doors", unit=9, model=model.id,
                            poll_interval_s=0.05, enabled=True, params={}), model, bc)
poller = rt.custom = site.poller(rt)
caught = 0

def sink(d, reading):
    global caught
    while True:
        batch = ob.next_batch(50)
        if not batch:
            break
        for p in batch:
            body = json.loads(p.payload)
            if body.get("type") == "access":
                print("PUB", p.seq, body["id"], flush=True)
            ob.ack(p.id)
    if final and poller.caught_up:
        caught += 1
        if caught >= 2:
            c = poller.cursor
            print("DONE", c.serial, c.epoch, c.last_index, flush=True)
            bus.stop()

bus = Bus(bc, [rt], sink)
print("UP", flush=True)
asyncio.run(bus.run())
ob.close()
"""


def run_child(state, port, seed, final=False):
    return subprocess.Popen([sys.executable, "-c", CHILD, str(state), port, str(seed),
                             "final" if final else "kill"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def parse(out: bytes, seen: dict[str, set[int]]) -> None:
    for line in out.split(b"\n")[:-1]:          # a torn last line was never printed whole
        parts = line.split()
        if parts and parts[0] == b"PUB":
            seen.setdefault(parts[2].decode(), set()).add(int(parts[1]))


def test_sigkill_between_reading_and_publishing(tmp_path):
    sim, where = start_sim(tmp_path, SCENARIO)
    port = where["buses"]["doors"]
    state = tmp_path / "state"
    state.mkdir()
    rng = random.Random(20260528)
    seen: dict[str, set[int]] = {}
    kills = 0
    t0 = time.monotonic()
    try:
        for it in range(14):
            child = run_child(state, port, it)
            assert child.stdout.readline() == b"UP\n", child.stderr.read().decode()[-3000:]
            time.sleep(rng.uniform(0.05, 1.2))
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
            out, err = child.communicate(timeout=20)
            assert child.returncode == -signal.SIGKILL, err.decode()[-3000:]
            kills += 1
            parse(out, seen)
        child = run_child(state, port, 999, final=True)
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err.decode()[-3000:]
        parse(out, seen)
        done = [line.split() for line in out.split(b"\n") if line.startswith(b"DONE")]
        assert done, err.decode()[-3000:]
        serial, epoch, last = done[0][1].decode(), int(done[0][2]), int(done[0][3])
    finally:
        stop_proc(sim)
    # whatever the broker never acknowledged is still in the outbox, with its seq
    import sqlite3
    db = sqlite3.connect(state / "outbox.db")
    for payload, seq in db.execute("SELECT payload, seq FROM msg"):
        body = json.loads(payload)
        if body.get("type") == "access":
            seen.setdefault(body["id"], set()).add(seq if seq is not None else -1)
    db.close()
    assert (serial, epoch) == ("DCCRASH1", 1)
    assert last > 700                                   # the controller kept writing meanwhile
    expected = {f"{serial}/1/{i}" for i in range(1, last + 1)}
    assert set(seen) == expected, (sorted(expected - set(seen))[:10], sorted(set(seen) - expected)[:10])
    twice = {i: s for i, s in seen.items() if len(s) > 1}
    assert not twice, f"enqueued more than once: {list(twice.items())[:5]}"
    assert kills == 14
    assert time.monotonic() - t0 < 60
