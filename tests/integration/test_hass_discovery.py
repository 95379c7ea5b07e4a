"""Home Assistant discovery from the running gateway: announced once, not on
every reconnect; a device that leaves the config is removed; switching
discovery off removes everything it announced (docs/integrations.md)."""
from __future__ import annotations

import signal
import time

import pytest

from gateway import __version__
from gateway.deliver import hass
from protocols.models import load_models
from tests.integration.test_end_to_end import DEVICES, SCENARIO
from tests.support import Broker, Subscriber, gateway_config, start_gateway, start_sim, stop_proc

pytestmark = pytest.mark.integration

HA_ON = '[homeassistant]\nenabled = true\ndiscovery_prefix = "ha"\n'
HA_OFF = '[homeassistant]\nenabled = false\n'


def _expected(devices) -> dict[str, bytes]:
    models = load_models()
    devs = [hass.Device(d["name"], models[d["model"]], d["bus"], d["unit"]) for d in devices]
    return {t: hass.encode(p) for t, p in hass.discovery("edgegw/t1", "t1", "ha", devs, sw_version=__version__)}


def _live(sub: Subscriber, since: int) -> dict[str, list[bytes]]:
    """Configs the gateway published since message `since` (live, not retained replays)."""
    out: dict[str, list[bytes]] = {}
    with sub.lock:
        for _t, topic, body, retained in sub.messages[since:]:
            if not retained:
                raw = body.get("_raw", b"") if isinstance(body, dict) and "_raw" in body else None
                out.setdefault(topic, []).append(raw if raw is not None else hass.encode(body))
    return out


def test_discovery_is_sent_once_updated_on_change_and_removed_when_off(tmp_path):
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port, "ha/#")
    sim = gw = None
    want = _expected(DEVICES)

    def run(devices, extra):
        nonlocal gw
        stop_proc(gw, signal.SIGTERM)
        cfg = gateway_config(tmp_path, broker.port, where["buses"], devices, extra=extra)
        gw = start_gateway(cfg)

    try:
        sim, where = start_sim(tmp_path, SCENARIO)
        run(DEVICES, HA_ON)
        sub.wait_for(lambda s: len(_live(s, 0)) >= len(want), 30, "every discovery config")
        first = _live(sub, 0)
        assert set(first) == set(want)
        assert all(v == [want[t]] for t, v in first.items())          # each sent once, as built

        # a restart with the same config sends nothing: the broker holds them
        mark = len(sub.messages)
        run(DEVICES, HA_ON)
        sub.wait_for(lambda s: s.select() and gw.poll() is None, 5, "gateway up")
        time.sleep(4)
        assert _live(sub, mark) == {}

        # fm-03 leaves the config: its entities are removed, the rest untouched
        mark = len(sub.messages)
        run(DEVICES[:2], HA_ON)
        gone = {t for t in want if "/fm-03__" in t}
        sub.wait_for(lambda s: set(_live(s, mark)) >= gone, 20, "fm-03 removed")
        time.sleep(1)
        assert _live(sub, mark) == {t: [b""] for t in gone}

        # discovery switched off: everything announced is removed
        mark = len(sub.messages)
        run(DEVICES[:2], HA_OFF)
        left = set(want) - gone
        sub.wait_for(lambda s: set(_live(s, mark)) >= left, 20, "all removed")
        assert _live(sub, mark) == {t: [b""] for t in left}
    finally:
        sub.close()
        stop_proc(gw)
        stop_proc(sim)
        broker.stop()
