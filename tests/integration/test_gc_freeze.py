"""Once started, the daemon's start-up objects (models, devices, read
plans, the interpreters' catalogues) are out of the collector's reach.

A full collection walks every tracked object: at 1,000 devices that took
20-28 ms every 14 s on the development machine, all of it holding the
event loop (docs/performance.md, loop lag). What start-up builds lives as
long as the process, so the daemon moves it to the permanent generation
(gc.freeze) once every task has started: a full collection then walks only
what came after, and what is freed by reference counting still is.

Real parts: the daemon in this process, a real Mosquitto and a simulated
meter on a pty pair, as in test_service.py.
"""
from __future__ import annotations

import asyncio
import gc

import pytest

from gateway.daemon import Daemon
from gateway.site.config import load_config
from protocols.models import load_models
from tests.integration.test_end_to_end import DEVICES, SCENARIO
from tests.support import Broker, gateway_config, start_sim, stop_proc

pytestmark = pytest.mark.integration


def tracked(obj) -> bool:
    """Whether a collection walks obj (get_objects leaves out the permanent generation)."""
    return any(o is obj for o in gc.get_objects())


def test_start_up_objects_are_not_walked_by_a_full_collection(tmp_path):
    broker = Broker(tmp_path).start()
    sim = None
    seen: dict = {}
    try:
        sim, where = start_sim(tmp_path, SCENARIO)
        models = load_models()
        cfg = load_config(gateway_config(tmp_path, broker.port, where["buses"], DEVICES), known_models=models)
        daemon = Daemon(cfg, models)

        async def scenario():
            run = asyncio.create_task(daemon.run())
            for _ in range(200):
                await asyncio.sleep(0.05)
                if daemon.buses and daemon.buses[0].stats.ok:
                    break
            rt = next(iter(daemon.runtimes.values()))
            seen["runtime"] = tracked(rt)
            seen["plan"] = tracked(rt.reads)
            seen["bus"] = tracked(daemon.buses[0])
            seen["polled"] = daemon.buses[0].stats.ok
            daemon.stop_event.set()
            await asyncio.wait_for(run, 30)

        asyncio.run(scenario())
    finally:
        gc.unfreeze()   # give this test process its collector back
        stop_proc(sim)
        broker.stop()
    assert seen["polled"] > 0
    assert seen == {"runtime": False, "plan": False, "bus": False, "polled": seen["polled"]}
