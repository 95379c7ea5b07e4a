"""The daemon: wires the pipeline together and keeps it running.

    serial/TCP bus --> poll --> decode --> interpret --> outbox --> MQTT
      (bus.py)        (plan)  (decode.py) (interpret.py) (outbox.py) (mqtt.py)
                                              \\--> state store (state.py)

Data flows one way. Each bus is one task; each reading is interpreted and
its messages (telemetry, retained state, fault events) plus the interpreter's
snapshot are written to the outbox in one transaction, so a crash can neither
raise a fault twice nor lose a clear. The publisher task drains the outbox to
the broker and deletes a message only when the broker acknowledges it.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
import logging
import os
import signal
import sqlite3
import time
from pathlib import Path

from protocols.models import load_models

from . import __version__, clock, payloads
from .bus import Bus, DeviceRuntime, make_runtime
from .config import Config
from .control import ControlServer
from .interpret import Interpreter
from .mqtt import MqttLink
from .outbox import Message, Outbox, Priority
from .state import StateStore

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 60.0
STATE_FLUSH_INTERVAL_S = 60.0
SHUTDOWN_DRAIN_S = 3.0
HOUSEKEEPING_S = 5.0
PUMP_GATHER_S = 0.01
STATE_REFRESH_S = 30.0
STATUS_BACKLOG_INTERVAL_S = 10.0


class Publisher:
    """Drains the outbox to MQTT within a bounded in-flight window."""

    def __init__(self, outbox: Outbox, window: int) -> None:
        self.outbox = outbox
        self.window = window
        self.link: MqttLink | None = None
        self.inflight: dict[int, int] = {}  # paho mid -> outbox id
        self.sent = 0
        self.acked_count = 0
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    def up(self) -> None:
        self.wake()

    def down(self) -> None:
        # Whatever paho held is gone with its client; the outbox hands it out
        # again (same seq) on the next connection.
        self.inflight.clear()
        self.outbox.release_inflight()

    def acked(self, mid: int) -> None:
        oid = self.inflight.pop(mid, None)
        if oid is not None:
            self.outbox.ack(oid)
            self.acked_count += 1
            self.wake()

    async def run(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            # Let acks and commits of the next few ms gather: each batch is one
            # synced commit in the outbox (seq assignment).
            await asyncio.sleep(PUMP_GATHER_S)
            self._wake.clear()
            self.pump()

    def pump(self) -> None:
        link = self.link
        # Each batch assigns seqs in one synced commit: refill when a tenth of
        # the window is free, not after every PUBACK.
        refill = max(1, self.window // 10)
        while link is not None and link.connected:
            room = self.window - len(self.inflight)
            if room < refill and self.inflight:
                return
            batch = self.outbox.next_batch(room)
            if not batch:
                return
            for p in batch:
                mid = link.publish(p.topic, p.payload, p.qos, p.retain)
                if mid is None:
                    self.down()
                    return
                self.inflight[mid] = p.id
                self.sent += 1

    async def drain(self, timeout: float) -> None:
        """On shutdown: give the broker a moment to acknowledge what is in flight."""
        deadline = time.monotonic() + timeout
        while self.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()


class GroupCommit:
    """Readings of all buses within a few milliseconds go into the outbox in
    one transaction: one SD-card sync per window instead of one per poll.

    A crash can lose only what was read in the last window and not yet
    committed, which is the same as having crashed a moment earlier: nothing
    that was stored is lost, and a reading's messages and the interpreter
    snapshot that goes with them always commit together.
    """

    WINDOW_S = 0.02
    MAX_PENDING = 500

    def __init__(self, outbox: Outbox, after: "Callable[[], None]") -> None:
        self.outbox = outbox
        self.after = after
        self.msgs: list[Message] = []
        self.kv: dict = {}
        self._timer: asyncio.TimerHandle | None = None
        self.commits = 0

    def add(self, msgs: list[Message], kv: dict | None) -> None:
        self.msgs.extend(msgs)
        if kv:
            self.kv.update(kv)
        if len(self.msgs) >= self.MAX_PENDING:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.WINDOW_S, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.msgs and not self.kv:
            return
        msgs, kv = self.msgs, self.kv
        self.msgs, self.kv = [], {}
        self.outbox.put(msgs, kv=kv or None)
        self.commits += 1
        self.after()


class Daemon:
    def __init__(self, cfg: Config, models: dict | None = None) -> None:
        self.cfg = cfg
        self.models = models if models is not None else load_models()
        self.topics = payloads.Topics(cfg.mqtt.topic_prefix, cfg.gateway.id)
        self.started_mono = time.monotonic()
        self.started_ts = clock.utc_now_iso()
        self.stop_event = asyncio.Event()
        self.buses: list[Bus] = []
        self.bus_of: dict[str, str] = {}
        self.runtimes: dict[str, DeviceRuntime] = {}
        self.interps: dict[str, Interpreter] = {}
        self._snap_saved: dict[str, dict] = {}
        self.outbox: Outbox | None = None
        self.state: StateStore | None = None
        self.publisher: Publisher | None = None
        self.link: MqttLink | None = None
        self.doors = None  # gateway.doors.DoorSite once a door controller is configured
        self._status_mono = 0.0
        self._status_seq: int | None = None
        self._state_sent: dict[str, tuple] = {}
        self._status_mid: int | None = None
        self.control: ControlServer | None = None

    # -- setup ---------------------------------------------------------------

    def _open_stores(self) -> None:
        sd = self.cfg.gateway.state_dir
        try:
            sd.mkdir(parents=True, exist_ok=True)
            os.chmod(sd, 0o750)
        except OSError as exc:
            log.error("state folder %s: %s", sd, exc)
        oc = self.cfg.outbox
        opts = dict(max_bytes=oc.max_bytes, max_age_s=oc.max_age_days * 86400.0,
                    synchronous=oc.synchronous.upper(), inflight=oc.inflight)
        unwritable = None
        try:
            self.outbox = Outbox.open(sd / "outbox.db", **opts)
            self.state = StateStore(sd / "state.json")
        except (OSError, sqlite3.Error) as exc:
            # A read-only or failing SD card: run from RAM rather than crash
            # and restart forever; alarms still go out while the broker is
            # reachable, and status says what is wrong.
            unwritable = f"{sd}: {exc}"
            log.critical("cannot write the state folder (%s): running with the store in RAM; "
                         "messages are not kept across a restart until this is fixed", unwritable)
            self.outbox = Outbox.in_ram(unwritable, **opts)
            self.state = StateStore(Path(self.outbox.directory) / "state.json")
        if unwritable:
            self._gateway_event("store_unwritable", {"path": str(sd), "error": unwritable})
        for path in list(self.outbox.quarantined) + list(self.state.quarantined):
            log.error("store was unreadable and has been moved aside to %s", path)
            self._gateway_event("store_quarantined", {"path": str(path)})

    def _gateway_event(self, code: str, detail: dict) -> None:
        body = payloads.envelope()
        body.update({"type": "gateway", "code": code, "severity": "major", "detail": detail})
        self.outbox.put([Message(f"{self.topics.base}/event", body, Priority.EVENT)])

    def _build(self) -> None:
        by_bus: dict[str, list[DeviceRuntime]] = {b.name: [] for b in self.cfg.buses}
        bus_cfg = {b.name: b for b in self.cfg.buses}
        for dc in self.cfg.devices:
            if not dc.enabled:
                continue
            model = self.models[dc.model]
            rt = make_runtime(dc, model, bus_cfg[dc.bus])
            if model.family == "door_controller":
                # Its event log is read by its own poller, not by register map;
                # the card registry and pseudonym key are loaded with the first.
                if self.doors is None:
                    from .doors import DoorSite
                    self.doors = DoorSite(self.cfg, self.outbox, self.topics,
                                          wake=lambda: self.publisher and self.publisher.wake())
                rt.custom = self.doors.poller(rt)
            self.runtimes[dc.name] = rt
            self.bus_of[dc.name] = dc.bus
            by_bus[dc.bus].append(rt)
            params = dict(dc.params)
            params.setdefault("poll_interval_s", dc.poll_interval_s)
            snap = self.outbox.kv_get(f"interp/{dc.name}")
            self.interps[dc.name] = Interpreter(model, dc.name, params, snap)
            self._snap_saved[dc.name] = snap or {}
            prior = self.state.get("devices", dc.name) or {}
            rt.last_values.update(prior.get("values", {}))
            rt.last_good_ts = prior.get("last_good_ts")
        for bc in self.cfg.buses:
            if by_bus[bc.name]:
                self.buses.append(Bus(bc, by_bus[bc.name], self._sink))

    # -- the pipeline ------------------------------------------------------

    async def _sink(self, d: DeviceRuntime, reading) -> None:
        interp = self.interps[d.name]
        events = interp.step(reading)
        msgs: list[Message] = []
        if reading.values:
            msgs.append(Message(self.topics.telemetry(d.name), payloads.telemetry(d, reading),
                                Priority.TELEMETRY))
        for ev in events:
            body = payloads.envelope(ev.ts)
            body.update(ev.payload())
            msgs.append(Message(self.topics.event(d.name), body, Priority.EVENT))
            log.warning("device %s: fault %s %s", d.name, ev.code, ev.state) if ev.state == "raised" \
                else log.info("device %s: fault %s %s", d.name, ev.code, ev.state)
        # Retained state when something a consumer acts on changed, and at
        # least every STATE_REFRESH_S for the values; telemetry carries every
        # reading. This halves the messages per poll.
        active = interp.active()
        sig = (d.available, d.last_error, d.last_values.get("log_epoch"),
               tuple(sorted((c, bool(i.get("flapping")))
                                                       for c, i in active.items())))
        now = time.monotonic()
        last_sig, last_at = self._state_sent.get(d.name, (None, -1e9))
        if sig != last_sig or now - last_at >= STATE_REFRESH_S:
            msgs.append(Message(self.topics.state(d.name),
                                payloads.state(d, self.bus_of[d.name], active),
                                Priority.STATE, retain=True))
            self._state_sent[d.name] = (sig, now)
        kv = None
        if events:
            # The interpreter's memory commits with its events: a crash cannot
            # raise a fault twice or forget a clear.
            snap = interp.snapshot()
            kv = {f"interp/{d.name}": snap}
            self._snap_saved[d.name] = snap
        self.commit.add(msgs, kv)
        if self.control is not None:
            self.control.observe(d, reading, events)   # history file, live watchers

    def _save_snapshots(self) -> None:
        self.commit.flush()
        kv = {}
        for name, interp in self.interps.items():
            snap = interp.snapshot()
            if snap != self._snap_saved.get(name):
                kv[f"interp/{name}"] = snap
                self._snap_saved[name] = snap
        if kv:
            self.outbox.put([], kv=kv)

    def _flush_state(self) -> None:
        """Human-readable site state for the CLI, at most once a minute (SD wear)."""
        for name, d in self.runtimes.items():
            self.state.put("devices", name, {
                "values": payloads.published_values(d.model, d.last_values),
                "last_good_ts": d.last_good_ts,
                "available": d.available,
                "last_error": d.last_error,
                "active": self.interps[name].active(),
            })

    # -- status ----------------------------------------------------------------

    def status_body(self, online: bool = True) -> dict:
        body = payloads.envelope()
        stats = self.outbox.stats() if self.outbox else {}
        devices = list(self.runtimes.values())
        body.update({
            "online": online,
            "gateway": self.cfg.gateway.id,
            "site": self.cfg.gateway.site,
            "version": __version__,
            "started": self.started_ts,
            "uptime_s": round(time.monotonic() - self.started_mono, 1),
            "mqtt": {"connects": self.link.connects if self.link else 0},
            "backlog": {k: stats.get(k) for k in ("backlog_msgs", "backlog_bytes", "oldest_age_s", "inflight")},
            "dropped": stats.get("dropped"),
            "coalesced": stats.get("coalesced"),
            "store": {"health": stats.get("health"), "detail": stats.get("health_detail")},
            "buses": {b.cfg.name: b.stats.summary() for b in self.buses},
            "devices": {
                "total": len(devices),
                "online": sum(1 for d in devices if d.available),
                "unavailable": sum(1 for d in devices if d.available is False),
                "with_faults": sum(1 for n in self.runtimes
                                   if any(i for i in self.interps[n].active().values())),
            },
        })
        return body

    def _will(self) -> tuple[str, bytes]:
        body = payloads.envelope()
        body.update({"online": False, "seq": None, "gateway": self.cfg.gateway.id,
                     "reason": "connection lost"})
        return self.topics.status, payloads.dumps(body)

    def publish_status(self) -> None:
        if self.link is None or not self.link.connected:
            return
        body = self.status_body()
        # Status goes out directly, ahead of any backlog: it describes now,
        # and is retained and republished, so the outbox need not keep it.
        # A status whose PUBACK never came is replaced by the next one under
        # the same seq, so a lost status never leaves a gap in seq.
        if self._status_seq is None:
            self._status_seq = self.outbox.reserve_seq()
        body["seq"] = self._status_seq
        self._status_mid = self.link.publish(self.topics.status, payloads.dumps(body), qos=1,
                                             retain=True)
        self._status_mono = time.monotonic()

    def _acked(self, mid: int) -> None:
        if mid == self._status_mid:
            self._status_mid = None
            self._status_seq = None
            return
        self.publisher.acked(mid)

    def _down(self) -> None:
        self._status_mid = None
        self.publisher.down()

    # -- run -------------------------------------------------------------------

    def _on_up(self) -> None:
        self.publish_status()
        self.publisher.up()

    async def _housekeeping(self) -> None:
        last_state = time.monotonic()
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            try:
                self.outbox.flush()
                if self.outbox.health != "ok":
                    self.outbox.retry()
                # While a backlog drains, say how it goes more often.
                every = STATUS_INTERVAL_S if not self.outbox.stats().get("backlog_msgs") \
                    else STATUS_BACKLOG_INTERVAL_S
                if time.monotonic() - self._status_mono >= every:
                    self.publish_status()
                if time.monotonic() - last_state >= STATE_FLUSH_INTERVAL_S:
                    self._save_snapshots()
                    self._flush_state()
                    last_state = time.monotonic()
            except Exception:  # noqa: BLE001 - housekeeping must never stop the daemon
                log.exception("housekeeping failed")

    async def run(self) -> int:
        self._open_stores()
        self._build()
        self.publisher = Publisher(self.outbox, self.cfg.outbox.inflight)
        self.commit = GroupCommit(self.outbox, self.publisher.wake)
        self.control = ControlServer(self)
        self.link = MqttLink(self.cfg.mqtt, will=self._will, on_up=self._on_up,
                             on_down=self._down, on_ack=self._acked,
                             on_message=self.control.commands.on_message,
                             subscriptions=self.control.commands.subscriptions)
        self.publisher.link = self.link
        if self.doors is not None:
            # the retained card registry topic, alongside whatever else is subscribed
            other = self.link.on_message
            self.link.subscriptions = (*self.link.subscriptions, *self.doors.subscriptions)

            def on_message(topic: str, payload: bytes) -> None:
                self.doors.on_message(topic, payload)
                if other is not None:
                    other(topic, payload)
            self.link.on_message = on_message
        log.info("edgegw %s starting: gateway %s, %d buses, %d devices, state in %s",
                 __version__, self.cfg.gateway.id, len(self.buses), len(self.runtimes),
                 self.cfg.gateway.state_dir)
        await self.control.start()   # before the bus tasks: it hands them their port locks
        tasks = [asyncio.create_task(self.link.run(), name="mqtt"),
                 asyncio.create_task(self.publisher.run(), name="publisher"),
                 asyncio.create_task(self._housekeeping(), name="housekeeping")]
        tasks += [asyncio.create_task(b.run(), name=f"bus:{b.cfg.name}") for b in self.buses]
        if self.doors is not None:
            tasks.append(asyncio.create_task(self.doors.run(), name="doors"))  # daily expiry reminder
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        stopper = asyncio.create_task(self.stop_event.wait())
        done, _ = await asyncio.wait(set(tasks) | {stopper}, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t is not stopper and t.exception():
                log.error("task %s died: %r", t.get_name(), t.exception())
        await self.shutdown(tasks)
        return 0

    async def shutdown(self, tasks) -> None:
        log.info("stopping: finishing in-flight messages")
        await self.control.stop()
        for b in self.buses:
            b.stop()
        bus_tasks = [t for t in tasks if t.get_name().startswith("bus:")]
        await asyncio.wait(bus_tasks, timeout=5.0) if bus_tasks else None
        self.commit.flush()
        self.publisher.pump()
        await self.publisher.drain(SHUTDOWN_DRAIN_S)
        last = None
        if self.link.connected:
            body = self.status_body(online=False)
            body["seq"] = self._status_seq if self._status_seq is not None else self.outbox.reserve_seq()
            body["reason"] = "stopped"
            last = (self.topics.status, payloads.dumps(body))
        await self.link.stop(last)
        self.publisher.stop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._save_snapshots()
        self._flush_state()
        backlog = self.outbox.stats().get("backlog_msgs", 0)
        self.outbox.close()
        log.info("stopped; %d messages wait in the outbox for the next start", backlog)
