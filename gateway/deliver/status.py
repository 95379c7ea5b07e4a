"""The retained `<prefix>/<gw>/status` topic: how it is sent (docs/mqtt.md).

Status goes out directly, not through the outbox, ahead of any backlog: it
describes now, and is retained and republished, so the outbox need not keep
it. A status whose PUBACK never came is replaced by the next one under the
same seq, so a lost status never leaves a gap in seq. The Last Will (set at
connect) says `online: false` with no seq: the broker sends it, not us.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from . import payloads
from .mqtt import MqttLink


class StatusTopic:
    def __init__(self, topic: str, gateway_id: str, reserve_seq: Callable[[], Awaitable[int | None]]) -> None:
        self.topic = topic
        self.gateway_id = gateway_id
        self.reserve_seq = reserve_seq   # the store's thread records it: awaited, never a disk wait here
        self.sent_mono = 0.0
        self._seq: int | None = None
        self._mid: int | None = None
        self._lock = asyncio.Lock()      # one seq for concurrent publishes (connect, housekeeping)

    async def _take_seq(self) -> int | None:
        async with self._lock:
            if self._seq is None:
                self._seq = await self.reserve_seq()
            return self._seq

    def will(self) -> tuple[str, bytes]:
        body = payloads.envelope()
        body.update({"online": False, "seq": None, "gateway": self.gateway_id, "reason": "connection lost"})
        return self.topic, payloads.dumps(body)

    async def publish(self, link: MqttLink | None, body: dict) -> None:
        if link is None or not link.connected:
            return
        body["seq"] = await self._take_seq()
        if link.connected:
            self._mid = link.publish(self.topic, payloads.dumps(body), qos=1, retain=True)
            self.sent_mono = time.monotonic()

    def acked(self, mid: int) -> bool:
        """True when the PUBACK was the status's: the next status takes a new seq."""
        if mid != self._mid:
            return False
        self._mid = None
        self._seq = None
        return True

    def down(self) -> None:
        self._mid = None

    async def last(self, body: dict) -> tuple[str, bytes]:
        """The `online: false, reason: stopped` status of a clean stop."""
        body["seq"] = await self._take_seq()
        body["reason"] = "stopped"
        return self.topic, payloads.dumps(body)
