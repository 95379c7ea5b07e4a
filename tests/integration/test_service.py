"""The daemon under systemd's notification protocol (a test NOTIFY_SOCKET):
READY once it runs, WATCHDOG pings at half of WatchdogSec while every bus
task and the publisher make progress, none once a bus task hangs, STOPPING."""
from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from gateway.daemon import Daemon
from gateway.site.config import load_config
from protocols.models import load_models
from tests.integration.test_end_to_end import DEVICES, SCENARIO
from tests.support import Broker, gateway_config, start_gateway, start_sim, stop_proc, wait_until

pytestmark = pytest.mark.integration


class NotifySocket:
    """What systemd would receive: (monotonic time, assignments) per datagram."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.got: list[tuple[float, dict]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, OSError):
                continue
            kv = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            self.got.append((time.monotonic(), kv))

    def times(self, key: str) -> list[float]:
        return [t for t, kv in list(self.got) if key in kv]

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


def test_ready_pings_and_stopping(tmp_path):
    broker = Broker(tmp_path).start()
    ns = NotifySocket(tmp_path / "notify.sock")
    sim = gw = None
    try:
        sim, where = start_sim(tmp_path, SCENARIO)
        cfg = gateway_config(tmp_path, broker.port, where["buses"], DEVICES)
        gw = start_gateway(cfg, env={"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "1000000"})
        wait_until(lambda: ns.times("READY"), 20, "READY=1")
        ready = [kv for _t, kv in ns.got if "READY" in kv][0]
        assert "devices online" in ready["STATUS"]
        assert (tmp_path / "state" / "outbox.db").exists()     # the stores were open
        # Past every participant's first deadline (a bus: timeout + 5 s), the
        # pings go on at half of WatchdogSec because they all keep beating.
        t0 = ns.times("READY")[0] + 4.0
        time.sleep(max(0.0, t0 + 4.0 - time.monotonic()))
        pings = [t for t in ns.times("WATCHDOG") if t0 <= t <= t0 + 4.0]
        assert 5 <= len(pings) <= 10, pings                    # every 0.5 s
        gw.send_signal(signal.SIGTERM)
        assert gw.wait(15) == 0
        assert ns.times("STOPPING")
    finally:
        stop_proc(gw)
        stop_proc(sim)
        ns.close()
        broker.stop()


def test_a_hung_bus_task_stops_the_pings(tmp_path, monkeypatch, caplog):
    broker = Broker(tmp_path).start()
    ns = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", ns.path)
    monkeypatch.setenv("WATCHDOG_USEC", "600000")      # a ping every 0.3 s
    sim = None
    try:
        sim, where = start_sim(tmp_path, SCENARIO)
        models = load_models()
        cfg = load_config(gateway_config(tmp_path, broker.port, where["buses"], DEVICES), known_models=models)
        daemon = Daemon(cfg, models)
        hung: list[float] = []

        async def hang(*_a, **_k):
            hung.append(time.monotonic())
            await asyncio.Event().wait()          # a read that never returns

        async def scenario():
            run = asyncio.create_task(daemon.run())
            while not ns.times("WATCHDOG"):
                await asyncio.sleep(0.1)
            monkeypatch.setattr(daemon.buses[0], "_request", hang)
            while not hung:
                await asyncio.sleep(0.05)
            await asyncio.sleep(8.0)               # beyond the bus's deadline (timeout + 5 s margin)
            daemon.stop_event.set()
            await asyncio.wait_for(run, 30)

        with caplog.at_level(logging.ERROR, "gateway.site.sdnotify"):
            asyncio.run(scenario())
        pings = ns.times("WATCHDOG")
        assert any(t < hung[0] for t in pings)                    # it pinged while healthy
        assert not [t for t in pings if t > hung[0] + 6.0]        # and stopped once the bus hung
        assert "no progress from bus:rs485-1" in caplog.text
    finally:
        stop_proc(sim)
        ns.close()
        broker.stop()
