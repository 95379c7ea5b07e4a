"""Golden cases: one log record in, the published messages out
(tests/doors/golden/events.toml), one case per event type and per registry
verdict, read through the real reader from the simulated controller."""
from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path

import pytest

from protocols import doorlog

from .rig import Rig

GOLDEN = tomllib.loads((Path(__file__).parent / "golden" / "events.toml").read_text(encoding="utf-8"))
CASES = GOLDEN["case"]


def _ts(s: str) -> int:
    return int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp())


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("golden")
    key = tmp / "site.key"
    key.write_text(GOLDEN["key"] + "\n")
    key.chmod(0o600)
    csv = tmp / "cards.csv"
    csv.write_text(GOLDEN["registry"].lstrip())
    rig = Rig(tmp, capacity=100, doors={"pseudonym_key_file": key, "registry_csv": csv})
    rig.poll()  # first contact on an empty log
    for c in CASES:
        r = c["record"]
        rig.dev.add(r["event"], r["door"], r["card"], _ts(r["time"]))
    rig.poll_until_caught_up()
    by_index: dict[int, list[dict]] = {}
    for body in rig.events():
        if "index" in body:
            by_index.setdefault(body["index"], []).append(body)
    return by_index


def test_every_event_type_has_a_case():
    codes = {c["record"]["event"] for c in CASES}
    assert set(doorlog.EVENT_TYPES) <= codes


@pytest.mark.parametrize("i", range(len(CASES)), ids=[c["name"] for c in CASES])
def test_golden(published, i):
    case = CASES[i]
    got = published[i + 1]  # records are numbered from 1 in case order
    want = case["expect"]
    assert [g["type"] for g in got] == [w["type"] for w in want]
    for g, w in zip(got, want):
        projected = {k: g.get(k) for k in w}
        expected = {k: (None if v == "" else v) for k, v in w.items()}
        assert projected == expected
        assert g["index"] == i + 1 and g["epoch"] == 1 and g["serial"] == "DC000001"
        assert g["controller"] == "door-1" and g["v"] == 1
    access = got[0]
    assert access["id"] == f"DC000001/1/{i + 1}"
    assert "card_number" not in access  # raw numbers stay off unless the site turns them on
    if len(got) > 1:
        assert got[1]["access_id"] == access["id"] and got[1]["id"] == access["id"] + "/card"
