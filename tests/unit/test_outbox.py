import json
import os
import sqlite3
import stat
import subprocess
import time

import pytest

from gateway.deliver import outbox as outbox_mod
from gateway.deliver.outbox import Message, Outbox, Priority


E, S, T = Priority.EVENT, Priority.STATE, Priority.TELEMETRY


def tel(i, dev="gm-01"):
    return Message(f"site/{dev}/telemetry", {"i": i, "flow_m3h": 1.5}, T)


def ev(i, dev="gm-01"):
    return Message(f"site/{dev}/event", {"i": i, "code": "ERR-3"}, E)


def st(i, dev="gm-01"):
    return Message(f"site/{dev}/state", {"i": i}, S, retain=True)


def body(p):
    return json.loads(p.payload)


def drain(ob, n=1000):
    """Take and ack everything; returns the payload dicts in send order."""
    out = []
    while True:
        batch = ob.next_batch(n)
        if not batch:
            return out
        for p in batch:
            out.append(body(p))
            ob.ack(p.id)


def raw_count(path):
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT count(*) FROM msg").fetchone()[0]
    finally:
        db.close()


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "outbox.db")


def test_put_next_batch_ack_in_order(path):
    ob = Outbox.open(path)
    ob.put([tel(1), ev(2), tel(3)])
    ob.put([tel(4)])
    batch = ob.next_batch(10)
    assert [body(p)["i"] for p in batch] == [1, 2, 3, 4]
    assert [p.seq for p in batch] == [1, 2, 3, 4]
    assert [body(p)["seq"] for p in batch] == [1, 2, 3, 4]
    assert batch[0].payload == b'{"seq":1,"i":1,"flow_m3h":1.5}'  # compact JSON
    assert batch[0].topic == "site/gm-01/telemetry" and batch[0].qos == 1 and batch[0].retain is False
    assert ob.next_batch(10) == []  # all in flight
    for p in batch:
        ob.ack(p.id)
    ob.flush()
    s = ob.stats()
    assert s["backlog_msgs"] == 0 and s["backlog_bytes"] == 0 and s["inflight"] == 0
    ob.close()
    assert raw_count(path) == 0


def test_payload_seq_is_owned_by_the_outbox(path):
    ob = Outbox.open(path)
    ob.put([Message("t", {"seq": 999, "x": "水表"}, E), Message("t", {}, T)])
    a, b = ob.next_batch(10)
    assert body(a) == {"seq": 1, "x": "水表"}
    assert body(b) == {"seq": 2}


def test_bad_input_raises_and_stores_nothing(path):
    ob = Outbox.open(path)
    with pytest.raises(TypeError):
        ob.put([tel(1), Message("t", [1, 2], T)])
    with pytest.raises(ValueError):
        ob.put([Message("t", {"v": float("nan")}, T)])
    with pytest.raises(TypeError):
        ob.put([tel(1)], kv={"k": object()})
    assert ob.stats()["backlog_msgs"] == 0


def test_inflight_window_limits_next_batch(path):
    ob = Outbox.open(path, inflight=3)
    ob.put([tel(i) for i in range(10)])
    assert len(ob.next_batch(100)) == 3
    assert ob.next_batch(100) == []
    b = ob.next_batch  # noqa: F841
    first = ob.stats()["inflight"]
    assert first == 3


def test_seq_persisted_monotonic_and_kept_on_resend(path):
    ob = Outbox.open(path)
    ob.put([tel(i) for i in range(5)])
    sent = ob.next_batch(3)
    assert [p.seq for p in sent] == [1, 2, 3]
    ob.ack(sent[0].id)
    ob.close()  # seq 2 and 3 went out but were never acked

    ob = Outbox.open(path)
    again = ob.next_batch(10)
    # unacked ones come back first with the seq they had; then new numbers
    assert [(body(p)["i"], p.seq) for p in again] == [(1, 2), (2, 3), (3, 4), (4, 5)]
    for p in again:
        ob.ack(p.id)
    ob.close()

    ob = Outbox.open(path)
    ob.put([tel(9)])
    assert [p.seq for p in ob.next_batch(10)] == [6]  # 1..5 never reused


def test_seq_survives_a_process_that_never_closes(path):
    code = (
        "from gateway.deliver.outbox import *\n"
        f"ob = Outbox.open({path!r})\n"
        "ob.put([Message('t', {'i': i}, Priority.TELEMETRY) for i in range(4)])\n"
        "print([p.seq for p in ob.next_batch(2)], flush=True)\n"
        "import os; os._exit(0)\n"  # no close(), no atexit: as a crash
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([os.sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[1, 2]"
    ob = Outbox.open(path)
    assert [p.seq for p in ob.next_batch(10)] == [1, 2, 3, 4]


def test_reserve_seq_for_messages_sent_outside(path):
    ob = Outbox.open(path)
    ob.put([tel(0)])
    (a,) = ob.next_batch(1)
    s1 = ob.reserve_seq()
    ob.put([tel(1)])
    (b,) = ob.next_batch(1)
    assert a.seq < s1 < b.seq
    ob._db.execute("PRAGMA query_only=1")
    s2 = ob.reserve_seq()  # the floor file still makes it safe
    assert s2 == b.seq + 1
    ob._db.execute("PRAGMA query_only=0")
    ob._db.close()  # a crash: no close()
    ob = Outbox.open(path)
    ob.put([tel(2)])
    assert [p.seq for p in ob.next_batch(10)] == [a.seq, b.seq, ob.stats()["seq_next"] - 1]
    assert ob.stats()["seq_next"] - 1 > s2


def test_release_inflight_resends_oldest_first_with_same_seq(path):
    ob = Outbox.open(path)
    ob.put([tel(i) for i in range(6)])
    first = ob.next_batch(4)
    ob.ack(first[1].id)
    ob.release_inflight()
    assert ob.stats()["inflight"] == 0
    again = ob.next_batch(10)
    assert [(body(p)["i"], p.seq) for p in again] == [(0, 1), (2, 3), (3, 4), (4, 5), (5, 6)]


def test_state_is_coalesced_only_while_unsent(path):
    ob = Outbox.open(path)
    ob.put([st(1), st(1, dev="gm-02"), tel(0)])
    ob.put([st(2)])
    ob.put([st(3)])
    s = ob.stats()
    assert s["coalesced"] == 2 and s["backlog_msgs"] == 3
    sent = ob.next_batch(10)
    assert [(p.topic, body(p)["i"]) for p in sent] == [
        ("site/gm-02/state", 1), ("site/gm-01/telemetry", 0), ("site/gm-01/state", 3)]
    assert sent[0].retain is True
    # a sent (seq-bearing) state is not replaced: it may already be at the broker
    ob.put([st(4)])
    assert ob.stats()["coalesced"] == 2
    ob.release_inflight()
    ob.put([st(5)])  # replaces 4 (unsent), not 3 (sent, now pending resend)
    assert ob.stats()["coalesced"] == 3
    again = ob.next_batch(10)
    assert [body(p)["i"] for p in again if p.topic == "site/gm-01/state"] == [3, 5]
    ob.close()
    assert Outbox.open(path).stats()["coalesced"] == 3  # persisted


def test_kv_commits_with_messages(path):
    ob = Outbox.open(path)
    assert ob.kv_get("door-1/cursor") is None
    assert ob.kv_get("door-1/cursor", 0) == 0
    ob.put([ev(1), ev(2)], kv={"door-1/cursor": 17, "door-1/meta": {"fw": "2.1", "n": [1, 2]}})
    ob.put([], kv={"other": "x"})
    ob.close()
    ob = Outbox.open(path)
    assert ob.kv_get("door-1/cursor") == 17
    assert ob.kv_get("door-1/meta") == {"fw": "2.1", "n": [1, 2]}
    assert ob.kv_get("other") == "x"
    assert [b["i"] for b in drain(ob)] == [1, 2]


def test_kv_and_messages_roll_back_together(path):
    ob = Outbox.open(path)
    ob.put([ev(1)], kv={"c": 1})
    # a unique-constraint failure inside the transaction must undo the messages too
    ob._db.execute("CREATE TRIGGER boom BEFORE INSERT ON kv WHEN NEW.key = 'bad' BEGIN SELECT RAISE(ABORT, 'no'); END")
    with pytest.raises(sqlite3.IntegrityError):
        ob.put([ev(2), ev(3)], kv={"c": 2, "bad": 0})
    assert ob.kv_get("c") == 1
    assert ob.stats()["backlog_msgs"] == 1
    assert [b["i"] for b in drain(ob)] == [1]


def test_byte_budget_drops_telemetry_then_state_then_events(path):
    one = len(json.dumps(body_of(tel(0)), separators=(",", ":"))) + len("site/gm-01/telemetry")
    ob = Outbox.open(path, max_bytes=one * 10)
    ob.put([ev(0), st(0), ev(1)] + [tel(i) for i in range(20)])
    s = ob.stats()
    assert s["backlog_bytes"] <= one * 10
    assert s["dropped"]["event"] == 0 and s["dropped"]["state"] == 0
    assert s["dropped"]["telemetry"] > 0
    kept = drain(ob)
    assert [b["i"] for b in kept if "code" in b] == [0, 1]  # both events kept
    ob.close()

    # only events and state left and still over budget: state goes, then the oldest events
    ob = Outbox.open(path + "2", max_bytes=100)
    ob.put([st(0)] + [ev(i) for i in range(10)])
    s = ob.stats()
    assert s["dropped"]["state"] == 1 and s["dropped"]["event"] > 0
    assert s["backlog_bytes"] <= 100
    left = [b["i"] for b in drain(ob)]
    assert left == list(range(10))[-len(left):]  # newest kept
    ob.close()
    assert Outbox.open(path + "2").stats()["dropped"] == s["dropped"]  # persisted


def body_of(m):
    return m.payload


def test_budget_never_drops_in_flight_messages(path):
    ob = Outbox.open(path, max_bytes=400)
    ob.put([tel(i) for i in range(5)])
    sent = ob.next_batch(5)
    ob.put([tel(i) for i in range(5, 15)])
    for p in sent:
        ob.ack(p.id)
    ob.flush()
    assert ob.stats()["dropped"]["telemetry"] > 0


def test_event_kept_while_telemetry_present_even_when_old(path):
    ob = Outbox.open(path, max_age_s=0.3)
    ob.put([ev(0), tel(0)])
    time.sleep(0.4)
    ob.put([tel(1)])  # old telemetry expires; the old event does not while telemetry remains
    s = ob.stats()
    assert s["dropped"] == {"telemetry": 1, "state": 0, "event": 0}
    assert [b["i"] for b in drain(ob)] == [0, 1]
    # events alone past their age do expire
    ob.put([ev(5)])
    time.sleep(0.4)
    ob.put([ev(6)])
    assert ob.stats()["dropped"]["event"] == 1
    assert [b["i"] for b in drain(ob)] == [6]


def test_wall_clock_jumps_purge_nothing(path, monkeypatch):
    ob = Outbox.open(path, max_age_s=3600)
    ob.put([tel(0), ev(0)])
    seqs = [p.seq for p in ob.next_batch(1)]
    real = time.time
    for jump in (-86400.0, 365 * 86400.0):
        monkeypatch.setattr(time, "time", lambda j=jump: real() + j)
        ob._budget.last_age_check = float("-inf")  # force the check now
        ob.put([tel(1)])
        seqs += [p.seq for p in ob.next_batch(1)]
        assert ob.stats()["dropped"] == {"telemetry": 0, "state": 0, "event": 0}
        assert ob.stats()["oldest_age_s"] < 60
    ob.close()
    ob = Outbox.open(path, max_age_s=3600)
    seqs += [p.seq for p in ob.next_batch(10)]
    monkeypatch.setattr(time, "time", real)
    assert ob.stats()["dropped"]["telemetry"] == 0
    new = [s for s in seqs[2:] if s > 2]
    assert seqs[:2] == [1, 2] and new == sorted(new)


def test_downtime_does_not_count_toward_age(path):
    ob = Outbox.open(path, max_age_s=0.5)
    ob.put([tel(0)])
    ob.close()
    time.sleep(0.7)  # powered off longer than max_age
    ob = Outbox.open(path, max_age_s=0.5)
    assert ob.stats()["oldest_age_s"] < 0.3
    ob.put([tel(1)])
    assert [b["i"] for b in drain(ob)] == [0, 1]
    assert ob.stats()["dropped"]["telemetry"] == 0


def test_store_clock_is_persisted_across_runs(path):
    ob = Outbox.open(path)
    ob.put([tel(0)])
    time.sleep(0.3)
    ob.close()
    ob = Outbox.open(path)
    time.sleep(0.2)
    assert 0.45 <= ob.stats()["oldest_age_s"] < 2.0


def test_file_modes_and_sync_modes(path):
    ob = Outbox.open(path)
    ob.put([tel(0)])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert ob._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert ob._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    ob.close()
    ob = Outbox.open(path, synchronous="normal")
    assert ob._db.execute("PRAGMA synchronous").fetchone()[0] == 1
    with pytest.raises(ValueError):
        Outbox.open(path + "x", synchronous="OFF")


def test_normal_mode_still_syncs_seq_before_sending(path):
    # Under NORMAL a power cut may roll back recent commits; the commit that
    # records seqs must not be one of them, or a seq would be handed out twice.
    ob = Outbox.open(path, synchronous="NORMAL")
    trace = []
    ob._db.set_trace_callback(trace.append)
    ob.put([tel(0), tel(1)])
    put_part = list(trace)
    trace.clear()
    ob.next_batch(10)
    ob._db.set_trace_callback(None)
    assert not any("synchronous" in t for t in put_part)
    sync_at = [i for i, t in enumerate(trace) if t.upper().startswith("PRAGMA SYNCHRONOUS")]
    assert [trace[i].upper() for i in sync_at] == ["PRAGMA SYNCHRONOUS=FULL", "PRAGMA SYNCHRONOUS=NORMAL"]
    seq_update = next(i for i, t in enumerate(trace) if t.startswith("UPDATE msg SET seq"))
    commit = next(i for i, t in enumerate(trace) if i > seq_update and t == "COMMIT")
    assert sync_at[0] < seq_update < commit < sync_at[1]
    assert ob._db.execute("PRAGMA synchronous").fetchone()[0] == 1


def test_acks_are_batched_but_bounded(path):
    ob = Outbox.open(path)
    ob.put([tel(i) for i in range(60)])
    sent = ob.next_batch(60)
    for p in sent[:10]:
        ob.ack(p.id)
    assert raw_count(path) == 60  # deferred
    for p in sent[10:50]:
        ob.ack(p.id)
    assert raw_count(path) == 10  # 50 acks flush
    ob.ack(sent[50].id)
    time.sleep(outbox_mod.ACK_FLUSH_S + 0.05)
    ob.next_batch(1)  # any later call flushes an old ack
    assert raw_count(path) == 9
    ob.ack(sent[51].id)
    ob.close()  # close flushes
    assert raw_count(path) == 8


def test_pending_acks_are_deleted_in_the_next_puts_transaction(path):
    """At a few polls a second each put is its own commit: the acked rows
    ride with it instead of costing a commit (and an SD-card sync) of their own."""
    ob = Outbox.open(path)
    ob.put([tel(0), tel(1)])
    sent = ob.next_batch(2)
    for p in sent:
        ob.ack(p.id)
    assert raw_count(path) == 2          # deferred: fewer than ACK_FLUSH_COUNT, not yet old
    trace: list[str] = []
    ob._db.set_trace_callback(trace.append)
    ob.put([tel(2)])
    ob._db.set_trace_callback(None)
    assert raw_count(path) == 1
    assert trace.count("COMMIT") == 1
    assert [b["i"] for b in drain(ob)] == [2]
    ob.close()


def test_a_late_ack_never_deletes_a_newer_row(path):
    ob = Outbox.open(path)
    ob.put([tel(0)])
    (p,) = ob.next_batch(1)
    ob.ack(p.id)
    ob.flush()
    ob.put([tel(1)])
    ob.ack(p.id)  # duplicate PUBACK
    ob.flush()
    assert [b["i"] for b in drain(ob)] == [1]


GARBAGE = b"this is not sqlite\x00" * 300


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign"])
def test_corrupt_store_is_quarantined_and_fresh_store_works(path, damage):
    if damage == "garbage":
        with open(path, "wb") as f:
            f.write(GARBAGE)
        with open(path + "-wal", "wb") as f:
            f.write(b"junk")
    elif damage == "truncated":
        ob = Outbox.open(path)
        for k in range(20):
            ob.put([tel(i) for i in range(100 * k, 100 * k + 100)])
        assert [p.seq for p in ob.next_batch(3)] == [1, 2, 3]
        ob.close()
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.truncate(size // 2)
    else:
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE users (name TEXT)")
        db.commit()
        db.close()
    before = open(path, "rb").read()
    ob = Outbox.open(path)
    assert ob.quarantined, "nothing was quarantined"
    names = [os.path.basename(q) for q in ob.quarantined]
    assert names[0].startswith("outbox.db.corrupt-")
    assert open(ob.quarantined[0], "rb").read() == before  # moved aside, intact
    if damage == "garbage":
        assert any(n.startswith("outbox.db-wal.corrupt-") for n in names)
    assert ob.stats()["quarantined"] == ob.quarantined
    ob.put([ev(1)], kv={"c": 1})
    (p,) = ob.next_batch(1)
    # a fresh store must not reuse seqs the lost one may have sent
    assert p.seq > 3
    ob.ack(p.id)
    ob.close()
    ob = Outbox.open(path)
    assert ob.quarantined == [] and ob.kv_get("c") == 1


# ---------------------------------------------------------------- disk full


class SmallFS:
    """A real filesystem that runs out of space: a tmpfs of a few hundred kB."""

    def __init__(self, where):
        self.dir = str(where)
        os.makedirs(self.dir, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=384k,mode=700", "tmpfs", self.dir],
                           capture_output=True)
        self.ok = r.returncode == 0

    def grow(self):
        subprocess.run(["mount", "-o", "remount,size=16m", self.dir], check=True)

    def squeeze(self):
        """Take whatever space is left, so that no write of any size fits."""
        fd = os.open(os.path.join(self.dir, "ballast"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            while True:
                os.write(fd, b"\0" * 1024)
        except OSError:
            pass
        finally:
            os.close(fd)

    def close(self):
        if self.ok:
            subprocess.run(["umount", "-l", self.dir], capture_output=True)


@pytest.fixture(params=["tmpfs", "max_page_count"])
def full_store(request, tmp_path):
    """(outbox, squeeze, make_space) on a store that fills up for real;
    squeeze() takes the last free bytes so the outcome does not depend on
    how much happened to be left."""
    if request.param == "tmpfs":
        fs = SmallFS(tmp_path / "fs")
        if not fs.ok:
            pytest.skip("cannot mount a tmpfs here (needs root); max_page_count variant covers it")
        ob = Outbox.open(os.path.join(fs.dir, "outbox.db"))
        yield ob, fs.squeeze, fs.grow
        ob.close()
        fs.close()
    else:
        ob = Outbox.open(str(tmp_path / "outbox.db"))
        pages = ob._db.execute("PRAGMA page_count").fetchone()[0]
        ob._db.execute(f"PRAGMA max_page_count={pages + 40}")  # SQLITE_FULL for real, a few pages on

        def squeeze():
            n = ob._db.execute("PRAGMA page_count").fetchone()[0]
            ob._db.execute(f"PRAGMA max_page_count={n}")

        yield ob, squeeze, lambda: ob._db.execute("PRAGMA max_page_count=1073741823")
        ob.close()


PAD = "x" * 5000  # bigger than a page: every row needs a fresh page, so "full" is deterministic


def fill(ob, limit=5000):
    """Put polls until the store is full; returns (events put, telemetry put)."""
    i = 0
    while ob.stats()["health"] == "ok" and i < limit:
        ob.put([Message("site/gm-01/telemetry", {"i": i, "pad": PAD}, T),
                Message("site/gm-01/event", {"i": i, "code": "ERR-3", "pad": PAD}, E)])
        i += 1
    return i


def test_disk_full_keeps_events_in_memory_and_recovers(full_store):
    ob, squeeze, make_space = full_store
    n = fill(ob)
    squeeze()
    s = ob.stats()
    assert s["health"] == "disk_full", s
    assert "full" in s["health_detail"] or "I/O" in s["health_detail"]
    assert s["dropped"] == {"telemetry": 1, "state": 0, "event": 0}
    assert s["memory_held"] == 1

    # more polls while full: no exception, events held, the rest dropped and counted
    ob.put([Message("site/gm-01/event", {"i": "held", "pad": PAD}, E),
            Message("site/gm-01/state", {"i": 0, "pad": PAD}, S),
            Message("site/gm-01/telemetry", {"i": "lost", "pad": PAD}, T)], kv={"door-1/cursor": 99})
    s = ob.stats()
    assert s["health"] == "disk_full"
    assert s["memory_held"] == 2
    assert s["dropped"] == {"telemetry": 2, "state": 1, "event": 0}
    assert ob.kv_get("door-1/cursor") == 99  # the running process sees its own cursor

    # sending goes on while full: the held events go out under unique, rising seqs
    sent = ob.next_batch(100)
    held = [p for p in sent if p.id < 0]
    assert [body(p)["i"] for p in held] == [n - 1, "held"]
    seqs = [p.seq for p in sent]
    assert seqs == sorted(set(seqs))
    for p in sent:
        if p is not held[1]:
            ob.ack(p.id)  # reached the broker while the disk was full
    ob.release_inflight()  # ... and the link dropped before held[1] was acked

    make_space()
    assert ob.retry() is True
    s = ob.stats()
    assert s["health"] == "ok" and s["memory_held"] == 0
    assert ob.kv_get("door-1/cursor") == 99
    got = sent[:]
    while True:
        batch = ob.next_batch(100)
        if not batch:
            break
        got += batch
        for p in batch:
            ob.ack(p.id)
    ob.flush()
    assert ob.stats()["backlog_msgs"] == 0
    events = [body(p)["i"] for p in got if p.topic.endswith("event")]
    tels = [body(p)["i"] for p in got if p.topic.endswith("telemetry")]
    # nothing lost but the telemetry counted as dropped; the one resend is the
    # event that was in flight, under its old seq
    assert sorted(set(events), key=str) == sorted(list(range(n)) + ["held"], key=str)
    assert len(events) == n + 2 and events.count("held") == 2
    assert sorted(tels) == list(range(n - 1))
    by_seq = {}
    for p in got:
        by_seq.setdefault(p.seq, set()).add(p.payload)
    assert all(len(v) == 1 for v in by_seq.values())  # a seq always names the same message
    ob.put([ev("after")])
    (p,) = ob.next_batch(1)
    assert p.seq == max(by_seq) + 1


def test_disk_full_put_retries_on_its_own(full_store):
    ob, squeeze, make_space = full_store
    n = fill(ob)
    squeeze()
    assert ob.stats()["health"] == "disk_full"
    make_space()
    ob.put([ev("x")], kv={"k": 1})
    s = ob.stats()
    assert s["health"] == "ok" and s["memory_held"] == 0
    assert ob.kv_get("k") == 1
    events = [b["i"] for b in drain(ob) if "code" in b]
    assert events == list(range(n)) + ["x"]


def test_memory_hold_is_bounded(tmp_path):
    ob = Outbox.open(str(tmp_path / "o.db"), memory_events=5)
    ob._db.execute("PRAGMA query_only=1")
    ob.put([ev(i) for i in range(8)])
    s = ob.stats()
    assert s["health"] == "read_only"
    assert s["memory_held"] == 5 and s["dropped"]["event"] == 3
    assert [body(p)["i"] for p in ob.next_batch(100)] == [3, 4, 5, 6, 7]  # newest kept
    ob._db.execute("PRAGMA query_only=0")
    assert ob.retry()
    ob.close()
    assert Outbox.open(str(tmp_path / "o.db")).stats()["dropped"]["event"] == 3


def test_read_only_store_holds_events_and_recovers(path):
    ob = Outbox.open(path)
    ob.put([ev(0), tel(0)])
    first = ob.next_batch(1)
    ob.ack(first[0].id)
    # SQLite refuses every write, as on a filesystem remounted read-only
    ob._db.execute("PRAGMA query_only=1")
    ob.put([ev(1), tel(1), st(1)], kv={"c": 5})
    s = ob.stats()
    assert s["health"] == "read_only" and "readonly" in s["health_detail"]
    assert s["dropped"] == {"telemetry": 1, "state": 1, "event": 0}
    assert ob.retry() is False
    sent = ob.next_batch(10)
    # the stored telemetry already has no seq and cannot get one persisted: it waits;
    # the held event goes out under a seq reserved in the floor file
    assert [(body(p)["i"], p.id < 0) for p in sent] == [(1, True)]
    assert sent[0].seq > first[0].seq
    ob.release_inflight()
    ob._db.execute("PRAGMA query_only=0")
    assert ob.retry() is True
    assert ob.stats()["health"] == "ok"
    rest = ob.next_batch(10)
    assert [body(p)["i"] for p in rest] == [0, 1]
    assert rest[1].seq == sent[0].seq  # the held event kept its seq when written back
    assert rest[0].seq > rest[1].seq
    ob.close()
    ob = Outbox.open(path)
    assert ob.kv_get("c") == 5
    assert ob.stats()["dropped"] == {"telemetry": 1, "state": 1, "event": 0}


def test_crash_while_holding_events_never_reuses_their_seq(path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (
        "from gateway.deliver.outbox import *\n"
        f"ob = Outbox.open({path!r})\n"
        "ob.put([Message('t', {'i': 0}, Priority.EVENT)])\n"
        "print(ob.next_batch(1)[0].seq)\n"
        "ob._db.execute('PRAGMA query_only=1')\n"
        "ob.put([Message('t', {'i': i}, Priority.EVENT) for i in range(1, 4)])\n"
        "print(*[p.seq for p in ob.next_batch(10)], flush=True)\n"
        "import os; os._exit(0)\n"
    )
    out = subprocess.run([os.sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    used = [int(x) for x in out.stdout.split()]
    assert used == [1, 2, 3, 4]
    ob = Outbox.open(path)
    ob.put([ev(9)])
    seqs = [p.seq for p in ob.next_batch(10)]
    assert seqs[0] == 1  # the stored one is resent as itself
    assert min(seqs[1:]) > max(used)  # memory-only numbers are never handed out again


def test_read_only_filesystem_at_open_is_not_quarantined(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    dst.mkdir()
    ob = Outbox.open(str(src / "outbox.db"))
    ob.put([ev(0)])
    ob.close()
    if subprocess.run(["mount", "--bind", str(src), str(dst)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(dst)], check=True)
        with pytest.raises(sqlite3.OperationalError):
            Outbox.open(str(dst / "outbox.db"))
        assert sorted(os.listdir(src)) == ["outbox.db", "outbox.db.reserve", "outbox.db.seq"]
    finally:
        subprocess.run(["umount", "-l", str(dst)], capture_output=True)
    assert [b["i"] for b in drain(Outbox.open(str(src / "outbox.db")))] == [0]


# -- seqs given in the storing commit (issue 13: one synced commit a poll, not two)

def commits(ob, fn):
    trace = []
    ob._db.set_trace_callback(trace.append)
    try:
        out = fn()
    finally:
        ob._db.set_trace_callback(None)
    return out, trace


def test_put_with_take_gives_seqs_in_the_storing_commit(path):
    ob = Outbox.open(path)
    got, trace = commits(ob, lambda: ob.put([tel(1), ev(2)], take=10))
    assert [(body(p)["i"], p.seq, body(p)["seq"]) for p in got] == [(1, 1, 1), (2, 2, 2)]
    assert trace.count("COMMIT") == 1
    assert ob.stats()["inflight"] == 2 and ob.next_batch(10) == []
    for p in got:
        ob.ack(p.id)
    ob.put([tel(3)])
    assert [p.seq for p in ob.next_batch(10)] == [3]
    ob.close()
    ob = Outbox.open(path)
    assert ob.stats()["seq_next"] == 4


def test_put_with_take_waits_behind_what_is_stored_unsent(path):
    ob = Outbox.open(path)
    ob.put([tel(1)])
    assert ob.put([tel(2)], take=10) == []
    assert [(body(p)["i"], p.seq) for p in ob.next_batch(10)] == [(1, 1), (2, 2)]


def test_put_with_take_waits_behind_resends(path):
    ob = Outbox.open(path)
    sent = ob.put([tel(1), tel(2)], take=10)
    ob.release_inflight()   # a disconnect: both go again first, with their seqs
    assert ob.put([tel(3)], take=10) == []
    assert [(body(p)["i"], p.seq) for p in ob.next_batch(10)] == [(1, 1), (2, 2), (3, 3)]
    assert [p.seq for p in sent] == [1, 2]


def test_put_with_take_keeps_the_window_and_the_order(path):
    ob = Outbox.open(path, inflight=3)
    got = ob.put([tel(i) for i in range(5)], take=10)
    assert [p.seq for p in got] == [1, 2, 3]
    assert ob.next_batch(10) == []
    ob.ack(got[0].id)
    assert [(body(p)["i"], p.seq) for p in ob.next_batch(10)] == [(3, 4)]
    assert ob.put([tel(9)], take=1) == []   # 4 is still unsent: 9 waits behind it


def test_put_with_take_coalesces_state_first(path):
    ob = Outbox.open(path)
    got = ob.put([st(1), st(2), tel(3)], take=10)
    assert [(body(p)["i"], p.seq) for p in got] == [(2, 1), (3, 2)]
    assert ob.stats()["coalesced"] == 1


def test_put_with_take_under_normal_syncs_its_commit(path):
    ob = Outbox.open(path, synchronous="NORMAL")
    _, trace = commits(ob, lambda: ob.put([tel(1)]))
    assert not any("synchronous" in t.lower() for t in trace)
    got, trace = commits(ob, lambda: ob.put([tel(2)], take=10))
    assert got == []   # 1 waits unsent: nothing taken, nothing forced
    assert not any("synchronous" in t.lower() for t in trace)
    ob.next_batch(10)
    got, trace = commits(ob, lambda: ob.put([tel(3)], take=10))
    assert [p.seq for p in got] == [3]
    sync_at = [i for i, t in enumerate(trace) if t.upper().startswith("PRAGMA SYNCHRONOUS")]
    assert [trace[i].upper() for i in sync_at] == ["PRAGMA SYNCHRONOUS=FULL", "PRAGMA SYNCHRONOUS=NORMAL"]
    seq_update = next(i for i, t in enumerate(trace) if t.startswith("UPDATE msg SET seq"))
    commit = next(i for i, t in enumerate(trace) if i > seq_update and t == "COMMIT")
    assert sync_at[0] < seq_update < commit < sync_at[1]


def test_put_with_take_gives_nothing_while_the_disk_is_full(full_store):
    """Held events go out through next_batch, which orders them with what is
    stored; a put that cannot be stored takes nothing."""
    ob, squeeze, make_space = full_store
    fill(ob)
    squeeze()
    assert ob.stats()["health"] == "disk_full"
    assert ob.put([Message("site/gm-01/event", {"i": "held", "pad": PAD}, E)], take=100) == []
    sent = ob.next_batch(1000)
    assert "held" in [body(p)["i"] for p in sent]
    assert [p.seq for p in sent] == sorted({p.seq for p in sent})


def test_nothing_waits_says_when_a_batch_would_be_empty(path):
    ob = Outbox.open(path)
    assert ob.nothing_waits() and ob.next_batch(10) == []
    ob.put([tel(0), tel(1)])
    assert not ob.nothing_waits()
    sent = ob.next_batch(1)
    assert not ob.nothing_waits()          # one still waits
    sent += ob.next_batch(1)
    assert ob.nothing_waits() and ob.next_batch(10) == []
    ob.ack(sent[0].id)
    assert ob.nothing_waits()
    ob.release_inflight()                  # a disconnect: the unacked one waits again
    assert not ob.nothing_waits()
    assert [b["i"] for b in drain(ob)] == [1]
    assert ob.nothing_waits()
    ob.close()
