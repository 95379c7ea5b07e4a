"""Small, human-readable gateway state: each device's last values and active
faults (state.json), for `edgegw status` with the daemon stopped.

TinyDB keeps everything in one JSON file; its stock JSONStorage rewrites that
file in place, so a power cut during a write leaves a torn file and the whole
state is gone. AtomicJSONStorage writes a complete new file beside it and
renames it over the old one, so at any instant the file on disk is either the
old or the new version.

Only this process may write the file: the storage keeps the last bytes it
wrote and serves reads from them. A StateStore may be used from more than one
thread (the daemon writes state.json from its store thread): each call holds
the store's lock.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import threading
import time
from typing import Any

import tinydb
from tinydb import Query, TinyDB

__all__ = ["AtomicJSONStorage", "StateStore", "quarantine_path"]

FILE_MODE = 0o600  # will hold the access-card registry


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def utc_stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def quarantine_path(path: str, stamp: str | None = None) -> str | None:
    """Move a damaged file aside as ``<name>.corrupt-<UTC>`` and return the new
    path (None if it did not exist). Never deletes: the operator may want to
    recover what is in it."""
    if not os.path.lexists(path):
        return None
    stamp = stamp or utc_stamp()
    target = f"{path}.corrupt-{stamp}"
    n = 1
    while os.path.lexists(target):
        n += 1
        target = f"{path}.corrupt-{stamp}-{n}"
    os.replace(path, target)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))
    return target


def render(data: dict[str, dict[str, Any]]) -> bytes:
    """The file: tables in key order, one line per document.

    Each document is encoded on its own by the C encoder, straight into one
    buffer. One json.dumps of the whole file with indent runs the
    pure-Python encoder (about 20 ms at 1,000 devices on the store's thread,
    in stretches the event loop waits behind for the GIL) and joins a list
    of every token (about 3 MB at 500 devices, a peak the RSS keeps); this
    is about 5 ms, in pieces of microseconds, and one copy of the file.
    """
    enc = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode
    out = io.BytesIO()
    out.write(b"{")
    for t, table in enumerate(sorted(data)):
        docs = data[table]
        out.write(f'{"," if t else ""}\n{enc(table)}: {{'.encode())
        for n, i in enumerate(sorted(docs, key=str)):
            out.write(f'{"," if n else ""}\n {enc(str(i))}: {enc(docs[i])}'.encode())
        out.write(b"\n}" if docs else b"}")
    out.write(b"\n}\n")
    return out.getvalue()


class AtomicJSONStorage(tinydb.Storage):
    """TinyDB storage that replaces the file atomically and durably.

    write(): temp file in the same folder -> flush -> fsync -> os.replace ->
    fsync the folder (the rename itself is only durable once the directory
    is synced). A write whose bytes equal the file's current bytes is skipped,
    to spare the SD card.
    """

    def __init__(self, path: str, mode: int = FILE_MODE):
        self.path = os.path.abspath(path)
        self.directory = os.path.dirname(self.path)
        self.mode = mode
        self.writes = 0  # real file replacements, for tests and wear accounting
        self._bytes: bytes | None = None
        if os.path.exists(self.path):
            with open(self.path, "rb") as f:
                self._bytes = f.read()
            if os.stat(self.path).st_mode & 0o777 != mode:
                os.chmod(self.path, mode)

    def read(self) -> dict[str, dict[str, Any]] | None:
        if not self._bytes:
            return None
        # Parse afresh each time: TinyDB mutates what read() returns, and a
        # failed write must not leave that mutation in our cache.
        return json.loads(self._bytes)

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        raw = render(data)
        if raw == self._bytes:
            return
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix="." + os.path.basename(self.path) + ".", suffix=".tmp")
        try:
            os.fchmod(fd, self.mode)
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        _fsync_dir(self.directory)
        self._bytes = raw
        self.writes += 1

    def close(self) -> None:
        pass


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _same_json(value: Any, canon: str) -> bool:
    try:
        return _canon(value) == canon
    except TypeError:                   # keys of mixed types cannot be sorted
        return False


def _looks_like_tinydb(data: Any) -> bool:
    return isinstance(data, dict) and all(isinstance(t, dict) for t in data.values())


class StateStore:
    """Key/value tables on top of TinyDB, one document ``{"key", "value"}`` per
    key so the file stays readable by a technician with ``cat``."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self.quarantined: list[str] = []
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._remove_stale_temps()
        if not self._file_is_sound():
            moved = quarantine_path(self.path)
            if moved:
                self.quarantined.append(moved)
        self._db = TinyDB(self.path, storage=AtomicJSONStorage)
        self._storage: AtomicJSONStorage = self._db.storage  # type: ignore[assignment]
        self._q = Query()
        self._lock = threading.RLock()

    def _remove_stale_temps(self) -> None:
        # A temp file is left only by a crash before its rename; the real file
        # is then still the previous complete version, so the temp is garbage.
        prefix = "." + os.path.basename(self.path) + "."
        directory = os.path.dirname(self.path)
        for name in os.listdir(directory):
            if name.startswith(prefix) and name.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(directory, name))
                except OSError:
                    pass

    def _file_is_sound(self) -> bool:
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return True
        # Atomic writes never leave an empty file behind, so empty means truncated.
        try:
            return _looks_like_tinydb(json.loads(raw.decode("utf-8")))
        except (UnicodeDecodeError, ValueError):
            return False

    def get(self, table: str, key: str, default: Any = None) -> Any:
        with self._lock:
            doc = self._db.table(table).get(self._q.key == key)
        return default if doc is None else doc["value"]

    def put(self, table: str, key: str, value: Any) -> None:
        """Store value under key; durable when this returns."""
        self.put_many(table, {key: value})

    def put_many(self, table: str, items: dict[str, Any]) -> bool:
        """Store every key of items in one file write (one temp file, two
        fsyncs), and none at all when nothing changed; durable when this
        returns. Returns whether the file was written."""
        # One parse of the file, and a value's reload only while it is
        # compared: the whole site's state once a minute (500 devices: 240 KB
        # of JSON) was parsed twice and copied twice here, and the RSS kept
        # the peak.
        with self._lock:
            tables = self._storage.read() or {}
            # TinyDB's own form of the ids (its _update_table does the same)
            docs = {str(int(i)): d for i, d in tables.get(table, {}).items()}
            by_key = {d.get("key"): i for i, d in docs.items() if isinstance(d, dict)}
            next_id = max((int(i) for i in docs), default=0) + 1
            changed = False
            for k, v in items.items():
                k = str(k)
                # Round-trip through JSON so what we compare and keep is
                # exactly what a reload would give (tuples become lists,
                # etc.), and a value that cannot be stored fails here, before
                # anything is written. Compared as JSON: 1 == 1.0 == True in
                # Python but not on disk.
                text = json.dumps(v, ensure_ascii=False, allow_nan=False)
                canon = _canon(json.loads(text))
                i = by_key.get(k)
                if i is not None and _canon(docs[i].get("value")) == canon:
                    continue
                if i is None:
                    i = by_key[k] = str(next_id)
                    next_id += 1
                # The caller's value goes into the file as it is when it
                # encodes as its reload does (str keys): a copy of 500
                # devices' values was 2 MB.
                docs[i] = {"key": k, "value": v if _same_json(v, canon) else json.loads(text)}
                changed = True
            if not changed:
                return False
            tables[table] = docs
            self._storage.write(tables)
            # what TinyDB's own writes do after a write; ids were assigned here
            t = self._db.table(table)
            t.clear_cache()
            t._next_id = None
        return True

    def all(self, table: str) -> dict[str, Any]:
        with self._lock:
            return {d["key"]: d["value"] for d in self._db.table(table).all()}

    def delete(self, table: str, key: str) -> None:
        with self._lock:
            t = self._db.table(table)
            doc = t.get(self._q.key == key)
            if doc is not None:
                t.remove(doc_ids=[doc.doc_id])

    @property
    def writes(self) -> int:
        return self._storage.writes

    def close(self) -> None:
        self._db.close()
