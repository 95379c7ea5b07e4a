"""The store's thread (gateway/deliver/writer.py): the event loop hands work
over and never touches the disk; what it hands over commits in groups, is
offered only once committed, and keeps the outbox's guarantees."""
import asyncio
import json
import logging
import os
import sqlite3
import subprocess
import threading

import pytest

from gateway.deliver.commit import GroupCommit
from gateway.deliver.outbox import Message, Outbox, Priority
from gateway.deliver import writer
from gateway.deliver.writer import StoreWriter
from gateway.site.state import StateStore

E, T = Priority.EVENT, Priority.TELEMETRY


def tel(i):
    return Message("site/fm-01/telemetry", {"i": i}, T)


def ev(i):
    return Message("site/fm-01/event", {"i": i, "code": "ERR-3"}, E)


def run(coro):
    return asyncio.run(coro)


def listen(writer):
    """An event set by every commit that stores messages (register it before the put)."""
    done = asyncio.Event()
    writer.on_commit(done.set)
    return done


def traced_writer(path: str, **kw) -> tuple[StoreWriter, list[str]]:
    """A writer whose connection records every statement it runs (the
    trace is set on the store's thread, which owns the connection)."""
    seen: list[str] = []

    def opener():
        ob = Outbox.open(path, **kw)
        ob._db.set_trace_callback(seen.append)
        return ob
    return StoreWriter(opener, asyncio.get_running_loop()), seen


async def committed(done):
    await asyncio.wait_for(done.wait(), 5)
    done.clear()


def test_puts_commit_together_and_are_offered_once_committed(tmp_path):
    path = str(tmp_path / "outbox.db")

    async def main():
        w = StoreWriter(lambda: Outbox.open(path), asyncio.get_running_loop())
        done = listen(w)
        # three buses' polls in the same moment: one transaction
        w.put([tel(1), ev(2)])
        w.put([tel(3)], kv={"interp/fm-01": {"n": 1}})
        w.put([tel(4)])
        await committed(done)
        assert w.commits == 1
        # committed: another connection sees every row and the kv
        db = sqlite3.connect(path)
        assert db.execute("SELECT count(*) FROM msg").fetchone()[0] == 4
        assert json.loads(db.execute("SELECT value FROM kv WHERE key='interp/fm-01'").fetchone()[0]) == {"n": 1}
        db.close()
        batch = await w.next_batch(10)
        assert [json.loads(p.payload)["i"] for p in batch] == [1, 2, 3, 4]
        assert [p.seq for p in batch] == [1, 2, 3, 4]
        for p in batch:
            w.ack(p.id)
        w.flush()
        assert await w.next_batch(10) == []   # acks were handed over before this batch
        return await w.aclose()

    last = run(main())
    assert last["backlog_msgs"] == 0
    assert Outbox.open(path).stats()["backlog_msgs"] == 0


def test_a_batch_never_waits_for_the_window_and_offers_only_what_is_committed(tmp_path):
    async def main():
        w = StoreWriter(lambda: Outbox.open(str(tmp_path / "o.db")), asyncio.get_running_loop())
        done = listen(w)
        w.put([ev(1)])
        first = await w.next_batch(10)    # answered at once, before the put's window ends
        await committed(done)
        batch = first + await w.next_batch(10)
        assert [json.loads(p.payload)["i"] for p in batch] == [1]
        w.close()

    run(main())


def test_the_loop_never_touches_the_database_or_syncs(tmp_path, monkeypatch):
    """Every fsync/fdatasync made from Python (state.json, the seq floor, the
    ballast) runs on the store's thread, and the SQLite connection belongs to
    that thread: the loop could not use it if it tried."""
    syncs: list[int] = []
    for name in ("fsync", "fdatasync"):
        real = getattr(os, name)

        def spy(fd, real=real):
            syncs.append(threading.get_ident())
            return real(fd)
        monkeypatch.setattr(os, name, spy)
    state = StateStore(str(tmp_path / "state.json"))

    async def main():
        loop_thread = threading.get_ident()
        w = StoreWriter(lambda: Outbox.open(str(tmp_path / "o.db")), asyncio.get_running_loop(), state)
        done = listen(w)
        w.put([tel(1), ev(2)], kv={"door/d1": {"last_index": 7}})
        w.write_state("devices", {"fm-01": {"values": {"flow_m3h": 1.5}}})
        await committed(done)
        batch = await w.next_batch(10)
        seq = await w.reserve_seq_async()
        assert seq == batch[-1].seq + 1
        for p in batch:
            w.ack(p.id)
        w.release_inflight()
        w.retry()
        with pytest.raises(sqlite3.ProgrammingError):
            w._ob._db.execute("SELECT 1")  # created in, and owned by, the store's thread
        await w.aclose()
        assert syncs, "nothing was synced at all"
        assert loop_thread not in syncs

    run(main())
    assert StateStore(str(tmp_path / "state.json")).get("devices", "fm-01") == {"values": {"flow_m3h": 1.5}}


def test_bad_input_raises_in_the_caller_and_nothing_is_handed_over(tmp_path):
    async def main():
        w = StoreWriter(lambda: Outbox.open(str(tmp_path / "o.db")), asyncio.get_running_loop())
        with pytest.raises(TypeError):
            w.put([tel(1), Message("t", [1, 2], T)])
        with pytest.raises(ValueError):
            w.put([Message("t", {"v": float("nan")}, T)])
        with pytest.raises(TypeError):
            w.put([tel(1)], kv={"k": object()})
        assert await w.next_batch(10) == []
        w.close()

    run(main())


def test_kv_reads_what_was_stored_and_what_was_just_handed_over(tmp_path):
    path = str(tmp_path / "o.db")
    ob = Outbox.open(path)
    ob.put([], kv={"door/d1": {"last_index": 5}, "interp/fm-01": {"active": {}}})
    ob.close()

    async def main():
        w = StoreWriter(lambda: Outbox.open(path), asyncio.get_running_loop())
        assert w.kv_get("door/d1") == {"last_index": 5}
        assert w.kv_get("nope", 0) == 0
        w.put([ev(1)], kv={"door/d1": {"last_index": 6}})
        assert w.kv_get("door/d1") == {"last_index": 6}   # before the commit
        w.close()

    run(main())
    assert Outbox.open(path).kv_get("door/d1") == {"last_index": 6}


def test_close_commits_what_was_handed_over(tmp_path):
    path = str(tmp_path / "o.db")
    state = StateStore(str(tmp_path / "state.json"))

    async def main():
        w = StoreWriter(lambda: Outbox.open(path), asyncio.get_running_loop(), state)
        w.put([ev(i) for i in range(3)], kv={"c": 3})
        w.write_state("devices", {"fm-01": {"n": 1}})
        last = w.close()       # no wait for the window
        assert last["backlog_msgs"] == 3
        w.put([ev(9)])         # after close: refused, never half-stored
        assert await w.next_batch(10) == []

    run(main())
    ob = Outbox.open(path)
    assert ob.kv_get("c") == 3 and ob.stats()["backlog_msgs"] == 3
    assert StateStore(str(tmp_path / "state.json")).get("devices", "fm-01") == {"n": 1}


def test_group_commit_wakes_the_publisher_after_the_commit(tmp_path):
    path = str(tmp_path / "o.db")

    async def main():
        w = StoreWriter(lambda: Outbox.open(path), asyncio.get_running_loop())
        woken = asyncio.Event()
        seen = []

        def after():
            db = sqlite3.connect(path)
            seen.append(db.execute("SELECT count(*) FROM msg").fetchone()[0])
            db.close()
            woken.set()
        gc = GroupCommit(w, after)
        gc.add([tel(1)], {"interp/fm-01": {"x": 1}})
        gc.flush()
        await asyncio.wait_for(woken.wait(), 5)
        assert seen == [1] and gc.commits == 1
        w.close()

    run(main())


def test_state_json_is_written_once_per_flush_and_only_when_changed(tmp_path):
    state = StateStore(str(tmp_path / "state.json"))

    async def main():
        w = StoreWriter(lambda: Outbox.open(str(tmp_path / "o.db")), asyncio.get_running_loop(), state)
        docs = {f"fm-{i:03d}": {"values": {"v": i}} for i in range(200)}
        w.write_state("devices", docs)
        w.write_state("devices", docs)        # handed over before the first was written: replaces it
        await w.next_batch(1)                  # a round trip through the thread
        first = state.writes
        assert first == 1
        w.write_state("devices", {k: dict(v) for k, v in docs.items()})
        await w.next_batch(1)
        assert state.writes == first          # unchanged: not written
        w.close()

    run(main())


def test_a_state_file_that_cannot_be_written_is_one_warning(tmp_path, caplog):
    where = tmp_path / "fs"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        state = StateStore(str(where / "state.json"))
        fd = os.open(where / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)

        async def main():
            w = StoreWriter(lambda: Outbox.open(str(tmp_path / "o.db")), asyncio.get_running_loop(), state)
            for i in range(5):
                w.write_state("devices", {"fm-01": {"n": i, "pad": "x" * 2000}})
                await w.next_batch(1)
            os.unlink(where / "filler")
            w.write_state("devices", {"fm-01": {"n": 99}})
            await w.next_batch(1)
            w.close()

        with caplog.at_level(logging.INFO, logger="gateway.deliver.writer"):
            run(main())
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "state.json not written" in warnings[0].getMessage()
        assert not any(r.exc_info for r in caplog.records)   # no traceback
        assert any("written again" in r.getMessage() for r in caplog.records)
        assert StateStore(str(where / "state.json")).get("devices", "fm-01") == {"n": 99}
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_the_waiting_seq_is_recorded_and_never_reused(tmp_path):
    """reserve_seq() (the status, command replies) still waits on the loop:
    for one synced commit, served ahead of queued work. The number is recorded
    before it is returned, so a restart never hands it out again."""
    path = str(tmp_path / "o.db")

    async def main():
        w = StoreWriter(lambda: Outbox.open(path), asyncio.get_running_loop())
        done = listen(w)
        w.put([ev(1)])
        await committed(done)
        (p,) = await w.next_batch(10)
        s1 = w.reserve_seq()
        s2 = await w.reserve_seq_async()
        assert p.seq < s1 < s2
        return s2   # and no close, as after a crash

    s2 = run(main())
    ob = Outbox.open(path)
    ob.put([ev(2)])
    assert ob.next_batch(10)[-1].seq > s2


def test_a_stuck_store_thread_bounds_what_waits_in_memory(tmp_path, monkeypatch):
    """A card that takes for ever to sync: what waits for the thread is
    bounded. Readings beyond the bound are dropped and counted; events are
    never dropped for it."""
    import gateway.deliver.writer as writer_mod

    monkeypatch.setattr(writer_mod, "MAX_QUEUED", 10)
    gate = threading.Event()

    class Stuck(StoreWriter):
        def _round(self, ops):      # the thread hangs in its next round, as in a sync
            gate.wait(10)
            return super()._round(ops)

    async def main():
        w = Stuck(lambda: Outbox.open(str(tmp_path / "o.db")), asyncio.get_running_loop())
        for i in range(20):
            w.put([tel(i), ev(i)])
        assert w.stats()["dropped"]["telemetry"] >= 10
        assert w.stats()["dropped"]["event"] == 0
        gate.set()
        last = await w.aclose()
        return last

    last = run(main())
    ob = Outbox.open(str(tmp_path / "o.db"))
    events = [json.loads(p.payload)["i"] for p in ob.next_batch(100) if p.topic.endswith("/event")]
    assert events == list(range(20))
    assert last["backlog_msgs"] == ob.stats()["backlog_msgs"] <= 30


# -- a waiting batch (issue 13): the next put's messages come with their seqs
#    from the storing commit, with no second commit and no second hand-over

def test_a_waiting_batch_is_answered_by_the_next_put(tmp_path):
    path = str(tmp_path / "outbox.db")

    async def main():
        w = StoreWriter(lambda: Outbox.open(path), asyncio.get_running_loop())
        fut = w.next_batch(10, wait=True)
        await asyncio.sleep(0.2)
        assert not fut.done()                 # nothing to send: it waits
        w.put([tel(1), ev(2)])
        batch = await asyncio.wait_for(fut, 5)
        assert [(json.loads(p.payload)["i"], p.seq) for p in batch] == [(1, 1), (2, 2)]
        assert (await w.next_batch(10)) == []    # in flight: not offered twice
        for p in batch:
            w.ack(p.id)
        await w.aclose()
        db = sqlite3.connect(path)
        # seqs were committed with the rows: a restart goes on after them
        assert db.execute("SELECT seq_next FROM counters").fetchone()[0] == 3

    run(main())


def test_a_waiting_batch_is_answered_empty_by_a_release_unpark_or_close(tmp_path):
    path = str(tmp_path / "outbox.db")

    async def main():
        w = StoreWriter(lambda: Outbox.open(path), asyncio.get_running_loop())
        for answer in (w.release_inflight, w.unpark, w.aclose):
            fut = w.next_batch(10, wait=True)
            await asyncio.sleep(0.1)
            assert not fut.done()              # nothing to send: it waits
            if asyncio.iscoroutine(done := answer()):
                await done
            assert await asyncio.wait_for(fut, 5) == [], answer

    run(main())


def test_a_waiting_batch_comes_in_the_storing_commit(tmp_path):
    """One COMMIT for the put and its seqs (two before: the put's, then the
    batch's seq assignment)."""
    path = str(tmp_path / "outbox.db")

    async def main():
        w, seen = traced_writer(path)
        fut = w.next_batch(10, wait=True)
        await asyncio.sleep(0.1)
        before = len(seen)
        w.put([tel(1)])
        batch = await asyncio.wait_for(fut, 5)
        assert [p.seq for p in batch] == [1]
        await asyncio.sleep(0.1)
        assert seen[before:].count("COMMIT") == 1, seen[before:]
        await w.aclose()

    run(main())


def test_an_event_is_stored_at_once_not_at_the_end_of_the_window(tmp_path, monkeypatch):
    """Readings wait for the group commit's window; an alarm does not (the
    fault-to-event latency is the poll's own, plus one commit)."""
    monkeypatch.setattr(writer, "WINDOW_S", 60.0)

    async def main():
        w = StoreWriter(lambda: Outbox.open(str(tmp_path / "o.db")), asyncio.get_running_loop())
        done = listen(w)
        w.put([tel(1)])
        await asyncio.sleep(0.3)
        assert w.commits == 0            # a reading waits for the window (60 s here)
        w.put([ev(2)])
        await committed(done)            # an event ends it at once, readings and all
        assert w.commits == 1
        batch = await w.next_batch(10)
        assert [json.loads(p.payload)["i"] for p in batch] == [1, 2]
        await w.aclose()

    run(main())


def test_a_drained_batch_lets_the_publisher_wait_without_waking_the_thread(tmp_path):
    """A batch says whether it took everything that waited. If it did, the
    next wait=True request is left for the thread's next round (lazy): no
    wake-up of the thread to learn that nothing waits, and the next put's
    messages still come in the commit that stores them."""
    path = str(tmp_path / "outbox.db")

    async def main():
        w, seen = traced_writer(path)
        done = listen(w)
        w.put([tel(1), tel(2)])
        await committed(done)
        first = await w.next_batch(1)
        assert len(first) == 1 and not first.drained
        rest = await w.next_batch(10)
        assert [json.loads(p.payload)["i"] for p in rest] == [2] and rest.drained
        await asyncio.sleep(0.1)           # the thread is back asleep
        rounds = w.rounds
        fut = w.next_batch(10, wait=True, lazy=True)
        await asyncio.sleep(0.2)
        assert not fut.done() and w.rounds == rounds   # the thread was not woken for it
        before = len(seen)
        w.put([tel(3)])
        batch = await asyncio.wait_for(fut, 5)
        assert [p.seq for p in batch] == [3] and batch.drained
        await asyncio.sleep(0.1)
        assert seen[before:].count("COMMIT") == 1, seen[before:]
        await w.aclose()

    run(main())


def test_a_round_wakes_the_loop_once(tmp_path):
    """The commit's listeners and the answer to a waiting batch go back to
    the loop in one hand-over (one write to its self-pipe, one wake-up)."""
    async def main():
        loop = asyncio.get_running_loop()
        calls = []
        real = loop.call_soon_threadsafe

        def counting(fn, *args, **kw):
            calls.append(fn)
            return real(fn, *args, **kw)

        loop.call_soon_threadsafe = counting
        w = StoreWriter(lambda: Outbox.open(str(tmp_path / "o.db")), loop)
        done = listen(w)
        fut = w.next_batch(10, wait=True)
        await asyncio.sleep(0.1)
        n = len(calls)
        w.put([tel(1)])
        assert len(await asyncio.wait_for(fut, 5)) == 1
        await committed(done)
        assert len(calls) - n == 1, calls[n:]
        await w.aclose()

    run(main())


def test_acks_ride_in_the_next_puts_transaction(tmp_path):
    """Acks handed over before a put are deleted in the put's transaction,
    however many: no commit (no sync of the SD card) of their own."""
    path = str(tmp_path / "outbox.db")

    async def main():
        w, seen = traced_writer(path)
        done = listen(w)
        w.put([tel(i) for i in range(60)])
        await committed(done)
        batch = await w.next_batch(100)
        assert len(batch) == 60
        await asyncio.sleep(0.1)
        before = len(seen)
        for p in batch:
            w.ack(p.id)
        w.put([tel(60)])
        await committed(done)
        assert seen[before:].count("COMMIT") == 1, seen[before:]
        await w.aclose()
        db = sqlite3.connect(path)
        assert db.execute("SELECT count(*) FROM msg").fetchone()[0] == 1

    run(main())


def test_acks_free_the_in_flight_window_at_once_while_a_window_is_open(tmp_path, monkeypatch):
    """Regression (the full bench of 2026-12-01, 1,000 devices: 81 of 180
    fault events late or never there): acks that waited for the put's
    window to end kept the outbox's in-flight window full, so no more than
    one window's worth of in-flight messages went out per commit window.
    Acks are applied when they come; only their deletes wait for the put."""
    monkeypatch.setattr(writer, "WINDOW_S", 60.0)
    path = str(tmp_path / "outbox.db")

    async def main():
        w, seen = traced_writer(path, inflight=10)
        done = listen(w)
        w.put([tel(i) for i in range(30)])
        w.commit_soon()
        await committed(done)
        first = await w.next_batch(10)
        assert len(first) == 10                 # the in-flight window is full
        w.put([tel(30)])                        # a reading opens a 60 s window
        await asyncio.sleep(0.1)
        before = len(seen)
        for p in first:
            w.ack(p.id)
        second = await asyncio.wait_for(w.next_batch(10), 5)
        assert [json.loads(p.payload)["i"] for p in second] == list(range(10, 20))
        assert not any(q.startswith("DELETE") for q in seen[before:])   # the deletes wait for the put
        w.commit_soon()
        await committed(done)
        assert any(q.startswith("DELETE") for q in seen[before:])
        await w.aclose()

    run(main())


def test_a_window_ends_once_enough_messages_wait(tmp_path, monkeypatch):
    """A busy gateway does not hold a whole window's readings in memory."""
    monkeypatch.setattr(writer, "WINDOW_S", 60.0)

    async def main():
        w = StoreWriter(lambda: Outbox.open(str(tmp_path / "o.db")), asyncio.get_running_loop())
        done = listen(w)
        for i in range(writer.MAX_PENDING - 1):
            w.put([tel(i)])
        await asyncio.sleep(0.2)
        assert w.commits == 0
        w.put([tel(writer.MAX_PENDING)])
        await committed(done)
        assert w.commits == 1
        await w.aclose()

    run(main())
