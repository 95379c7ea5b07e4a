"""Publishes are written on the loop's next turn (gateway/deliver/mqtt.py,
_want_write); what the socket cannot take waits for it to be writable.
Real Mosquitto on loopback, stopped (SIGSTOP) so that it reads nothing
while megabytes are published, then let go: every message is acknowledged."""
from __future__ import annotations

import asyncio
import signal

import pytest

from tests.support import Broker, connected, mqtt_link

pytestmark = pytest.mark.integration

N = 120
PAYLOAD = b"x" * 65536          # 7.5 MB in all: far more than loopback's socket buffers


def test_a_full_socket_waits_for_the_broker_and_loses_nothing(tmp_path):
    broker = Broker(tmp_path).start()
    acked: list[int] = []
    link = mqtt_link(broker, "edgegw-write-test", on_ack=acked.append)

    async def main():
        task = await connected(link)
        broker.proc.send_signal(signal.SIGSTOP)
        try:
            mids = [link.publish(f"t/big/{i}", PAYLOAD, 1, False) for i in range(N)]
            assert None not in mids
            await asyncio.sleep(0.5)
            client = link._client
            assert client.want_write()            # the socket is full: bytes wait in paho
            sock = client.socket()
            key = asyncio.get_running_loop()._selector.get_key(sock)
            assert key.data[1] is not None        # ... and the loop waits for it to drain
        finally:
            broker.proc.send_signal(signal.SIGCONT)
        for _ in range(600):
            if len(acked) == N:
                break
            await asyncio.sleep(0.05)
        await link.stop()
        task.cancel()
        return mids
    try:
        mids = asyncio.run(main())
    finally:
        broker.stop()
    assert sorted(acked) == sorted(mids)
