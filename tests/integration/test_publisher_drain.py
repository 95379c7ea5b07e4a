"""At shutdown the publisher sends what is stored, not only what is in
flight. Regression: with a one-message in-flight window (tests/edges/
test_clock_jumps.py) and a 200 ms group-commit window, the readings of the
last window were stored by the shutdown's flush, the first went out, and
the drain stopped at its PUBACK with the rest still stored (CI, 1 in 4
runs). Real Mosquitto on loopback, the real store and publisher."""
from __future__ import annotations

import asyncio

import pytest

from gateway.deliver.outbox import Message, Outbox, Priority
from gateway.deliver.publisher import Publisher
from gateway.deliver.writer import StoreWriter
from tests.support import Broker, connected, mqtt_link

pytestmark = pytest.mark.integration


def test_the_shutdown_drain_sends_everything_stored(tmp_path):
    broker = Broker(tmp_path).start()

    async def main():
        ob = StoreWriter(lambda: Outbox.open(str(tmp_path / "o.db"), inflight=1), asyncio.get_running_loop())
        pub = Publisher(ob, 1)
        link = mqtt_link(broker, "edgegw-drain-test", on_ack=pub.acked, on_up=pub.up, on_down=pub.down)
        pub.link = link
        task = await connected(link)
        ob.put([Message(f"t/m/{i}/telemetry", {"i": i}, Priority.TELEMETRY) for i in range(5)])
        ob.commit_soon()          # as the daemon's shutdown does
        await pub.pump()
        await pub.drain(10.0)
        left = (await ob.aclose())["backlog_msgs"]
        sent = pub.acked_count
        await link.stop()
        task.cancel()
        return left, sent
    try:
        left, sent = asyncio.run(main())
    finally:
        broker.stop()
    assert (left, sent) == (0, 5)
