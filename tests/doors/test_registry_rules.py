"""Service manual J, as the registry applies it (issue 11, "Card registry"):

- an owner's door card used for parking keeps its 2-year door validity;
  parking is an entitlement on the card with its own monthly validity;
- a `valid_until` beyond what the holder type allows is refused, clearly;
- a top-up never changes the holder type silently;
- a holder reference erased at the source leaves only pseudonyms and dates.
"""
from __future__ import annotations

import json
from datetime import date
from types import SimpleNamespace

import pytest

from gateway.deliver import payloads
from gateway.deliver.outbox import Outbox
from gateway.doors.site import DoorSite

from .rig import Rig

D = date.fromisoformat
HEADER = "card,holder_type,issued,holder_ref,event,valid_until,replaces,note\n"
OWNER, TENANT, OLD, NEW, LATER = 3000000501, 3000000502, 3000000503, 3000000504, 3000000505


class Clock:
    def __init__(self, t: float = 1_780_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def open_site(tmp_path, doors=None):
    ob = Outbox.open(tmp_path / "outbox.db", max_age_s=None)
    cfg = SimpleNamespace(doors=doors or {}, gateway=SimpleNamespace(state_dir=tmp_path))
    return DoorSite(cfg, ob, payloads.Topics("edgegw", "gw1"), now=Clock()), ob


def rejected(ob) -> list[list[str]]:
    rows = [json.loads(r[0]) for r in ob._db.execute("SELECT payload FROM msg ORDER BY id")]
    return [b["detail"]["problems"] for b in rows if b.get("code") == "cards_update_rejected"]


def st(site, card, day):
    s = site.registry.state(card, D(day))
    return (s.status, s.holder_type, s.valid_until and s.valid_until.isoformat(),
            s.parking_until and s.parking_until.isoformat())


# --------------------------------------------------------------------------- parking entitlement

def test_parking_on_an_owner_card_is_an_entitlement_not_a_holder_type(tmp_path):
    site, ob = open_site(tmp_path)
    site.apply_update((HEADER + f"{OWNER},owner,2026-06-09,A-0101,issue,,,\n"
                                f"{OWNER},,2026-06-09,,parking,,,\n").encode())
    assert rejected(ob) == []
    # the parking month, as the manual words it: 9 June to 8 July
    assert st(site, OWNER, "2026-07-08") == ("valid", "owner", "2028-06-08", "2026-07-08")
    # after the parking month the door card is still the owner's, valid for 2 years
    assert st(site, OWNER, "2026-07-09") == ("valid", "owner", "2028-06-08", "2026-07-08")
    # a parking top-up renews the entitlement from its own day, not the door validity
    site.apply_update((HEADER + f"{OWNER},,2026-08-01,,parking,,,\n").encode())
    assert st(site, OWNER, "2026-08-31") == ("valid", "owner", "2028-06-08", "2026-08-31")


def test_owner_card_with_parking_raises_no_alarm_at_the_door_after_the_parking_month(tmp_path):
    csv = tmp_path / "cards.csv"
    csv.write_text(HEADER + f"{OWNER},owner,2026-05-01,A-0101,issue,,,\n{OWNER},,2026-05-01,,parking,,,\n")
    rig = Rig(tmp_path, doors={"registry_csv": csv})
    rig.poll()
    # 2026-06-20 local: the parking month (1 May to 31 May) is over, the door card is not
    rig.dev.add(1, 1, OWNER, 1_781_913_600)
    rig.poll_until_caught_up()
    access = [b for b in rig.events("access") if b["card"]]
    assert access[-1]["card_status"] == "valid" and access[-1]["holder_type"] == "owner"
    assert access[-1]["valid_until"] == "2028-04-30" and access[-1]["parking_until"] == "2026-05-31"
    assert rig.events("expired_card_used") == []


def test_a_parking_only_card_keeps_its_monthly_validity(tmp_path):
    site, _ = open_site(tmp_path)
    site.apply_update((HEADER + f"{TENANT},parking,2026-06-09,P-17,issue,,,\n"
                                f"{TENANT},,2026-07-09,,top_up,,,\n").encode())
    assert st(site, TENANT, "2026-07-08") == ("valid", "parking", "2026-07-08", "2026-07-08")
    assert st(site, TENANT, "2026-08-08") == ("valid", "parking", "2026-08-08", "2026-08-08")
    assert st(site, TENANT, "2026-08-09")[0] == "expired"


def test_a_top_up_never_changes_the_holder_type(tmp_path):
    site, ob = open_site(tmp_path)
    site.apply_update((HEADER + f"{OWNER},owner,2026-06-09,A-0101,issue,,,\n").encode())
    # what offices sent before: a parking "top-up" on the owner's card
    site.apply_update((HEADER + f"{OWNER},parking,2026-06-09,,top_up,,,\n").encode())
    site.apply_update((HEADER + f"{OWNER},tenant,2026-07-01,,renewal,,,\n").encode())
    assert rejected(ob) == [
        ["line 2: holder_type: a top_up does not change the holder type (the card is owner); "
         "for parking on this card use the event parking"],
        ["line 2: holder_type: a renewal does not change the holder type (the card is owner); "
         "to change it, issue the card again (event issue)"],
    ]
    assert st(site, OWNER, "2026-07-09") == ("valid", "owner", "2028-06-08", None)
    # the same holder type again is fine, and so is none
    site.apply_update((HEADER + f"{OWNER},owner,2027-06-01,,renewal,,,\n").encode())
    assert len(rejected(ob)) == 2 and st(site, OWNER, "2027-06-01")[2] == "2029-05-31"


def test_stored_parking_top_ups_on_a_door_card_count_as_the_entitlement(tmp_path):
    # entries stored before this rule (cards.json of an earlier version)
    (tmp_path / "cards.json").write_text(json.dumps({"cards": {
        "1": {"key": "entries", "value": [
            {"card": OWNER, "event": "issue", "date": "2026-06-09", "holder_type": "owner",
             "valid_until": None, "replaces": None, "holder_ref": "A-0101", "note": None, "source": "csv"},
            {"card": OWNER, "event": "top_up", "date": "2026-06-09", "holder_type": "parking",
             "valid_until": None, "replaces": None, "holder_ref": None, "note": None, "source": "mqtt"}]}}}))
    site, _ = open_site(tmp_path)
    assert st(site, OWNER, "2026-07-09") == ("valid", "owner", "2028-06-08", "2026-07-08")


# --------------------------------------------------------------------------- valid_until limits

def test_valid_until_beyond_the_holder_type_is_refused(tmp_path):
    site, ob = open_site(tmp_path)
    site.apply_update((HEADER + f"{TENANT},tenant,2026-06-09,B-1,issue,2028-01-01,,\n"
                                f"{OWNER},owner,2026-06-09,A-1,issue,2028-06-08,,\n").encode())
    assert rejected(ob) == [["line 2: valid_until: 2028-01-01 is beyond what a tenant card allows "
                             "(1 year from 2026-06-09: to 2027-06-08)"]]
    assert site.registry.state(OWNER, D("2026-06-09")).status == "unknown"   # refused whole
    site.apply_update((HEADER + f"{TENANT},tenant,2026-06-09,B-1,issue,2027-06-08,,\n"
                                f"{OWNER},owner,2026-06-09,A-1,issue,2028-06-08,,\n"
                                f"{OWNER},,2026-06-09,,parking,2026-07-31,,\n").encode())
    assert len(rejected(ob)) == 2
    assert rejected(ob)[1] == ["line 4: valid_until: 2026-07-31 is beyond what a parking entitlement allows "
                               "(1 month from 2026-06-09: to 2026-07-08)"]
    site.apply_update((HEADER + f"{TENANT},tenant,2026-06-09,B-1,issue,2027-06-08,,\n").encode())
    assert len(rejected(ob)) == 2
    # a renewal before the end may carry the unused days over: one period from the old end
    site.apply_update((HEADER + f"{TENANT},,2027-05-20,,renewal,2028-06-09,,\n").encode())
    assert rejected(ob)[2] == ["line 2: valid_until: 2028-06-09 is beyond what a tenant card allows "
                               "(1 year from 2027-06-09: to 2028-06-08)"]
    site.apply_update((HEADER + f"{TENANT},,2027-05-20,,renewal,2028-06-08,,\n").encode())
    assert len(rejected(ob)) == 3 and st(site, TENANT, "2028-06-08")[:3] == ("valid", "tenant", "2028-06-08")


def test_staff_cards_take_any_valid_until(tmp_path):
    site, ob = open_site(tmp_path)
    site.apply_update((HEADER + "3000000599,staff,2026-01-01,S-1,issue,2040-12-31,,\n").encode())
    assert rejected(ob) == [] and st(site, 3000000599, "2040-12-31")[0] == "valid"


# --------------------------------------------------------------------------- erasure

ERASE_SOURCE = (HEADER
                + f"{OLD},tenant,2025-01-10,B-1203,issue,,,moved in\n"
                + f"{OLD},,2025-06-01,,loss,,,reported at the desk\n"
                + f"{NEW},,2025-06-02,B-1203,replacement,,{OLD},\n"
                + f"{LATER},tenant,2026-03-01,B-1203,issue,,,the next tenant\n")


def state_bytes(tmp_path) -> bytes:
    return b"".join(f.read_bytes() for f in tmp_path.iterdir() if f.name.startswith("cards.db"))


def test_erasure_keeps_only_pseudonyms_and_dates(tmp_path):
    site, ob = open_site(tmp_path)
    site.apply_update(ERASE_SOURCE.encode())
    assert st(site, NEW, "2025-12-01")[:2] == ("valid", "tenant")
    site.apply_update((HEADER + ",,2026-01-31,B-1203,erase,,,\n").encode())
    assert rejected(ob) == []
    # states still hold, found by pseudonym
    assert st(site, OLD, "2025-06-05")[0] == "lost"
    assert st(site, NEW, "2025-12-01")[:3] == ("valid", "tenant", "2026-01-09")
    # the holder after the erasure day is another holder: untouched
    later = site.registry.history(LATER)
    assert later and later[0]["holder_ref"] == "B-1203"
    pseudonyms = {"p:" + site.pseudonym(OLD), "p:" + site.pseudonym(NEW)}
    for card in (OLD, NEW):
        hist = site.registry.history(card)
        assert hist and all(e["card"] in pseudonyms and e["replaces"] in (None, *pseudonyms) for e in hist)
        assert all(e["holder_ref"] is None and e["note"] is None for e in hist)
        assert [e["date"] for e in hist] == sorted(e["date"] for e in hist)
    raw = state_bytes(tmp_path)
    for gone in (str(OLD).encode(), str(NEW).encode(), b"moved in", b"reported at the desk"):
        assert gone not in raw, gone
    assert str(LATER).encode() in raw


def test_erasure_survives_the_source_sending_the_old_rows_again(tmp_path):
    csv = tmp_path / "cards.csv"
    csv.write_text(ERASE_SOURCE + ",,2026-01-31,B-1203,erase,,,\n")
    site, _ = open_site(tmp_path, {"registry_csv": csv})
    site.close()
    site, ob = open_site(tmp_path, {"registry_csv": csv})   # the same file at the next start
    site.apply_update(ERASE_SOURCE.encode())                 # and the old rows again over MQTT
    assert rejected(ob) == []
    assert st(site, OLD, "2025-06-05")[0] == "lost" and st(site, NEW, "2025-12-01")[0] == "valid"
    raw = state_bytes(tmp_path)
    assert str(OLD).encode() not in raw and str(NEW).encode() not in raw
    assert len(site.registry.history(OLD)) == 3              # issue, loss, replaced: no doubles


def test_erase_row_needs_a_holder_reference(tmp_path):
    site, ob = open_site(tmp_path)
    site.apply_update((HEADER + f"{OLD},,2026-01-31,,erase,,,\n").encode())
    assert rejected(ob) == [["line 2: holder_ref: missing (erase names the holder reference deleted "
                             "at the source)"]]


@pytest.mark.parametrize("rows", [
    [f"{OLD},tenant,2026-01-01,R,issue,,,", f"{NEW},,2026-02-01,,replacement,,{OLD},",
     f"{OLD},,2026-02-01,,replacement,,{NEW},"],
    [f"{OLD},,2026-02-01,,replacement,,{OLD},"],
])
def test_replacement_loops_never_hang_or_crash(tmp_path, rows):
    site, ob = open_site(tmp_path)
    site.apply_update((HEADER + "\n".join(rows) + "\n").encode())
    for card in (OLD, NEW):
        assert site.registry.state(card, D("2026-03-01")).status in (
            "valid", "replaced", "unknown", "no_holder_type", "not_yet_valid")
