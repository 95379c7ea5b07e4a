"""Card registry: validity rules (month ends, leap years), history entries,
CSV and MQTT updates, the daily reminder, and pseudonyms."""
from __future__ import annotations

import json
import os
import stat
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from hypothesis import given, strategies as st

from gateway.deliver import payloads
from gateway.deliver.outbox import Outbox
from gateway.doors.cards import Pseudonymizer, Rules, load_or_create_key, read_key, valid_until
from gateway.doors.registry import CardRegistry
from gateway.doors.site import DoorSite
from gateway.doors.updates import parse_update, payload_rows
from gateway.site.cardfile import RegistryError, parse_csv

D = date.fromisoformat


# --------------------------------------------------------------------------- validity

@pytest.mark.parametrize("issued,months,last_day", [
    ("2026-06-09", 1, "2026-07-08"),   # the manual's example
    ("2026-01-28", 1, "2026-02-27"),
    ("2026-01-29", 1, "2026-02-28"),   # 29 February 2026 does not exist: to the end of February
    ("2026-01-30", 1, "2026-02-28"),
    ("2026-01-31", 1, "2026-02-28"),
    ("2024-01-29", 1, "2024-02-28"),   # leap year: 29 February exists, the day before it
    ("2024-01-30", 1, "2024-02-29"),
    ("2024-01-31", 1, "2024-02-29"),
    ("2024-02-29", 1, "2024-03-28"),
    ("2026-02-28", 1, "2026-03-27"),
    ("2026-03-31", 1, "2026-04-30"),
    ("2026-05-31", 1, "2026-06-30"),
    ("2025-12-31", 1, "2026-01-30"),   # across the year end
    ("2026-12-01", 1, "2026-12-31"),
    ("2026-11-30", 1, "2026-12-29"),
    ("2026-06-09", 12, "2027-06-08"),  # tenant, merchant: 1 year
    ("2026-06-09", 24, "2028-06-08"),  # owner, family: 2 years
    ("2024-02-29", 12, "2025-02-28"),  # no 29 February in 2025
    ("2024-02-29", 24, "2026-02-28"),
    ("2024-02-29", 48, "2028-02-28"),  # 29 February 2028 exists: the day before
    ("2023-03-01", 24, "2025-02-28"),
])
def test_valid_until(issued, months, last_day):
    assert valid_until(D(issued), months) == D(last_day)


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31)), st.integers(1, 36))
def test_valid_until_properties(issued, months):
    last = valid_until(issued, months)
    assert last >= issued
    # never more than the period, never short by more than the missing days of a month end
    y, m = divmod(issued.month - 1 + months, 12)
    first_of_target = date(issued.year + y, m + 1, 1)
    assert first_of_target - timedelta(days=1) <= last + timedelta(days=27)
    assert last.year * 12 + last.month - (issued.year * 12 + issued.month) in (months - 1, months)
    # a later issue day never ends earlier
    assert valid_until(issued + timedelta(days=1), months) >= last


def test_rules_by_holder_type_and_overrides():
    r = Rules()
    day = D("2026-06-09")
    assert r.until("owner", day) == r.until("family", day) == D("2028-06-08")
    assert r.until("tenant", day) == r.until("merchant", day) == D("2027-06-08")
    assert r.until("parking", day) == D("2026-07-08")
    assert r.until("staff", day) is None
    r2 = Rules({"tenant_years": 2, "parking_months": 3, "unrelated": 9})
    assert r2.until("tenant", day) == D("2028-06-08") and r2.until("parking", day) == D("2026-09-08")


# --------------------------------------------------------------------------- registry

CSV = """card,holder_type,issued,holder_ref,event,valid_until,replaces,note,name,phone
1001,tenant,2026-01-10,B-1203,issue,,,,Zhang San,13800000000
1002,parking,2026-05-31,P-17,,,,,Li Si,
1002,,2026-06-30,,top_up,,,,,
1003,owner,2025-01-01,A-0101,,,,,,
1003,,2025-06-01,,loss,,,reported at the desk,,
1004,owner,2025-06-02,A-0101,replacement,,1003,,,
1005,merchant,2026-01-01,M-1,,2026-03-31,,,,
1006,staff,2010-01-01,S-1,,,,,,
1006,,2026-04-01,,revoke,,,,,
1007,,2026-02-01,,damage,,,,,
1007,family,2025-02-01,A-0102,,,,,,
1008,,2026-01-01,,top_up,,,,,
"""


def load(reg, text: str, source: str = "csv:cards.csv") -> int:
    """Entries added (the registry's own load: row by row, in one transaction)."""
    return reg.ingest(payload_rows(text.encode()), source)[1]


@pytest.fixture
def reg(tmp_path):
    r = CardRegistry(tmp_path / "cards.db")
    load(r, CSV)
    yield r
    r.close()


def state(reg, card, day):
    s = reg.state(card, D(day))
    return s.status, s.holder_type, s.valid_until and s.valid_until.isoformat()


def test_registry_states(reg):
    assert state(reg, 1001, "2026-05-28") == ("valid", "tenant", "2027-01-09")
    assert state(reg, 1001, "2027-01-09") == ("valid", "tenant", "2027-01-09")
    assert state(reg, 1001, "2027-01-10") == ("expired", "tenant", "2027-01-09")
    assert state(reg, 1001, "2026-01-09")[0] == "not_yet_valid"
    # parking 31 May -> 30 June; topped up on 30 June -> 29 July
    assert state(reg, 1002, "2026-06-29") == ("valid", "parking", "2026-06-30")
    assert state(reg, 1002, "2026-07-29") == ("valid", "parking", "2026-07-29")
    assert state(reg, 1002, "2026-07-30")[0] == "expired"
    # lost, and the replacement carries on its period
    assert state(reg, 1003, "2025-05-31") == ("valid", "owner", "2026-12-31")
    assert state(reg, 1003, "2025-06-01")[0] == "lost"
    assert state(reg, 1003, "2025-06-02")[0] == "lost"
    assert state(reg, 1004, "2025-06-02") == ("valid", "owner", "2026-12-31")
    assert state(reg, 1005, "2026-03-31") == ("valid", "merchant", "2026-03-31")
    assert state(reg, 1005, "2026-04-01")[0] == "expired"
    assert state(reg, 1006, "2026-03-31") == ("valid", "staff", None)
    assert state(reg, 1006, "2026-04-01")[0] == "revoked"
    assert state(reg, 1007, "2026-01-31")[0] == "valid"
    assert state(reg, 1007, "2026-02-01")[0] == "damaged"
    assert state(reg, 1008, "2026-02-01")[0] == "no_holder_type"   # never "forever"
    assert state(reg, 9999, "2026-02-01")[0] == "unknown"


def test_replaced_card_is_invalid_after_the_replacement(reg):
    load(reg, "card,holder_type,issued,event,replaces\n2001,tenant,2026-01-01,issue,\n"
              "2002,,2026-03-01,replacement,2001\n", "t")
    assert state(reg, 2001, "2026-02-28")[0] == "valid"
    assert state(reg, 2001, "2026-03-01")[0] == "replaced"
    assert state(reg, 2002, "2026-03-01") == ("valid", "tenant", "2026-12-31")


def test_history_is_kept_and_merging_is_idempotent(tmp_path, reg):
    assert [e["event"] for e in reg.history(1003)] == ["issue", "loss", "replacement"]
    n = reg.count_cards()
    assert load(reg, CSV, "mqtt") == 0
    assert reg.count_cards() == n == 8
    again = CardRegistry(tmp_path / "cards.db")
    assert all(again.history(c) == reg.history(c) for c in range(1001, 1009))
    assert stat.S_IMODE(os.stat(tmp_path / "cards.db").st_mode) == 0o600


def test_other_columns_are_not_stored(tmp_path, reg):
    raw = b"".join(f.read_bytes() for f in tmp_path.glob("cards.db*"))
    assert b"Zhang San" not in raw and b"13800000000" not in raw
    assert b"B-1203" in raw   # the site's own holder reference is kept (never published)


def test_csv_problems_name_the_line_and_column_not_the_card():
    bad = ("card,holder_type,issued\n12ab,tenant,2026-01-01\n5551234,landlord,2026-02-30\n"
           "5551235,,2026-01-01\n5551236,tenant,2026-01-01\n")
    with pytest.raises(RegistryError) as e:
        parse_csv(bad)
    assert e.value.problems == [
        "line 2: card: is not a card number (digits only, as printed on the card)",
        "line 3: holder_type: 'landlord' is not one of owner, family, tenant, merchant, staff, parking",
        "line 3: issued: is not a date YYYY-MM-DD",
        "line 4: holder_type: missing",
    ]
    assert not any("5551234" in p for p in e.value.problems)
    with pytest.raises(RegistryError, match="missing column"):
        parse_csv("number,type\n1,tenant\n")
    with pytest.raises(RegistryError, match="replaces: missing"):
        parse_csv("card,holder_type,issued,event\n1,,2026-01-01,replacement\n")


def test_expiring_within_days(reg):
    soon = reg.expiring(D("2026-06-15"), 30)
    assert [(c, s.valid_until.isoformat()) for c, s in soon] == [(1002, "2026-06-30")]
    assert reg.expiring(D("2026-12-10"), 30)[0][0] == 1004


# --------------------------------------------------------------------------- the site: MQTT updates, reminder

class Clock:
    def __init__(self, iso):
        self.t = datetime.fromisoformat(iso).timestamp()

    def __call__(self):
        return self.t


def site(tmp_path, clock, doors=None):
    ob = Outbox.open(tmp_path / "outbox.db", max_age_s=None)
    cfg = SimpleNamespace(doors=doors or {}, gateway=SimpleNamespace(state_dir=tmp_path))
    return DoorSite(cfg, ob, payloads.Topics("edgegw", "gw1"), now=clock), ob


def queued(ob):
    return [json.loads(r[0]) for r in ob._db.execute("SELECT payload FROM msg ORDER BY id")]


def test_registry_update_over_mqtt(tmp_path):
    clock = Clock("2026-06-15T09:00:00+08:00")
    s, ob = site(tmp_path, clock)
    topic = "edgegw/gw1/config/cards"
    assert s.cards_topic == topic
    body = json.dumps({"entries": [{"card": "3000000017", "holder_type": "tenant", "issued": "2026-06-01"}]})
    s.on_message(topic, body.encode())
    assert s.registry.state(3000000017, D("2026-06-15")).valid
    assert s.apply_update(body.encode()).status == "repeat"   # redelivered retained message
    s.on_message(topic, b"card,holder_type,issued\n3000000018,parking,2026-06-01\n")
    assert s.registry.state(3000000018, D("2026-06-30")).valid
    s.on_message("edgegw/gw1/other", b"card,holder_type,issued\n1,staff,2026-01-01\n")
    assert s.registry.state(1, D("2026-06-30")).status == "unknown"
    s.on_message(topic, b"")                                  # retained message cleared: nothing
    # a bad update is refused whole, and said so without card numbers
    s.on_message(topic, json.dumps({"entries": [{"card": "3000000019", "holder_type": "x",
                                                 "issued": "2026-06-01"}]}).encode())
    assert s.registry.state(3000000019, D("2026-06-30")).status == "unknown"
    ev = queued(ob)[-1]
    assert ev["code"] == "cards_update_rejected" and "3000000019" not in json.dumps(ev)
    # and it survives a restart
    s2, _ = site(tmp_path, clock)
    assert s2.registry.state(3000000017, D("2026-06-15")).valid
    assert not any(b"3000000017" in f.read_bytes() for f in tmp_path.glob("outbox.db*"))


def test_parse_update_formats():
    assert parse_update(b'[{"card": 5, "holder_type": "staff", "issued": "2026-01-01"}]')[0]["card"] == 5
    with pytest.raises(RegistryError, match=r"entries\[0\]\.issued"):
        parse_update(b'{"entries": [{"card": 5, "holder_type": "staff", "issued": "01/01/2026"}]}')
    with pytest.raises(RegistryError, match="not JSON"):
        parse_update(b"{nope")


def test_daily_reminder_once_a_day_after_the_hour(tmp_path):
    clock = Clock("2026-06-15T07:59:00+08:00")
    s, ob = site(tmp_path, clock, {"reminder_hour": 8})
    s.apply_update(b"card,holder_type,issued\n3000000017,parking,2026-06-01\n3000000018,tenant,2026-06-01\n")
    assert s.remind_if_due() is None                          # before 08:00 local
    clock.t += 120
    body = s.remind_if_due()
    assert body["type"] == "cards_expiring" and body["id"] == "cards_expiring/2026-06-15"
    assert body["cards"] == [{"card": s.pseudonym(3000000017), "holder_type": "parking", "entitlement": None,
                              "valid_until": "2026-06-30", "days_left": 15}]
    assert "3000000017" not in json.dumps(body)
    assert s.remind_if_due() is None                          # once a day
    s2, _ = site(tmp_path, clock)
    assert s2.remind_if_due() is None                         # ... across a restart too
    clock.t += 86400
    assert s2.remind_if_due()["date"] == "2026-06-16"
    assert [m["date"] for m in queued(ob) if m.get("type") == "cards_expiring"] == ["2026-06-15", "2026-06-16"]


def test_no_reminder_without_a_registry(tmp_path):
    s, ob = site(tmp_path, Clock("2026-06-15T12:00:00+08:00"))
    assert s.remind_if_due() is None and queued(ob) == []


# --------------------------------------------------------------------------- pseudonyms

def test_pseudonyms_stable_per_site_and_different_across_sites(tmp_path):
    key_a, created = load_or_create_key(tmp_path / "a" / "k")
    assert created and stat.S_IMODE(os.stat(tmp_path / "a" / "k").st_mode) == 0o600
    again, created = load_or_create_key(tmp_path / "a" / "k")
    assert (again, created) == (key_a, False)
    key_b, _ = load_or_create_key(tmp_path / "b" / "k")
    a, a2, b = Pseudonymizer(key_a), Pseudonymizer(again), Pseudonymizer(key_b)
    cards = [1, 3000000017, 3000000018, 4294967295]
    assert [a(c) for c in cards] == [a2(c) for c in cards]
    assert all(a(c) != b(c) for c in cards)
    assert len({a(c) for c in cards}) == len(cards)
    assert all(len(a(c)) == 16 and int(a(c), 16) >= 0 for c in cards)
    assert a(0) is None and a(None) is None


def test_site_key_formats(tmp_path):
    (tmp_path / "hex").write_text("ab" * 32 + "\n")
    assert read_key(tmp_path / "hex") == bytes([0xAB]) * 32
    (tmp_path / "text").write_text("our site secret, long enough\n")
    assert read_key(tmp_path / "text") == b"our site secret, long enough"
    (tmp_path / "short").write_text("abc")
    with pytest.raises(ValueError):
        read_key(tmp_path / "short")


def test_site_generates_its_key_in_the_state_folder_and_logs_it(tmp_path, caplog):
    s, _ = site(tmp_path, Clock("2026-06-15T12:00:00+08:00"))
    key = tmp_path / "door-pseudonym.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert "created a new card pseudonym key" in caplog.text
    s2, _ = site(tmp_path, Clock("2026-06-15T12:00:00+08:00"))
    assert s2.pseudonym(42) == s.pseudonym(42)
