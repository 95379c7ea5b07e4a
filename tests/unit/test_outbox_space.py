"""The outbox on a disk that fills up (issue 12 #1): it must always be able
to send what it holds, alarms in order, and come back by itself, even when
no space is ever given back (a real tmpfs; no operator action)."""
import json
import os
import subprocess

import pytest

from gateway.deliver.outbox import Message, Outbox, Priority

E, T = Priority.EVENT, Priority.TELEMETRY


def body(p):
    return json.loads(p.payload)


class Tmpfs:
    def __init__(self, where, size):
        self.dir = str(where)
        os.makedirs(self.dir, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=700", "tmpfs", self.dir],
                           capture_output=True)
        self.ok = r.returncode == 0
        self.n = 0

    def free(self):
        st = os.statvfs(self.dir)
        return st.f_bavail * st.f_frsize

    def squeeze(self):
        """Another program takes every byte left."""
        self.n += 1
        fd = os.open(os.path.join(self.dir, f"squeeze-{self.n}"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
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


@pytest.fixture
def fs(tmp_path):
    fs = Tmpfs(tmp_path / "fs", "1m")
    if not fs.ok:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield fs
    fs.close()


READING = {"ts": "2026-11-23T15:36:11.123Z", "values": {"volume_std_m3": 123456.789, "flow_m3h": 40.0,
           "temperature_C": 15.0, "pressure_kPa": 300.0, "battery_V": 3.6}, "quality": "good"}


def poll(i):
    return [Message(f"site/fm-{i % 10:02d}/telemetry", {**READING, "i": i}, T),
            Message(f"site/fm-{i % 10:02d}/event", {"i": i, "code": "TEMP-SENSOR",
                                                    "state": "raised" if i % 2 else "cleared"}, E)]


def drain(ob, window=100):
    """Send and ack everything, as a connected publisher would."""
    out = []
    for _ in range(10_000):
        batch = ob.next_batch(window)
        if not batch:
            return out
        out += batch
        for p in batch:
            ob.ack(p.id)
    raise AssertionError("the outbox never ran dry")


def test_a_full_disk_drains_and_recovers_with_no_space_given_back(fs):
    """Three times: polls until the outbox says the disk is full, another
    program takes the last bytes, then the uplink is back. Every event stored
    or held goes out, in order, under rising seqs; afterwards new polls are
    stored again although the filesystem still has no free byte."""
    ob = Outbox.open(os.path.join(fs.dir, "outbox.db"))
    i = 0
    sent_events = []
    last_seq = 0
    for cycle in range(3):
        first = i
        while ob.stats()["health"] == "ok":
            ob.put(poll(i))
            i += 1
            assert i - first < 20_000, "never full"
        for _ in range(5):   # held in RAM meanwhile
            ob.put(poll(i))
            i += 1
        fs.squeeze()
        assert fs.free() == 0
        assert ob.stats()["memory_held"] >= 5
        got = drain(ob)
        ob.flush()
        events = [body(p)["i"] for p in got if p.topic.endswith("/event")]
        # every event of this cycle, oldest first, none twice
        assert events == list(range(first if cycle == 0 else first, i)), (cycle, events[:5], events[-5:])
        seqs = [p.seq for p in got]
        assert seqs == sorted(set(seqs)) and seqs[0] > last_seq
        last_seq = seqs[-1]
        sent_events += events
        s = ob.stats()
        assert s["backlog_msgs"] == 0 and s["memory_held"] == 0, s
        # no operator action: the space the acks freed inside the store is enough
        ob.put(poll(i))
        i += 1
        assert ob.stats()["health"] == "ok", ob.stats()
        assert fs.free() == 0
        got = drain(ob)
        assert [body(p)["i"] for p in got if p.topic.endswith("/event")] == [i - 1]
        last_seq = got[-1].seq
        ob.flush()
    assert sent_events == sorted(sent_events)
    ob.close()
    again = Outbox.open(os.path.join(fs.dir, "outbox.db"))
    again.put(poll(i))
    (p, _e) = again.next_batch(10)
    assert p.seq > last_seq   # never reused across a restart on a full disk
    again.close()


def test_held_events_never_overtake_a_stored_event(tmp_path):
    """The database refuses every write (a read-only store): a stored event
    that has no seq yet cannot be sent, and an event raised later, held in
    RAM, must wait behind it rather than reach the broker first."""
    ob = Outbox.open(str(tmp_path / "o.db"))
    ob.put([Message("site/fm-01/event", {"i": 0}, E)])
    ob._db.execute("PRAGMA query_only=1")
    ob.put([Message("site/fm-01/event", {"i": 1}, E)])
    assert ob.stats()["memory_held"] == 1
    assert ob.next_batch(10) == []
    ob._db.execute("PRAGMA query_only=0")
    assert ob.retry()
    got = drain(ob)
    assert [body(p)["i"] for p in got] == [0, 1]
    assert got[0].seq < got[1].seq


def test_held_events_may_pass_stored_telemetry(tmp_path):
    """Only alarms keep their order: held events still go out (under a seq
    reserved in the floor file) while stored readings wait for theirs."""
    ob = Outbox.open(str(tmp_path / "o.db"))
    ob.put([Message("site/fm-01/telemetry", {"i": 0}, T)])
    ob._db.execute("PRAGMA query_only=1")
    ob.put([Message("site/fm-01/event", {"i": 1}, E)])
    got = ob.next_batch(10)
    assert [(body(p)["i"], p.id < 0) for p in got] == [(1, True)]


def test_another_program_fills_the_disk_at_once(fs):
    """Far from the floor, the WAL holds pages the database file has not
    grown for yet; then another program takes every byte. The checkpoint that
    must write them out gets the ballast's blocks, and the drain goes on."""
    ob = Outbox.open(os.path.join(fs.dir, "outbox.db"))
    assert ob.stats()["reserve"] == "ok"
    for i in range(150):
        ob.put(poll(i))
    assert os.path.getsize(os.path.join(fs.dir, "outbox.db-wal")) > 0
    fs.squeeze()
    i = 150
    while ob.stats()["health"] == "ok":   # what the WAL and free pages still take
        ob.put(poll(i))
        i += 1
        assert i < 5000
    for _ in range(5):
        ob.put(poll(i))
        i += 1
    got = drain(ob)
    assert [body(p)["i"] for p in got if p.topic.endswith("/event")] == list(range(i))
    ob.flush()
    ob.put(poll(i))
    assert ob.stats()["health"] == "ok"
    assert [body(p)["i"] for p in drain(ob) if p.topic.endswith("/event")] == [i]


def test_acks_deferred_to_puts_still_free_a_full_disk(fs):
    """The gateway's store thread defers ack deletes to the next put's
    transaction while polls keep coming (ack_deletes_wait). On a full disk
    that put did not commit, so the acks piled up (823 in the disk-full
    integration run) and their one delete needed more WAL than the disk
    had: it failed at every round, the acknowledged rows stayed, nothing new
    could be stored and health stayed "disk_full" for good."""
    ob = Outbox.open(os.path.join(fs.dir, "outbox.db"))
    i = 0
    while ob.stats()["health"] == "ok":
        ob.put(poll(i))
        i += 1
        assert i < 20_000, "never full"
    fs.squeeze()
    assert fs.free() == 0
    ob.ack_deletes_wait = True          # a put is always due: polls every 0.2 s
    sent = drain(ob)                    # the uplink is back: all of it sent and acked
    assert len(ob._acks) > 1000 and len(sent) > 1000
    for _ in range(50):                 # polls go on
        ob.put(poll(i))
        i += 1
    s = ob.stats()
    assert s["health"] == "ok", s
    assert s["memory_held"] == 0 and s["backlog_msgs"] <= 50 * len(poll(0)), s
    assert fs.free() == 0
    ob.close()
