"""The site's card registry file (CSV, or the same entries as JSON over MQTT):
columns, one entry's checks, every problem by line. The config check reads
it before start; gateway/doors turns the entries into card states.

Problems name the column, never the card number: they go to logs."""
from __future__ import annotations

import csv
import io
from datetime import date

HOLDER_TYPES = ("owner", "family", "tenant", "merchant", "staff", "parking")



# issue-like events start a validity period; the others end the card
STARTS = ("issue", "top_up", "renewal", "replacement")



ENDS = {"loss": "lost", "damage": "damaged", "revoke": "revoked"}



EVENTS = (*STARTS, *ENDS)



COLUMNS = ("card", "holder_type", "issued", "holder_ref", "event", "valid_until", "replaces", "note")



REQUIRED = ("card", "holder_type", "issued")



MAX_CARD = 10**20 - 1  # 20 digits: more than any reader reports



class RegistryError(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))



def _card(raw: str) -> int:
    s = raw.strip()
    if not s.isdigit() or len(s) > 20:
        raise ValueError("is not a card number (digits only, as printed on the card)")
    return int(s)



def _date(raw: str) -> date:
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise ValueError("is not a date YYYY-MM-DD") from None



def check_entry(row: dict) -> tuple[dict | None, list[str]]:
    """One registry entry from a CSV row or a JSON object; (entry, problems).

    Problems name the column, never the card number: they go to logs."""
    problems: list[str] = []
    get = lambda k: ("" if row.get(k) is None else str(row.get(k))).strip()  # noqa: E731
    e: dict = {}
    for k in REQUIRED:
        if not get(k) and not (k == "holder_type" and get("event") not in ("", "issue")):
            problems.append(f"{k}: missing")
    event = get("event") or "issue"
    if event not in EVENTS:
        problems.append(f"event: {event!r} is not one of {', '.join(EVENTS)}")
    e["event"] = event
    if get("card"):
        try:
            e["card"] = _card(get("card"))
        except ValueError as exc:
            problems.append(f"card: {exc}")
    ht = get("holder_type")
    if ht:
        if ht not in HOLDER_TYPES:
            problems.append(f"holder_type: {ht!r} is not one of {', '.join(HOLDER_TYPES)}")
        e["holder_type"] = ht
    else:
        e["holder_type"] = None
    if get("issued"):
        try:
            e["date"] = _date(get("issued")).isoformat()
        except ValueError as exc:
            problems.append(f"issued: {exc}")
    if get("valid_until"):
        try:
            e["valid_until"] = _date(get("valid_until")).isoformat()
        except ValueError as exc:
            problems.append(f"valid_until: {exc}")
        else:
            if "date" in e and e["valid_until"] < e["date"]:
                problems.append("valid_until: is before issued")
    else:
        e["valid_until"] = None
    if get("replaces"):
        try:
            e["replaces"] = _card(get("replaces"))
        except ValueError as exc:
            problems.append(f"replaces: {exc}")
    else:
        e["replaces"] = None
    if event == "replacement" and not get("replaces"):
        problems.append("replaces: missing (a replacement names the card it replaces)")
    e["holder_ref"] = get("holder_ref") or None
    e["note"] = get("note") or None
    return (None if problems else e), problems



def parse_csv(raw: bytes | str, source: str = "csv") -> list[dict]:
    """A registry CSV -> entries; RegistryError lists every problem by line.

    Columns: card, holder_type, issued (required), holder_ref, event,
    valid_until, replaces, note. Other columns (names, phone numbers) are
    ignored and never stored."""
    text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise RegistryError([f"line 1: missing column(s) {', '.join(missing)} "
                             f"(header must name {', '.join(COLUMNS)})"])
    rows = ((f"line {reader.line_num}: ", row) for row in reader
            if any((v or "").strip() for v in row.values() if isinstance(v, str)))
    return check_entries(rows)



def check_entries(rows) -> list[dict]:
    """(where, row) pairs -> entries; RegistryError lists every problem, each
    prefixed with where it is ("line 4: ", "entries[2]."), whatever the source."""
    out, problems = [], []
    for where, row in rows:
        if not isinstance(row, dict):
            problems.append(f"{where.rstrip('.: ')}: not an object")
            continue
        e, found = check_entry(row)
        problems += [f"{where}{p}" for p in found]
        if e is not None:
            out.append(e)
    if problems:
        raise RegistryError(problems)
    return out
