"""The daemon: wires the pipeline together, runs it and stops it.

    serial/TCP bus --> decode --> interpret --> group commit --> outbox --> publisher --> MQTT
     (poll/bus.py)  (poll/decode.py) (faults/)  (deliver/commit.py) (deliver/outbox.py)  (deliver/mqtt.py)
                                        \\--> state store (site/state.py), for the CLI

Data flows one way. Each bus is one task; each reading is interpreted and
its messages (telemetry, retained state, fault events) plus the interpreter's
snapshot are written to the outbox in one transaction, so a crash can neither
raise a fault twice nor lose a clear. The publisher task drains the outbox to
the broker and deletes a message only when the broker acknowledges it.

The field tools (control socket, MQTT commands) are not imported here: the
command line hands the daemon an `attach` factory (gateway/field/control.py).
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from gateway import __version__
from gateway.deliver import payloads
from gateway.deliver.commit import GroupCommit
from gateway.deliver.discovery import KV_KEY, Announcer, announcer
from gateway.deliver.mqtt import MqttLink
from gateway.deliver.outbox import Message, Outbox, Priority
from gateway.deliver.publisher import IDLE_TURN_S, Publisher
from gateway.deliver.report import Reporter
from gateway.deliver.status import StatusTopic
from gateway.deliver.writer import StoreWriter
from gateway.doors.poller import STATE_NUMBERS
from gateway.doors.site import DoorSite
from gateway.faults.interpret import Interpreter
from gateway.poll.bus import BEAT_MARGIN_S, Bus
from gateway.poll.portlock import lock_path
from gateway.poll.runtime import DeviceRuntime, make_runtime
from gateway.site import clock
from gateway.site.config import Config
from gateway.site.looplag import LoopLag
from gateway.site.sdnotify import Supervision
from gateway.site.state import StateStore
from protocols.models import load_catalogue

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 60.0
STATE_FLUSH_INTERVAL_S = 60.0
PERSIST_CHUNK = 100
SHUTDOWN_DRAIN_S = 3.0
HOUSEKEEPING_S = 5.0
STATE_REFRESH_S = 30.0
STATUS_BACKLOG_INTERVAL_S = 10.0
# A message older than this is a backlog being drained, not one on its way:
# on a slow uplink a few messages are always in flight.
BACKLOG_AGE_S = 30.0


class Attachment(Protocol):
    """What the field tools plug into the daemon (gateway/field/control.py)."""

    subscriptions: tuple[str, ...]       # MQTT topic filters it answers

    def on_message(self, topic: str, payload: bytes) -> None: ...
    def observe(self, d: DeviceRuntime, reading, events) -> None: ...   # every processed reading
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class Daemon:
    def __init__(self, cfg: Config, models: dict | None = None, *,
                 attach: Callable[["Daemon"], Attachment] | None = None) -> None:
        self.attach = attach
        self.cfg = cfg
        self.models = models if models is not None else load_catalogue(cfg.gateway.models_dir)
        self.topics = payloads.Topics(cfg.mqtt.topic_prefix, cfg.gateway.id)
        self.started_mono = time.monotonic()
        self.lag = LoopLag()
        self.started_ts = clock.utc_now_iso()
        self.stop_event = asyncio.Event()
        self.buses: list[Bus] = []
        self.bus_of: dict[str, str] = {}
        self.runtimes: dict[str, DeviceRuntime] = {}
        self.interps: dict[str, Interpreter] = {}
        self.reporters: dict[str, Reporter] = {}   # devices that report by exception
        self._snap_saved: dict[str, dict] = {}
        self.outbox: StoreWriter | None = None   # the outbox, behind the store's thread
        self.state: StateStore | None = None
        self.publisher: Publisher | None = None
        self.link: MqttLink | None = None
        self.doors: DoorSite | None = None  # once a door controller is configured
        self._state_sent: dict[str, tuple] = {}
        self.control: Attachment | None = None
        self.announcer: Announcer | None = None

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
        # One thread owns the SQLite connection and the state.json writes:
        # nothing durable waits on the disk on the event loop.
        loop = asyncio.get_running_loop()
        try:
            self.state = StateStore(sd / "state.json")
            self.outbox = StoreWriter(lambda: Outbox.open(sd / "outbox.db", **opts), loop, self.state)
        except (OSError, sqlite3.Error) as exc:
            # A read-only or failing SD card: run from RAM rather than crash
            # and restart forever; alarms still go out while the broker is
            # reachable, and status says what is wrong.
            unwritable = f"{sd}: {exc}"
            log.critical("cannot write the state folder (%s): running with the store in RAM; "
                         "messages are not kept across a restart until this is fixed", unwritable)
            self.outbox = StoreWriter(lambda: Outbox.in_ram(unwritable, **opts), loop)
            self.state = StateStore(Path(self.outbox.directory) / "state.json")
            self.outbox.attach_state(self.state)
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
        priors = self.state.all("devices")   # one parse of state.json, not one per device
        for dc in self.cfg.devices:
            if not dc.enabled:
                continue
            model = self.models[dc.model]
            rt = make_runtime(dc, model, bus_cfg[dc.bus])
            if model.family == "door_controller":
                # Its event log is read by its own poller, not by register map;
                # the card registry and pseudonym key are loaded with the first.
                if self.doors is None:
                    self.doors = DoorSite(self.cfg, self.outbox, self.topics,
                                          wake=lambda: self.publisher and self.publisher.wake())
                rt.custom = self.doors.poller(rt)
            self.runtimes[dc.name] = rt
            if dc.report is not None:
                self.reporters[dc.name] = Reporter(dc.report)
            self.bus_of[dc.name] = dc.bus
            by_bus[dc.bus].append(rt)
            params = dict(dc.params)
            params.setdefault("poll_interval_s", dc.poll_interval_s)
            snap = self.outbox.kv_get(f"interp/{dc.name}")
            self.interps[dc.name] = Interpreter(model, dc.name, params, snap)
            self._snap_saved[dc.name] = snap or {}
            prior = priors.get(dc.name) or {}
            rt.last_values.update(prior.get("values", {}))
            rt.last_good_ts = prior.get("last_good_ts")
        for bc in self.cfg.buses:
            if by_bus[bc.name]:
                bus = Bus(bc, by_bus[bc.name], self._sink)
                if bc.kind == "serial":
                    # `edgegw scan/read` take the same lock before opening the port themselves
                    bus.lock_path = str(lock_path(self.cfg.gateway.state_dir, bc.name))
                self.buses.append(bus)

    # -- the pipeline ------------------------------------------------------

    def _sink(self, d: DeviceRuntime, reading) -> None:
        interp = self.interps[d.name]
        events = interp.step(reading)
        msgs: list[Message] = []
        now = time.monotonic()
        if reading.values:
            body = payloads.telemetry(d, reading)
            rep = self.reporters.get(d.name)
            errors = body.get("errors", {})
            if rep is None or rep.due(body["values"], errors, now):
                msgs.append(Message(self.topics.telemetry(d.name), body, Priority.TELEMETRY))
                if rep is not None:
                    rep.sent(body["values"], errors, now)
        for ev in events:
            body = payloads.fault_event(ev, self.cfg.service)
            msgs.append(Message(self.topics.event(d.name), body, Priority.EVENT))
            log.warning("device %s: fault %s %s", d.name, ev.code, ev.state) if ev.state == "raised" \
                else log.info("device %s: fault %s %s", d.name, ev.code, ev.state)
        # Retained state when something a consumer acts on changed, and at
        # least every STATE_REFRESH_S for the values (the heartbeat when the
        # device reports by exception); telemetry carries the readings.
        active = interp.active()
        sig = (d.available, d.last_error, d.last_values.get("log_epoch"),
               tuple(sorted((c, bool(i.get("flapping"))) for c, i in active.items())))
        last_sig, last_at = self._state_sent.get(d.name, (None, -1e9))
        refresh = max(STATE_REFRESH_S, d.cfg.report.heartbeat_s) if d.cfg.report else STATE_REFRESH_S
        if sig != last_sig or now - last_at >= refresh:
            msgs.append(Message(self.topics.state(d.name),
                                payloads.state(d, self.bus_of[d.name], active, self.cfg.service),
                                Priority.STATE, retain=True))
            self._state_sent[d.name] = (sig, now)
        kv = None
        if events or interp.counts_moved:
            # The interpreter's memory commits with its events: a crash cannot
            # raise a fault twice or forget a clear; nor, when a debounce count
            # moved, lose the polls counted so far (issue 12, defect 7).
            snap = interp.snapshot()
            kv = {f"interp/{d.name}": snap}
            self._snap_saved[d.name] = snap
        self.commit.add(msgs, kv)
        if self.control is not None:
            self.control.observe(d, reading, events)   # history file, live watchers

    async def _persist(self) -> None:
        """Snapshots that changed, and state.json (once a minute: SD wear),
        PERSIST_CHUNK devices a loop turn (all in one held the loop ~15 ms at
        1,000 devices). A chunk's snapshots are handed over in the turn they
        are taken: none lands after a newer one from _sink."""
        self.commit.flush()
        names = list(self.runtimes)
        docs = {}
        for i in range(0, len(names), PERSIST_CHUNK):
            kv = {}
            for name in names[i:i + PERSIST_CHUNK]:
                d, interp = self.runtimes[name], self.interps[name]
                snap = interp.snapshot()
                if snap != self._snap_saved.get(name):
                    kv[f"interp/{name}"] = self._snap_saved[name] = snap
                docs[name] = {"values": payloads.published_values(d.model, d.last_values),
                              "last_good_ts": d.last_good_ts, "available": d.available,
                              "last_error": d.last_error, "active": interp.active()}
            if kv:
                self.outbox.put([], kv=kv)
            await asyncio.sleep(0)
        self.outbox.write_state("devices", docs)

    # -- status ----------------------------------------------------------------

    def status_body(self, online: bool = True) -> dict:
        devices = list(self.runtimes.values())
        return payloads.gateway_status(
            self.cfg.gateway, online=online, version=__version__, started=self.started_ts,
            uptime_s=time.monotonic() - self.started_mono, connects=self.link.connects if self.link else 0,
            store=self.outbox.stats() if self.outbox else {}, loop_lag_ms=self.lag.summary(),
            commands=getattr(self.control, "command_counts", lambda: None)(),   # field/commands.py
            buses={b.cfg.name: b.stats.summary() for b in self.buses},
            devices={"total": len(devices),
                     "online": sum(1 for d in devices if d.available),
                     "unavailable": sum(1 for d in devices if d.available is False),
                     "with_faults": sum(1 for n in self.runtimes if any(self.interps[n].active().values()))})

    def summary(self) -> str:
        """One line for `systemctl status`."""
        st = self.outbox.stats()
        online = sum(1 for d in self.runtimes.values() if d.available)
        return (f"{online}/{len(self.runtimes)} devices online, backlog {st.get('backlog_msgs', 0)}, "
                f"broker {'connected' if self.link and self.link.connected else 'not connected'}")

    async def publish_status(self) -> None:
        await self.status.publish(self.link, self.status_body())

    def _announcer(self) -> Announcer | None:
        """Home Assistant discovery: what to announce, and what was (docs/integrations.md)."""
        extra = {n: STATE_NUMBERS for n, rt in self.runtimes.items() if rt.model.family == "door_controller"}
        return announcer(self.cfg, self.runtimes, self.bus_of, self.topics, extra,
                         self.outbox.kv_get(KV_KEY) or {}, save=lambda m: self.commit.add([], {KV_KEY: m}))

    def _acked(self, mid: int) -> None:
        if self.announcer is not None and self.announcer.on_ack(mid):
            return
        if self.status.acked(mid):
            return
        self.publisher.acked(mid)

    def _down(self) -> None:
        self.status.down()
        self.publisher.down()
        if self.announcer is not None:
            self.announcer.on_down()

    # -- run -------------------------------------------------------------------

    def _on_up(self) -> None:
        asyncio.get_running_loop().create_task(self._up())

    async def _up(self) -> None:
        await self.publish_status()   # ahead of any backlog: it describes now
        self.publisher.up()
        if self.announcer is not None:
            self.announcer.on_up(lambda topic, payload: self.link.publish(topic, payload, qos=1, retain=True))

    async def _housekeeping(self) -> None:
        last_state = time.monotonic()
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)   # off the lag sampler's grid (site/ticks.py)
            try:
                self.outbox.flush()
                if self.outbox.health != "ok":
                    self.outbox.retry()
                # While a backlog drains, say how it goes more often.
                draining = (self.outbox.stats().get("oldest_age_s") or 0) >= BACKLOG_AGE_S
                every = STATUS_BACKLOG_INTERVAL_S if draining else STATUS_INTERVAL_S
                if time.monotonic() - self.status.sent_mono >= every:
                    await self.publish_status()
                self.service.status(self.summary())
                if time.monotonic() - last_state >= STATE_FLUSH_INTERVAL_S:
                    await self._persist()
                    last_state = time.monotonic()
            except Exception:  # noqa: BLE001 - housekeeping must never stop the daemon
                log.exception("housekeeping failed")

    async def run(self) -> int:
        self._open_stores()
        self._build()
        self.publisher = Publisher(self.outbox, self.cfg.outbox.inflight)
        self.commit = GroupCommit(self.outbox, self.publisher.wake)
        self.announcer = self._announcer()
        self.control = self.attach(self) if self.attach is not None else None
        # The MQTT topics it answers: field tools' commands, the door card registry
        listeners = [x for x in (self.control, self.doors) if x is not None and x.subscriptions]

        def on_message(topic: str, payload: bytes) -> None:
            for x in listeners:
                x.on_message(topic, payload)
        self.status = StatusTopic(self.topics.status, self.cfg.gateway.id, self.outbox.reserve_seq_async)
        self.link = MqttLink(self.cfg.mqtt, will=self.status.will, on_up=self._on_up,
                             on_down=self._down, on_ack=self._acked,
                             on_message=on_message if listeners else None,
                             subscriptions=tuple(t for x in listeners for t in x.subscriptions))
        self.publisher.link = self.link
        # systemd: a stuck bus task or a dead publisher stops the watchdog pings
        self.service = Supervision({**{f"bus:{b.cfg.name}": b.cfg.timeout_s + BEAT_MARGIN_S for b in self.buses},
                                    "publisher": 3 * IDLE_TURN_S})
        for b in self.buses:
            b.watchdog = self.service.watchdog
        self.publisher.beat = lambda: self.service.watchdog.beat("publisher")
        log.info("edgegw %s starting: gateway %s, %d buses, %d devices, state in %s",
                 __version__, self.cfg.gateway.id, len(self.buses), len(self.runtimes),
                 self.cfg.gateway.state_dir)
        if self.control is not None:
            await self.control.start()
        tasks = [asyncio.create_task(self.lag.run(), name="loop-lag"),
                 asyncio.create_task(self.link.run(), name="mqtt"),
                 asyncio.create_task(self.publisher.run(), name="publisher"),
                 asyncio.create_task(self._housekeeping(), name="housekeeping")]
        tasks += [asyncio.create_task(b.run(), name=f"bus:{b.cfg.name}") for b in self.buses]
        if self.doors is not None:
            tasks.append(asyncio.create_task(self.doors.run(), name="doors"))  # daily expiry reminder
        tasks += [asyncio.create_task(c, name="watchdog") for c in self.service.tasks()]
        await asyncio.sleep(0)   # every task has started
        gc.freeze()   # start-up's objects live as long as we do: a full collection skips them
        self.service.ready(self.summary())
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
        self.service.stopping()
        if self.control is not None:
            await self.control.stop()
        for b in self.buses:
            b.stop()
        bus_tasks = [t for t in tasks if t.get_name().startswith("bus:")]
        await asyncio.wait(bus_tasks, timeout=5.0) if bus_tasks else None
        self.commit.flush()
        await self.publisher.pump()
        await self.publisher.drain(SHUTDOWN_DRAIN_S)
        last = None
        if self.link.connected:
            last = await self.status.last(self.status_body(online=False))
        await self.link.stop(last)
        self.publisher.stop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.doors is not None:
            self.doors.close()   # a card registry update still being applied finishes first
        await self._persist()
        backlog = (await self.outbox.aclose()).get("backlog_msgs", 0)
        log.info("stopped; %d messages wait in the outbox for the next start", backlog)
