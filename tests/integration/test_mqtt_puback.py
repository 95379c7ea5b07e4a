"""PUBACKs on MQTT 3.1.1 are read by our own few lines (gateway/deliver/
mqtt.py, fast_puback), not by paho's decoder, which builds a ReasonCode and
a Properties object per ack: at 500 messages a second that was a fifth of
the loop's CPU per message. Real Mosquitto on loopback, the installed paho."""
from __future__ import annotations

import asyncio

import paho.mqtt._packet as paho_packet
import pytest

from gateway.deliver import mqtt
from tests.support import Broker, connected, mqtt_link

pytestmark = pytest.mark.integration

N = 300


def test_every_publish_is_acked_once_without_paho_decoding_the_pubacks(tmp_path, monkeypatch):
    decoded = []
    real = paho_packet.decode_puback
    monkeypatch.setattr(paho_packet, "decode_puback", lambda *a: decoded.append(a) or real(*a))
    broker = Broker(tmp_path).start()
    acked: list[int] = []
    link = mqtt_link(broker, "edgegw-puback-test", on_ack=acked.append)

    async def main():
        task = await connected(link)
        mids = [link.publish(f"t/m/{i}", b'{"i":%d}' % i, 1, False) for i in range(N)]
        assert None not in mids
        for _ in range(200):
            if len(acked) == N:
                break
            await asyncio.sleep(0.05)
        pending = len(link._client._out_messages)
        await link.stop()
        task.cancel()
        return mids, pending
    try:
        mids, pending = asyncio.run(main())
    finally:
        broker.stop()
    assert sorted(acked) == sorted(mids)      # each once
    assert pending == 0                       # paho let go of every message
    assert decoded == []                      # ... without decoding a PUBACK


def test_a_client_without_the_internals_keeps_paho_s_own_path():
    class Other:
        pass
    assert mqtt.fast_puback(Other()) is False
