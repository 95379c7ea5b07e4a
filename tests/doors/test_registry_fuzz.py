"""Property-based fuzzing (bounded) of the card registry: the parser of both
forms (CSV and JSON, any encoding, any size up to the bound) and applying
updates to a real registry on disk.

Properties: no exception escapes but RegistryError; the size bounds hold on
both sides (made small so that examples reach them); every problem is one
line; no problem ever contains a card number of the input; applying any
sequence of updates leaves a registry whose state can be asked for any card.
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gateway.deliver import payloads
from gateway.deliver.outbox import Outbox
from gateway.doors import updates
from gateway.doors.site import DoorSite
from gateway.doors.updates import parse_update
from gateway.site import cardfile
from gateway.site.cardfile import COLUMNS, RegistryError, parse_csv

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# card numbers have 7+ digits here so that a line number, a date or a size
# in a problem can never be mistaken for one
cards = st.integers(min_value=1_000_000, max_value=4_294_967_295).map(str)
dates = st.dates(min_value=date(2015, 1, 1), max_value=date(2035, 12, 31)).map(date.isoformat)
junk = st.text(max_size=12)
values = {
    "card": st.one_of(cards, junk, st.sampled_from(["0", "-5", "1e9", "３０００", "9" * 25, ""])),
    "holder_type": st.one_of(st.sampled_from(["owner", "family", "tenant", "merchant", "staff", "parking",
                                              "", "landlord"]), junk, cards),
    "issued": st.one_of(dates, junk, st.sampled_from(["2026-02-30", "20260101", ""])),
    "holder_ref": st.one_of(st.sampled_from(["B-1203", "A座-0101", ""]), junk),
    "event": st.one_of(st.sampled_from(["", "issue", "top_up", "renewal", "replacement", "loss", "damage",
                                        "revoke", "parking", "erase"]), junk, cards),
    "valid_until": st.one_of(dates, st.just(""), junk),
    "replaces": st.one_of(cards, st.just(""), junk),
    "note": st.one_of(st.just(""), junk, cards),
}
rows = st.fixed_dictionaries({k: values[k] for k in COLUMNS})
row_lists = st.lists(rows, max_size=40)


def csv_text(header: list[str], body: list[dict]) -> str:
    def cell(v: str) -> str:
        return '"' + v.replace('"', '""') + '"' if any(c in v for c in ',"\r\n') else v
    return "\n".join([",".join(header)] + [",".join(cell(r.get(h, "")) for h in header) for r in body]) + "\n"


headers = st.one_of(st.just(list(COLUMNS)), st.permutations(list(COLUMNS)),
                    st.lists(st.sampled_from([*COLUMNS, "name", "phone", "", "card"]), max_size=10))
encodings = st.sampled_from(["utf-8", "utf-8-sig", "gb18030", "utf-16", "latin-1"])


def card_numbers(body: list[dict]) -> set[str]:
    out = set()
    for r in body:
        for k in ("card", "replaces", "holder_type", "event", "note"):
            out |= set(re.findall(r"\d{7,}", r.get(k) or ""))
    return out


def check_problems(problems: list[str], secret: set[str]) -> None:
    assert problems
    for p in problems:
        assert isinstance(p, str) and p and "\n" not in p and "\r" not in p, p
        assert not any(c in p for c in secret), p
        assert "Traceback" not in p


def encode(text: str, encoding: str) -> bytes:
    return text.encode(encoding, errors="replace")


@FUZZ
@given(header=headers, body=row_lists, encoding=encodings)
def test_csv_parser(header, body, encoding):
    raw = encode(csv_text(header, body), encoding)
    try:
        entries = parse_csv(raw)
    except RegistryError as exc:
        check_problems(exc.problems, card_numbers(body))
        assert len(exc.problems) <= cardfile.MAX_PROBLEMS + 1
    else:
        assert all(e["event"] in cardfile.EVENTS for e in entries)


@FUZZ
@given(body=row_lists, form=st.sampled_from(["object", "list", "cards"]), extra=st.dictionaries(junk, junk, max_size=3),
       encoding=st.sampled_from(["utf-8", "gb18030"]), cut=st.integers(0, 400))
def test_json_update_parser(body, form, extra, encoding, cut):
    rows = [{k: v for k, v in r.items() if v != ""} for r in body]
    doc = rows if form == "list" else {**extra, ("entries" if form == "object" else "cards"): rows}
    text = json.dumps(doc, ensure_ascii=False)
    for raw in (encode(text, encoding), encode(text, encoding)[:cut]):   # whole, and cut anywhere
        try:
            parse_update(raw)
        except RegistryError as exc:
            check_problems(exc.problems, card_numbers(body))


@FUZZ
@given(raw=st.binary(max_size=2000))
def test_any_bytes(raw):
    try:
        parse_update(raw)
    except RegistryError as exc:
        check_problems(exc.problems, {m.decode() for m in re.findall(rb"\d{7,}", raw)})


@FUZZ
@given(st.lists(st.one_of(row_lists.map(lambda b: ("csv", b)), row_lists.map(lambda b: ("json", b))),
                min_size=1, max_size=4),
       st.lists(cards, max_size=5))
def test_applying_updates(updates, asked):
    tmp = Path(tempfile.mkdtemp(prefix="cards-fuzz-"))
    ob = Outbox.open(tmp / "outbox.db", max_age_s=None)
    cfg = SimpleNamespace(doors={}, gateway=SimpleNamespace(state_dir=tmp))
    site = DoorSite(cfg, ob, payloads.Topics("edgegw", "gw1"), now=lambda: 1_780_000_000.0)
    try:
        secret = set()
        for form, body in updates:
            secret |= card_numbers(body)
            if form == "csv":
                raw = csv_text(list(COLUMNS), body).encode()
            else:
                raw = json.dumps({"entries": [{k: v for k, v in r.items() if v != ""} for r in body]}).encode()
            site.apply_update(raw)
        for body in [json.loads(r[0]) for r in ob._db.execute("SELECT payload FROM msg")]:
            assert body["code"] == "cards_update_rejected"
            check_problems(body["detail"]["problems"], secret)
        asked = [int(c) for c in asked] + [int(r["card"]) for _form, body in updates for r in body
                                           if r["card"].isascii() and r["card"].isdigit()
                                           and 0 < int(r["card"]) < 10**20]
        for card in asked:
            for day in (date(2015, 1, 1), date(2026, 6, 1), date(2036, 1, 1)):
                s = site.registry.state(card, day)
                assert s.status in ("valid", "expired", "not_yet_valid", "lost", "damaged", "replaced",
                                    "revoked", "no_holder_type", "unknown")
        site.remind_if_due()
    finally:
        site.close()   # every example opens files: a failing run must not run out of descriptors
        ob.close()
        shutil.rmtree(tmp, ignore_errors=True)


@FUZZ
@given(body=st.lists(rows, max_size=60), encoding=st.sampled_from(["utf-8", "gb18030"]),
       max_bytes=st.integers(50, 3000), max_entries=st.integers(1, 40))
def test_sizes_around_the_bounds(body, encoding, max_bytes, max_entries):
    # the bounds made small, so that both sides of them are reached
    raw = encode(csv_text(list(COLUMNS), body), encoding)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(updates, "MAX_UPDATE_BYTES", max_bytes)
        mp.setattr(updates, "MAX_UPDATE_ENTRIES", max_entries)
        try:
            entries = parse_update(raw)
        except RegistryError as exc:
            check_problems(exc.problems, card_numbers(body))
            if len(raw) > max_bytes:
                assert len(exc.problems) == 1 and "above the limit" in exc.problems[0]
        else:
            assert len(raw) <= max_bytes and len(entries) <= max_entries
