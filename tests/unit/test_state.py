import json
import os
import random
import signal
import stat
import subprocess
import sys
import time

import pytest

from gateway.site.state import AtomicJSONStorage, StateStore, render


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_put_get_all_delete_and_reload(tmp_path):
    p = tmp_path / "state.json"
    s = StateStore(str(p))
    assert s.get("faults", "gm-01") is None
    assert s.get("faults", "gm-01", {}) == {}
    s.put("faults", "gm-01", {"ERR-3": {"since": "2026-11-23T15:36:11.123Z"}})
    s.put("faults", "gm-02", {})
    s.put("cursors", "door-1", 4711)
    s.put("cards", "12345678", {"name": "张三", "valid": True})
    assert s.all("faults") == {"gm-01": {"ERR-3": {"since": "2026-11-23T15:36:11.123Z"}}, "gm-02": {}}
    s.delete("faults", "gm-02")
    s.delete("faults", "nope")
    s.close()

    s2 = StateStore(str(p))
    assert s2.quarantined == []
    assert s2.all("faults") == {"gm-01": {"ERR-3": {"since": "2026-11-23T15:36:11.123Z"}}}
    assert s2.get("cursors", "door-1") == 4711
    assert s2.get("cards", "12345678") == {"name": "张三", "valid": True}
    assert s2.all("empty") == {}
    # human-readable: plain JSON a technician can read
    text = p.read_text(encoding="utf-8")
    assert "张三" in text and "\n" in text


def test_one_document_a_line_and_written_in_small_steps(tmp_path):
    """state.json at 1,000 devices: the whole file in one json.dumps with
    indent runs the pure-Python encoder for ~20 ms on the store's thread,
    holding the GIL in long stretches the event loop waits behind (issue 13,
    loop lag at 1,000 devices). One line per document, each encoded alone,
    reads as well with `cat` and `grep`."""
    p = tmp_path / "state.json"
    s = StateStore(str(p))
    docs = {f"m{i}": {"values": {"flow_m3h": i * 1.5, "name": "张三"}, "active": {}} for i in range(30)}
    s.put_many("devices", docs)
    s.put("cursors", "door-1", 4711)
    s.close()
    lines = p.read_text(encoding="utf-8").splitlines()
    for name, doc in docs.items():
        hits = [ln for ln in lines if f'"{name}"' in ln]
        assert len(hits) == 1, hits
        assert json.loads(hits[0].strip().rstrip(",").split(": ", 1)[1]) == {"key": name, "value": doc}
    assert StateStore(str(p)).all("devices") == docs
    assert StateStore(str(p)).get("cursors", "door-1") == 4711


def test_file_mode_is_0600_even_if_it_was_wider(tmp_path):
    p = tmp_path / "state.json"
    s = StateStore(str(p))
    s.put("t", "k", 1)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    s.close()
    os.chmod(p, 0o644)
    s = StateStore(str(p))
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    s.put("t", "k", 2)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600


def test_write_replaces_the_file_instead_of_rewriting_it(tmp_path):
    p = tmp_path / "state.json"
    s = StateStore(str(p))
    s.put("t", "a", 1)
    ino = os.stat(p).st_ino
    s.put("t", "a", 2)
    assert os.stat(p).st_ino != ino
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_unchanged_values_are_not_written(tmp_path):
    p = tmp_path / "state.json"
    s = StateStore(str(p))
    s.put("t", "a", {"x": [1, 2], "y": "z"})
    s.put("t", "b", 1)
    n = s.writes
    ino = os.stat(p).st_ino
    s.put("t", "a", {"y": "z", "x": [1, 2]})
    s.put("t", "a", {"x": (1, 2), "y": "z"})
    s.put("t", "b", 1)
    s.delete("t", "missing")
    assert s.writes == n
    assert os.stat(p).st_ino == ino
    # 1 and True are equal in Python but not in JSON: this one is a change
    s.put("t", "b", True)
    assert s.writes == n + 1
    assert StateStore(str(p)).get("t", "b") is True


def test_values_must_be_json(tmp_path):
    s = StateStore(str(tmp_path / "state.json"))
    with pytest.raises(TypeError):
        s.put("t", "k", {"x": object()})
    with pytest.raises(ValueError):
        s.put("t", "k", float("nan"))
    assert s.all("t") == {}


def test_the_file_holds_what_a_reload_gives(tmp_path):
    """Values go into the file as their JSON reload: tuples as lists, int
    keys as strings, in the order of the strings; the store is compared
    and rewritten as JSON, and the file is exactly TinyDB's form of it."""
    p = tmp_path / "state.json"
    s = StateStore(str(p))
    odd = {"tuple": (1, 2.5), "ints": {2: "b", 10: "a"}, "mixed": {1: "x", "y": 2}, "zh": "阀门关闭"}
    assert s.put_many("t", {"plain": {"a": [1, {"b": None}]}, "odd": odd, 7: 1})
    want = {"plain": {"a": [1, {"b": None}]}, "odd": json.loads(json.dumps(odd)), "7": 1}
    assert s.all("t") == want
    assert StateStore(str(p)).all("t") == want
    ids = {"1": "plain", "2": "odd", "3": "7"}
    doc = {"t": {i: {"key": k, "value": want[k]} for i, k in ids.items()}}
    assert json.loads(p.read_bytes()) == doc
    assert p.read_bytes() == render(doc)
    # 1 == 1.0 == True in Python, not on disk; an equal value is no write
    n = s.writes
    assert not s.put_many("t", {"odd": odd, "7": 1})
    assert s.put_many("t", {"7": 1.0}) and s.writes == n + 1
    assert s.put_many("t", {"7": True}) and StateStore(str(p)).get("t", "7") is True


@pytest.mark.parametrize(
    "content",
    [b"\x00\xffgarbage\x13", b'{"faults": {"1": {"key": "gm-01", "val', b"", b"[1, 2, 3]", b'{"t": 5}'],
    ids=["garbage", "truncated", "empty", "not-tables", "bad-table"],
)
def test_corrupt_file_is_quarantined_and_store_starts_fresh(tmp_path, content):
    p = tmp_path / "state.json"
    p.write_bytes(content)
    s = StateStore(str(p))
    assert len(s.quarantined) == 1
    moved = s.quarantined[0]
    assert os.path.basename(moved).startswith("state.json.corrupt-")
    assert open(moved, "rb").read() == content  # moved, never deleted or altered
    assert s.all("faults") == {}
    s.put("faults", "gm-01", {"ok": 1})
    assert StateStore(str(p)).get("faults", "gm-01") == {"ok": 1}


def test_stale_temp_files_are_removed_at_open(tmp_path):
    p = tmp_path / "state.json"
    StateStore(str(p)).put("t", "k", 1)
    stale = tmp_path / ".state.json.abc123.tmp"
    stale.write_bytes(b'{"half')
    s = StateStore(str(p))
    assert not stale.exists()
    assert s.get("t", "k") == 1


def test_storage_used_directly_by_tinydb(tmp_path):
    from tinydb import TinyDB

    p = tmp_path / "raw.json"
    db = TinyDB(str(p), storage=AtomicJSONStorage)
    db.table("x").insert({"a": 1})
    db.close()
    assert json.loads(p.read_text())["x"] == {"1": {"a": 1}}
    assert TinyDB(str(p), storage=AtomicJSONStorage).table("x").all() == [{"a": 1}]


WRITER = r"""
import sys
from gateway.site.state import StateStore
s = StateStore(sys.argv[1])
i = s.get("t", "n", 0)
while True:
    i += 1
    # a value big enough that a torn in-place write would be likely
    s.put("t", "n", i)
    s.put("t", "blob", {"i": i, "pad": "x" * 20000})
    print(i, flush=True)
"""


def test_sigkill_during_writes_never_leaves_a_torn_file(tmp_path):
    p = tmp_path / "state.json"
    rng = random.Random(7)
    last = 0
    for _ in range(15):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(p)], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        first = proc.stdout.readline()  # it is writing
        assert first
        time.sleep(rng.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
        out = first + proc.stdout.read()
        proc.wait()
        done = [int(x) for x in out.split()]
        s = StateStore(str(p))
        assert s.quarantined == []
        n = s.get("t", "n")
        # every put that returned is on disk; at most the one in progress is missing
        assert n >= done[-1]
        assert n >= last
        last = n
        blob = s.get("t", "blob")
        assert blob["i"] in (n, n - 1) and len(blob["pad"]) == 20000


def test_put_many_writes_the_file_once_and_only_when_something_changed(tmp_path):
    """The daemon's state flush: every device in one atomic write (issue 13:
    one write per device stopped every bus for seconds at 500 devices)."""
    p = tmp_path / "state.json"
    s = StateStore(str(p))
    s.put("devices", "fm-001", {"v": 1})
    n = s.writes
    docs = {f"fm-{i:03d}": {"v": i, "active": {}} for i in range(1, 501)}
    assert s.put_many("devices", docs) is True
    assert s.writes == n + 1
    assert s.put_many("devices", {k: dict(v) for k, v in docs.items()}) is False  # unchanged: no write
    assert s.writes == n + 1
    docs["fm-007"] = {"v": 7.5, "active": {"ERR-3": {"since": "2026-11-23T15:36:11.123Z"}}}
    assert s.put_many("devices", docs) is True
    assert s.writes == n + 2
    s.put("devices", "fm-999", {"v": 999})   # single puts still work after a bulk write
    s.close()
    again = StateStore(str(p)).all("devices")
    assert len(again) == 501 and again["fm-001"] == {"v": 1, "active": {}}
    assert again["fm-007"]["active"]["ERR-3"]["since"] == "2026-11-23T15:36:11.123Z"
    assert again["fm-999"] == {"v": 999}
    raw = json.loads(p.read_text())["devices"]
    assert len({d["key"] for d in raw.values()}) == len(raw) == 501   # no key twice
