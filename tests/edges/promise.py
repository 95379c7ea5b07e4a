"""The product's promise, counted, for every case of the fault suite.

    produced   = every seq the gateway issued (read from its outbox file after
                 the last stop: seq_next - 1) + what is still stored there
    delivered  = distinct seqs a subscriber received
    duplicates = deliveries of a seq already received; a repeated seq must
                 carry the identical payload (the retained status is the one
                 topic whose unacknowledged message is replaced under its seq)
    wrong      = published values the simulator never served
    crashes    = lives that ended without being asked to
    tracebacks = "Traceback" in the gateway's log
    RSS, fds   = of the gateway process, after warm-up and at the end

Each case fills a `Figures`, asserts it with `check()`, and hands it to
`report()`: printed, and appended as one JSON line to the file named by
EDGEGW_SOAK_REPORT (bench/soak reads it to print its table). EDGEGW_SOAK_S
stretches every case to that many seconds (bench/soak --minutes N); without
it each case runs its bounded CI length.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.integration.test_lying_slave import PINNED, START
from tests.support import Uplink, outbox_figures, proc_fds, proc_rss_kb, stop_proc

SOAK_S = float(os.environ.get("EDGEGW_SOAK_S", "0") or 0)
# Flat means not growing with time: what a long run may add over its warm-up
# sample (Python's allocator keeps freed arenas, SQLite its 2 MB page cache).
RSS_SLACK_KB = 8 * 1024
FD_SLACK = 3


def duration(ci_s: float) -> float:
    """How long a case runs: its CI length, or the soak's when that is longer."""
    return max(ci_s, SOAK_S)


def soaking() -> bool:
    return SOAK_S > 0


@dataclass
class Figures:
    case: str
    produced: int = 0
    delivered: int = 0
    duplicates: int = 0
    wrong: int = 0
    crashes: int = 0
    tracebacks: int = 0
    rss_kb: list = field(default_factory=lambda: [None, None])
    fds: list = field(default_factory=lambda: [None, None])
    seconds: float = 0.0
    # produced - delivered that the case's own rules allow (seqs of retained
    # statuses lost with a killed process), and anything else worth printing
    allowed_gap: int = 0
    notes: dict = field(default_factory=dict)

    def check(self) -> None:
        assert self.produced > 0, "the case produced nothing: it cannot fail"
        gap = self.produced - self.delivered
        assert 0 <= gap <= self.allowed_gap, (
            f"{self.case}: produced {self.produced}, delivered {self.delivered} "
            f"(at most {self.allowed_gap} may be missing)")
        assert self.wrong == 0, f"{self.case}: {self.wrong} wrong values"
        assert self.crashes == 0, f"{self.case}: the gateway exited on its own {self.crashes} times"
        assert self.tracebacks == 0, f"{self.case}: {self.tracebacks} tracebacks in the log"
        r0, r1 = self.rss_kb
        if r0 is not None and r1 is not None:
            assert r1 - r0 <= RSS_SLACK_KB, f"{self.case}: RSS {r0} -> {r1} kB"
        f0, f1 = self.fds
        if f0 is not None and f1 is not None:
            assert f1 - f0 <= FD_SLACK, f"{self.case}: fds {f0} -> {f1}"

    def report(self) -> None:
        row = asdict(self)
        row["test"] = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
        print("FIGURES", json.dumps(row, sort_keys=True))
        out = os.environ.get("EDGEGW_SOAK_REPORT")
        if out:
            with open(out, "a") as fh:
                fh.write(json.dumps(row, sort_keys=True) + "\n")


class Watch:
    """RSS and descriptors of one gateway process: a sample after warm-up and
    one at the end (the case decides when)."""

    def __init__(self, proc) -> None:
        self.proc = proc
        self.first: tuple[int | None, int | None] = (None, None)
        self.last: tuple[int | None, int | None] = (None, None)

    def sample(self) -> tuple[int | None, int | None]:
        return proc_rss_kb(self.proc.pid), proc_fds(self.proc.pid)

    def start(self) -> None:
        self.first = self.sample()

    def end(self) -> None:
        self.last = self.sample()

    def into(self, fig: Figures) -> None:
        fig.rss_kb = [self.first[0], self.last[0]]
        fig.fds = [self.first[1], self.last[1]]


class FlakyUplink(Uplink):
    """An Uplink that can also stall (connections stay open, bytes vanish)
    or hold (connections stay open, bytes wait and then go on, in order:
    a link too slow for a while, shorter than the MQTT keepalive)."""

    def __init__(self, upstream_port: int) -> None:
        self.stalled = threading.Event()
        self.held = threading.Event()
        super().__init__(upstream_port)

    def down(self) -> None:
        # A listener closed while its thread sits in accept() keeps listening
        # until one more client comes; shut it down first so up() can bind
        # the port again at once.
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        super().down()

    def _pump(self, src: socket.socket, dst: socket.socket, delay: float = 0.0) -> None:
        try:
            while data := src.recv(65536):
                while self.held.is_set():
                    time.sleep(0.01)
                if not self.stalled.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# -- a meter whose every value is known ------------------------------------------

def pinned_meter(status_word: int = 0) -> str:
    """The TOML lines of a turbine meter whose values are pinned (as in
    tests/integration/test_lying_slave.py) and whose totals start known."""
    pin = ", ".join(f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v!r}"
                    for k, v in PINNED.items() if k != "status_word")
    return (f"values = {{ {', '.join(f'{k} = {v!r}' for k, v in START.items())} }}\n"
            f"pin = {{ {pin}, status_word = {status_word} }}")


def wrong_values(body: dict, elapsed_s: float, status_words=(0,)) -> dict:
    """Every value of a pinned meter's telemetry the simulator never served:
    pinned values exactly, totals between their start and what the pinned
    flow can count in elapsed_s, the status word among those it was set to."""
    flow_std = PINNED["flow_m3h"] * (PINNED["pressure_kPa"] / 101.325) * (293.15 / (273.15 + PINNED["temperature_C"]))
    out = {}
    for k, v in body["values"].items():
        if k == "status_word":
            ok = v in status_words
        elif k in PINNED:
            ok = v == PINNED[k]
        elif k in START:
            ok = START[k] <= v <= START[k] + flow_std * (elapsed_s + 5) / 3600 + 0.002
        elif k == "flow_std_m3h":
            ok = abs(v - flow_std) <= 1e-4 * flow_std
        else:
            ok = False
        if not ok:
            out[k] = v
    return out


def count_wrong(led: "Ledger", elapsed_s: float, status_words=(0,), devices=None) -> int:
    n = 0
    for topic, body in led.by_seq.values():
        if topic.endswith("/telemetry") and (devices is None or body.get("device") in devices):
            n += bool(wrong_values(body, elapsed_s, status_words))
    return n


# -- the stream -------------------------------------------------------------------

@dataclass
class Ledger:
    by_seq: dict            # seq -> (topic, body) of its first delivery
    deliveries: int         # messages that carried a seq
    duplicates: int
    conflicts: list         # (seq, first, other): a seq reused for another message
    status_seqs: set


def ledger(sub, status_topic: str) -> Ledger:
    with sub.lock:
        messages = list(sub.messages)
    by_seq: dict[int, tuple[str, dict]] = {}
    conflicts, status_seqs = [], set()
    deliveries = duplicates = 0
    for _t, topic, body, _retained in messages:
        seq = body.get("seq") if isinstance(body, dict) else None
        if not isinstance(seq, int) or isinstance(seq, bool):
            continue   # the Last Will (seq null), the operator's own topics
        deliveries += 1
        if topic == status_topic:
            status_seqs.add(seq)
        if seq in by_seq:
            duplicates += 1
            first_topic, first = by_seq[seq]
            # A status whose PUBACK never came is sent again under its seq
            # with newer figures (gateway/deliver/status.py); anything else
            # must be the very same message.
            same = first_topic == topic and (topic == status_topic or first == body)
            if not same:
                conflicts.append((seq, (first_topic, first), (topic, body)))
            continue
        by_seq[seq] = (topic, body)
    return Ledger(by_seq, deliveries, duplicates, conflicts, status_seqs)


def account(fig: Figures, sub, status_topic: str, state_dir: Path, allow_drops: tuple[str, ...] = ()) -> Ledger:
    """produced / delivered / duplicates from the stream and the stopped
    gateway's outbox file; what was still stored counts as not delivered.
    `allow_drops`: classes the case's conditions may drop (counted, and
    allowed as the gap between produced and delivered)."""
    led = ledger(sub, status_topic)
    ob = outbox_figures(state_dir)
    fig.produced = ob["seq_next"] - 1 + ob["backlog"] + sum(ob["dropped"].values())
    fig.delivered = len(led.by_seq)
    fig.duplicates = led.duplicates
    lags = [b["loop_lag_ms"].get("max_since_start") for s, (t, b) in sorted(led.by_seq.items())
            if t == status_topic and isinstance(b.get("loop_lag_ms"), dict)]
    fig.notes.update(loop_lag_max_ms=lags[-1] if lags else None)
    fig.notes.update(backlog_at_end=ob["backlog"], dropped=ob["dropped"], conflicts=len(led.conflicts),
                     missing=_missing(led, ob["seq_next"]))
    assert not led.conflicts, f"a seq carried two different messages: {led.conflicts[:3]}"
    assert ob["backlog"] == 0, f"{ob['backlog']} messages still stored after the drain"
    assert not any(n for k, n in ob["dropped"].items() if k not in allow_drops), f"drops: {ob['dropped']}"
    fig.allowed_gap += sum(ob["dropped"][k] for k in allow_drops)
    assert max(led.by_seq) < ob["seq_next"], "a seq beyond what the outbox issued"
    return led


def _missing(led: Ledger, seq_next: int) -> list[int]:
    if seq_next > 10_000_000:
        return []   # a RAM store counts from the Unix time in ms: not a range to list
    return sorted(set(range(1, seq_next)) - set(led.by_seq))[:20]


def tracebacks(log: Path) -> int:
    text = log.read_text(errors="replace") if log.exists() else ""
    return text.count("Traceback") + text.count("Exception in callback")


def debounce_edges(polls: list[tuple[str, bool | None]], n: int) -> list[tuple[str, str]]:
    """The edges a fault with debounce n must give for this sequence of
    committed polls (ts, condition): n consecutive polls to change, a poll
    that cannot tell (None) leaves the count alone. A restart is not a poll."""
    active, count, out = False, 0, []
    for ts, cond in polls:
        if cond is None:
            continue
        if cond == active:
            count = 0
            continue
        count += 1
        if count >= n:
            active, count = cond, 0
            out.append((ts, "raised" if cond else "cleared"))
    return out


def committed_polls(sub, device: str, field: str, bit: int) -> list[tuple[str, bool | None]]:
    """A device's polls as committed (its delivered telemetry, one per seq, in
    seq order, which is commit order for one device): (ts, is the bit set)."""
    bodies = {b["seq"]: b for b in sub.select("/telemetry", device)}
    polls = []
    for _seq, b in sorted(bodies.items()):
        word = b["values"].get(field)
        polls.append((b["ts"], None if word is None else bool(word & (1 << bit))))
    return polls


def delivered_edges(sub, device: str, code: str) -> list[tuple[str, str]]:
    """A fault's events as delivered, one per seq, in seq order: (ts, state)."""
    events = {b["seq"]: b for b in sub.select("/event", device) if b.get("type") == "fault"}
    return [(b["ts"], b["state"]) for _s, b in sorted(events.items()) if b["code"] == code]


def settle(pred, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return bool(pred())


def tear_down(gw, sim, sub, broker, uplink: Uplink | None = None) -> None:
    """A case's rig, stopped in the order that loses nothing the subscriber
    should still count: the gateway, the simulator, the uplink, then the
    subscriber and the broker."""
    stop_proc(gw)
    stop_proc(sim)
    if uplink is not None:
        uplink.down()
    sub.close()
    broker.stop()
