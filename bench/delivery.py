"""Delivery benchmark (a script, not a test): python bench/delivery.py [--rates 11,500] [--seconds 15]

CPU per message of the gateway's delivery path alone, with no bus: a put
through the group commit -> the store's thread (SQLite, synchronous=full)
-> the publisher -> paho -> a Mosquitto started here on 127.0.0.1 ->
PUBACK -> ack -> the delete. A producer puts one telemetry message at a
time at a fixed rate (11 a second is a 9600-baud bus of turbine meters, 500
the 500-device TCP row of bench/run). The same producer runs once more with
the puts left out; the difference is the delivery's own cost. Prints one
line per rate, split into the loop thread and the store's thread.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # this checkout's gateway, not an installed one

from gateway.deliver.commit import GroupCommit  # noqa: E402
from gateway.deliver.mqtt import MqttLink  # noqa: E402
from gateway.deliver.outbox import Message, Outbox, Priority  # noqa: E402
from gateway.deliver.publisher import Publisher  # noqa: E402
from gateway.deliver.writer import StoreWriter  # noqa: E402
from gateway.site.config.types import MqttCfg  # noqa: E402
from tests.support import Broker  # noqa: E402

BODY = {"v": 1, "ts": "2026-12-01T10:00:00.000Z", "ts_synced": True, "device": "fm-123",
        "model": "turbine-evc", "quality": "good",
        "values": {"flow": 12.5, "volume": 123456.789, "pressure": 101.3, "temp": 21.5, "status": 0,
                   "battery": 87, "alarm": False, "total": 99999, "vm": 1234.5, "vb": 2345.6}}


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def one(rate: float, seconds: float, port: int, work: Path, deliver: bool) -> tuple[int, float, float, int]:
    loop = asyncio.get_running_loop()
    ob = StoreWriter(lambda: Outbox.open(work / f"o-{rate}-{deliver}.db"), loop)
    pub = Publisher(ob, 100)
    commit = GroupCommit(ob, pub.wake)
    link = MqttLink(MqttCfg("127.0.0.1", port, f"bench-{rate}-{deliver}", "edgegw", 30, None, None, None, 1),
                    will=lambda: ("edgegw/bench/status", b"{}"), on_up=pub.up, on_down=pub.down,
                    on_ack=pub.acked)
    pub.link = link
    tasks = [asyncio.create_task(link.run()), asyncio.create_task(pub.run())]
    while not link.connected:
        await asyncio.sleep(0.05)

    async def produce(secs: float) -> int:
        n, t0 = 0, time.monotonic()
        while (el := time.monotonic() - t0) < secs:
            while n < int(el * rate):
                if deliver:
                    commit.add([Message(f"edgegw/bench/fm-{n % 500}/telemetry", BODY, Priority.TELEMETRY)], None)
                n += 1
            await asyncio.sleep(max(0.002, 0.999 / rate))
        return n

    await produce(2)
    await asyncio.sleep(0.5)
    c0, m0, a0 = cpu(), time.thread_time(), pub.acked_count
    n = await produce(seconds)
    await asyncio.sleep(0.5)
    total, main = cpu() - c0, time.thread_time() - m0
    acked = pub.acked_count - a0
    for t in tasks:
        t.cancel()
    await link.stop()
    await ob.aclose()
    return n, total, main, acked


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="11,500", help="messages per second, comma-separated")
    ap.add_argument("--seconds", type=float, default=15.0)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgegw-delivery-"))
    broker = Broker(work).start()
    try:
        for rate in (float(r) for r in a.rates.split(",")):
            n, base, base_main, _ = asyncio.run(one(rate, a.seconds, broker.port, work, deliver=False))
            n, total, main, acked = asyncio.run(one(rate, a.seconds, broker.port, work, deliver=True))
            own, own_main = (total - base) / n, (main - base_main) / n
            print(f"{rate:g} msgs/s: {n} put, {acked} acked; delivery CPU per message {1e6 * own:.0f} us "
                  f"(loop thread {1e6 * own_main:.0f} us, store's thread {1e6 * (own - own_main):.0f} us); "
                  f"producer alone {1e6 * base / n:.0f} us", flush=True)
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
