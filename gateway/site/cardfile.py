"""The site's card registry file (CSV, or the same entries as JSON over MQTT):
columns, one entry's checks, the text encodings an office PC saves, and the
bounds on size. The config check reads the file before start; gateway/doors
turns the entries into card states.

Everything here reads row by row: a registry file is never held in memory
as one string or one list, so its size only costs time, not memory.

Problems name the line and the column, never a card number (they go to logs
and to the centre): a value is quoted back only when it has no digit in it.
"""
from __future__ import annotations

import codecs
import csv
import io
import os
import re
from datetime import date
from pathlib import Path
from typing import Callable, Iterable, Iterator

HOLDER_TYPES = ("owner", "family", "tenant", "merchant", "staff", "parking")
# issue-like events start a validity period; the others end the card
STARTS = ("issue", "top_up", "renewal", "replacement")
ENDS = {"loss": "lost", "damage": "damaged", "revoke": "revoked"}
PARKING = "parking"      # a parking entitlement on a card (service manual J), not a holder type change
ERASE = "erase"          # the holder reference was deleted at the source: keep pseudonyms and dates only
EVENTS = (*STARTS, PARKING, *ENDS, ERASE)
COLUMNS = ("card", "holder_type", "issued", "holder_ref", "event", "valid_until", "replaces", "note")
REQUIRED = ("card", "holder_type", "issued")

MIB = 1024 * 1024
MAX_FILE_BYTES = 32 * MIB        # doors.registry_csv
MAX_FILE_ENTRIES = 500_000       # ... and the registry as a whole (gateway/doors/registry.py)
MAX_UPDATE_BYTES = 4 * MIB       # one message on <prefix>/<gw>/config/cards
MAX_UPDATE_ENTRIES = 50_000
MAX_PROBLEMS = 50                # listed; the rest are counted
MAX_TEXT = 200                   # holder_ref and note are kept locally: short
ENCODINGS = ("utf-8", "gb18030")  # in this order: GBK is a subset of GB18030
CHUNK = 64 * 1024


class RegistryError(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class Problems:
    """The first MAX_PROBLEMS problems, and how many more there were."""

    def __init__(self, limit: int = MAX_PROBLEMS) -> None:
        self.limit = limit
        self.shown: list[str] = []
        self.more = 0

    def add(self, problem: str) -> None:
        if len(self.shown) < self.limit:
            self.shown.append(" ".join(problem.split()))  # one line, whatever came in
        else:
            self.more += 1

    def __bool__(self) -> bool:
        return bool(self.shown)

    def lines(self) -> list[str]:
        return self.shown + ([f"... and {self.more} more problems"] if self.more else [])


def _show(value: str) -> str:
    # A misplaced column can put a card number anywhere: only text without
    # digits is quoted back.
    return f" {value!r}" if value and len(value) <= 24 and not any(c.isdigit() for c in value) else ""


def _card(raw: str) -> int:
    s = raw.strip()
    if not (s.isascii() and s.isdigit()) or len(s) > 20 or int(s) == 0:
        raise ValueError("is not a card number (digits only, as printed on the card)")
    return int(s)


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _date(raw: str) -> date:
    # Python 3.11 also reads 20260101 and 2026-W01-1; the file format is one
    try:
        if _DATE.fullmatch(raw.strip()):
            return date.fromisoformat(raw.strip())
    except ValueError:
        pass
    raise ValueError("is not a date YYYY-MM-DD")


def check_entry(row: dict) -> tuple[dict | None, list[str]]:
    """One registry entry from a CSV row or a JSON object; (entry, problems).

    Problems name the column, never the card number: they go to logs."""
    problems: list[str] = []
    text: dict[str, str] = {}
    for k in COLUMNS:
        v = row.get(k)
        if v is None or (isinstance(v, (str, int)) and not isinstance(v, bool)):
            text[k] = "" if v is None else str(v).strip()
        else:
            problems.append(f"{k}: expected text or a whole number")
            text[k] = ""
    get = text.__getitem__
    event = get("event") or "issue"
    if event not in EVENTS:
        problems.append(f"event:{_show(event)} is not one of {', '.join(EVENTS)}")
    e: dict = {"event": event}
    if not get("card") and event != ERASE:
        problems.append("card: missing")
    if not get("issued"):
        problems.append("issued: missing")
    if event == "issue" and not get("holder_type"):
        problems.append("holder_type: missing")
    e["card"] = None
    if get("card"):
        try:
            e["card"] = _card(get("card"))
        except ValueError as exc:
            problems.append(f"card: {exc}")
    ht = get("holder_type")
    if ht and ht not in HOLDER_TYPES:
        problems.append(f"holder_type:{_show(ht)} is not one of {', '.join(HOLDER_TYPES)}")
    if event == PARKING and ht not in ("", PARKING):
        problems.append("holder_type: a parking entitlement leaves the card's holder type as it is "
                        "(leave the column empty)")
    e["holder_type"] = ht if ht and event not in (PARKING, ERASE) else None
    if get("issued"):
        try:
            e["date"] = _date(get("issued")).isoformat()
        except ValueError as exc:
            problems.append(f"issued: {exc}")
    e["valid_until"] = None
    if get("valid_until") and event not in (*ENDS, ERASE):
        try:
            e["valid_until"] = _date(get("valid_until")).isoformat()
        except ValueError as exc:
            problems.append(f"valid_until: {exc}")
        else:
            if "date" in e and e["valid_until"] < e["date"]:
                problems.append("valid_until: is before issued")
    e["replaces"] = None
    if get("replaces") and event == "replacement":
        try:
            e["replaces"] = _card(get("replaces"))
        except ValueError as exc:
            problems.append(f"replaces: {exc}")
        else:
            if e["replaces"] == e["card"]:
                problems.append("replaces: is the card itself")
    if event == "replacement" and not get("replaces"):
        problems.append("replaces: missing (a replacement names the card it replaces)")
    if event == ERASE and not get("holder_ref"):
        problems.append("holder_ref: missing (erase names the holder reference deleted at the source)")
    for k in ("holder_ref", "note"):
        if len(get(k)) > MAX_TEXT:
            problems.append(f"{k}: longer than {MAX_TEXT} characters")
    e["holder_ref"] = get("holder_ref") or None
    e["note"] = (get("note") or None) if event != ERASE else None
    return (None if problems else e), problems


# --------------------------------------------------------------------------- text

def detect_encoding(chunks: Callable[[], Iterable[bytes]]) -> str:
    """The codec to read a registry with: UTF-8 (a BOM is fine), else
    GB18030 (which covers GBK and GB2312, what Chinese office PCs save).
    ``chunks()`` gives the bytes again from the start for each try, so the
    whole text is never decoded into memory at once."""
    first_bad = None
    for enc in ENCODINGS:
        dec = codecs.getincrementaldecoder(enc)()
        lines = 0
        try:
            for chunk in chunks():
                dec.decode(chunk)
                lines += chunk.count(b"\n")
            dec.decode(b"", final=True)
            return "utf-8-sig" if enc == "utf-8" else enc
        except UnicodeDecodeError as exc:
            if first_bad is None:
                first_bad = lines + exc.object[:exc.start].count(b"\n") + 1
    raise RegistryError([f"is neither UTF-8 nor GB18030 (GBK) text (line {first_bad}); "
                         f"save it as \"CSV UTF-8\""])


def byte_chunks(data: bytes) -> Callable[[], Iterator[bytes]]:
    view = memoryview(data)
    return lambda: (bytes(view[i:i + CHUNK]) for i in range(0, len(view), CHUNK))


def file_chunks(path: Path) -> Callable[[], Iterator[bytes]]:
    def read() -> Iterator[bytes]:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
    return read


def csv_rows(stream: Iterable[str]) -> Iterator[tuple[str, dict]]:
    """(where, row) for every non-blank line of a registry CSV text stream.
    Other columns (names, phone numbers) are dropped here, never stored."""
    reader = csv.DictReader(stream)
    try:
        header = [(h or "").strip().lstrip("\ufeff").strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise RegistryError([f"line 1: missing column(s) {', '.join(missing)} "
                                 f"(header must name {', '.join(COLUMNS)})"])
        for row in reader:
            if any(isinstance(v, str) and v.strip() for v in row.values()):
                yield f"line {reader.line_num}: ", {k: row.get(k) for k in COLUMNS}
    except csv.Error as exc:
        raise RegistryError([f"line {reader.line_num}: not readable as CSV ({exc})"]) from None


def text_stream(data: bytes) -> io.TextIOWrapper:
    enc = detect_encoding(byte_chunks(data))
    return io.TextIOWrapper(io.BytesIO(data), encoding=enc, newline="")


def file_rows(path: Path) -> Iterator[tuple[str, dict]]:
    """(where, row) of a registry CSV file, read as it goes; RegistryError
    (one line) for a file too big, in an unknown encoding or not CSV."""
    path = Path(path)
    size = os.stat(path).st_size
    if size > MAX_FILE_BYTES:
        raise RegistryError([f"{size / MIB:.1f} MiB is above the limit of {MAX_FILE_BYTES // MIB} MiB "
                             f"for a registry file"])
    enc = detect_encoding(file_chunks(path))
    with open(path, encoding=enc, newline="") as f:
        yield from csv_rows(f)


def check_entries(rows: Iterable[tuple[str, dict]], limit: int = MAX_FILE_ENTRIES) -> list[dict]:
    """(where, row) pairs -> entries; RegistryError lists the problems (the
    first MAX_PROBLEMS, then how many more), each prefixed with where it is
    ("line 4: ", "entries[2]."), whatever the source."""
    return list(check_entries_lazily(rows, limit))


def parse_csv(raw: bytes | str, source: str = "csv") -> list[dict]:
    """A registry CSV held in memory -> entries; RegistryError otherwise.

    Columns: card, holder_type, issued (required), holder_ref, event,
    valid_until, replaces, note. Other columns (names, phone numbers) are
    ignored and never stored."""
    if isinstance(raw, str):
        return check_entries(csv_rows(io.StringIO(raw, newline="")))
    if len(raw) > MAX_FILE_BYTES:
        raise RegistryError([f"{len(raw) / MIB:.1f} MiB is above the limit of {MAX_FILE_BYTES // MIB} MiB"])
    return check_entries(csv_rows(text_stream(raw)))


def check_file(path: Path) -> list[str]:
    """Every problem of a registry file, for the config check: one line each,
    at most MAX_PROBLEMS and a count of the rest."""
    try:
        for _ in check_entries_lazily(file_rows(path)):
            pass
    except RegistryError as exc:
        return exc.problems
    except OSError as exc:
        return [f"cannot be read ({exc.strerror})"]
    return []


def checked_rows(rows: Iterable[tuple[str, dict]], limit: int, problems: Problems) -> Iterator[tuple[str, dict]]:
    """(where, entry) for each row that checks out while no problem has been
    found; every row is checked all the same, so that the problems list them
    all. Stops after `limit` rows. The problems land in `problems`."""
    n = 0
    for where, row in rows:
        n += 1
        if n > limit:
            problems.add(f"more than {limit} entries (the limit for one load)")
            return
        if not isinstance(row, dict):
            problems.add(f"{where.rstrip('.: ')}: not an object")
            continue
        e, found = check_entry(row)
        for p in found:
            problems.add(f"{where}{p}")
        if e is not None and not problems:
            yield where, e


def check_entries_lazily(rows: Iterable[tuple[str, dict]], limit: int = MAX_FILE_ENTRIES) -> Iterator[dict]:
    """As check_entries, one entry at a time; the RegistryError comes at the end."""
    problems = Problems()
    for _where, e in checked_rows(rows, limit, problems):
        yield e
    if problems:
        raise RegistryError(problems.lines())
