"""Drains the outbox to the broker within a bounded in-flight window; a
message is deleted only when its PUBACK arrives."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .mqtt import MqttLink
from .writer import StoreWriter

PUMP_GATHER_S = 0.01
# The publisher turns at least this often with nothing to do, to show the
# watchdog (site/sdnotify.py) it is alive: an idle publisher is not a dead one.
IDLE_TURN_S = 10.0


class Publisher:
    """Drains the outbox to MQTT within a bounded in-flight window.

    Batches come from the store's thread (awaited, never a disk wait on the
    loop) and acks go back to it. A batch asked for before a disconnect is
    dropped when it arrives after it: the outbox has put those messages back
    in the queue already (release_inflight), and they go out again, with
    their seq, on the next connection."""

    def __init__(self, outbox: StoreWriter, window: int) -> None:
        self.outbox = outbox
        self.window = window
        self.link: MqttLink | None = None
        self.inflight: dict[int, int] = {}  # paho mid -> outbox id
        self.sent = 0
        self.acked_count = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self.beat: Callable[[], object] = lambda: None   # progress, for the watchdog
        self._session = 0   # bumped at every disconnect
        self._pumping = asyncio.Lock()

    def wake(self) -> None:
        self._wake.set()

    def up(self) -> None:
        self.wake()

    def down(self) -> None:
        # Whatever paho held is gone with its client; the outbox hands it out
        # again (same seq) on the next connection.
        self._session += 1
        self.inflight.clear()
        self.outbox.release_inflight()

    def acked(self, mid: int) -> None:
        oid = self.inflight.pop(mid, None)
        if oid is not None:
            self.outbox.ack(oid)
            self.acked_count += 1
            self.wake()

    async def run(self) -> None:
        drained = False   # the last batch took all that waited: no need to ask again
        while not self._stopping:
            self.beat()
            self._wake.clear()
            if not drained:
                drained = await self.pump()
            link = self.link
            if link is not None and link.connected and self._room() >= self._refill():
                drained = await self._wait_for_news(link, drained)
                continue
            drained = False
            try:
                await asyncio.wait_for(self._wake.wait(), IDLE_TURN_S)
            except TimeoutError:
                continue
            # Let acks of the next few ms gather: each batch asked for is one
            # synced commit in the outbox (seq assignment).
            await asyncio.sleep(PUMP_GATHER_S)

    async def _wait_for_news(self, link: MqttLink, drained: bool) -> bool:
        """Nothing to send, room in the window: ask for the next messages now.
        The store's thread answers with the next put's messages, their seqs
        given in the commit that stores them (no second commit, no second
        hand-over), or with [] at a disconnect or after IDLE_TURN_S. After a
        drained batch the request does not wake the thread (lazy): at a poll
        every 90 ms, each wake-up of the other thread was a visible share of
        the CPU. Returns whether the batch sent was drained."""
        session = self._session
        fut = self.outbox.next_batch(self._room(), wait=True, lazy=drained)
        done, _ = await asyncio.wait({fut}, timeout=IDLE_TURN_S)
        if not done:
            self.outbox.unpark()
        batch = await fut
        if session == self._session and link.connected:
            return self._send(link, batch) and getattr(batch, "drained", False)
        return False

    def _room(self) -> int:
        return self.window - len(self.inflight)

    def _refill(self) -> int:
        # Each batch assigns seqs in one synced commit: refill when a tenth
        # of the window is free, not after every PUBACK.
        return max(1, self.window // 10)

    def _send(self, link: MqttLink, batch) -> bool:
        for p in batch:
            mid = link.publish(p.topic, p.payload, p.qos, p.retain)
            if mid is None:
                self.down()
                return False
            self.inflight[mid] = p.id
            self.sent += 1
        return True

    async def pump(self) -> bool:
        """Send what waits while the window has room; True when the last
        batch took all that waited (Batch.drained)."""
        async with self._pumping:   # one batch asked for at a time: the window holds
            while (link := self.link) is not None and link.connected:
                room = self._room()
                if room < self._refill() and self.inflight:
                    return False
                session = self._session
                batch = await self.outbox.next_batch(room)
                if session != self._session or not link.connected:
                    return False  # released while we waited: resent on the next connection
                if not batch or not self._send(link, batch):
                    return False
                if getattr(batch, "drained", False):
                    return True
        return False

    async def drain(self, timeout: float) -> None:
        """On shutdown: send what is stored and give the broker a moment to
        acknowledge it, within `timeout`. Not only what is in flight: with
        a small in-flight window the last group commit's readings go out
        one window at a time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.inflight:
                await self.pump()
                if not self.inflight:
                    return            # nothing more to send
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
