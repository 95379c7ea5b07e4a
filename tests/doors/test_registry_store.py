"""The registry's storage and its update path (issue 12 #3), piece by piece:
updates are applied on the worker thread, never on the event loop; the
documented bounds refuse an update whole, with one event; cards.json of an
earlier version moves into cards.db once, read entry by entry, with memory
that does not follow its size (measured in a subprocess: VmHWM from
/proc/self/status, a promise check like test_registry_bounds.py)."""
from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway.deliver import payloads
from gateway.deliver.outbox import Outbox
from gateway.doors import registry as registry_mod
from gateway.doors.site import DoorSite
from gateway.site.cardfile import MAX_UPDATE_BYTES, MAX_UPDATE_ENTRIES

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "edgegw/gw1/config/cards"
MEMORY_BOUND_KB = 120 * 1024
D = date.fromisoformat


def open_site(tmp_path, doors=None, now=lambda: 1_780_000_000.0):
    ob = Outbox.open(tmp_path / "outbox.db", max_age_s=None)
    cfg = SimpleNamespace(doors=doors or {}, gateway=SimpleNamespace(state_dir=tmp_path))
    return DoorSite(cfg, ob, payloads.Topics("edgegw", "gw1"), now=now), ob


def events(ob, code="cards_update_rejected") -> list[dict]:
    rows = [json.loads(r[0]) for r in ob._db.execute("SELECT payload FROM msg ORDER BY id")]
    return [b for b in rows if b.get("code") == code]


def csv_lines(n: int, first: int = 3_100_000_000, holder: str = "tenant") -> bytes:
    return ("card,holder_type,issued\n" + "".join(f"{first + i},{holder},2026-06-01\n" for i in range(n))).encode()


def test_an_update_is_applied_on_the_worker_not_the_loop(tmp_path):
    site, ob = open_site(tmp_path)

    async def go():
        site.on_message(TOPIC, csv_lines(5000))
        handed_over = site.worker.pending          # on_message returned before the work was done
        await site.settled()
        return handed_over, threading.current_thread().name
    handed_over, loop_thread = asyncio.run(go())
    assert handed_over == 1
    assert site.last_update.status == "applied" and site.last_update.added == 5000
    assert site.last_update.thread.startswith("cards") and site.last_update.thread != loop_thread
    assert site.registry.state(3_100_000_042, D("2026-06-02")).valid
    site.close()


def test_the_registry_in_force_until_the_commit(tmp_path):
    # what the loop reads while the worker writes: the registry as it was
    site, _ = open_site(tmp_path)
    site.apply_update(csv_lines(1, first=3_200_000_000))
    seen = []
    real = site.registry._check_fresh

    def during(problems):
        seen.append(site.registry.state(3_100_000_001, D("2026-06-02")).status)   # the loop's connection
        real(problems)
    site.registry._check_fresh = during
    site.apply_update(csv_lines(10))
    assert seen == ["unknown"]
    assert site.registry.state(3_100_000_001, D("2026-06-02")).status == "valid"
    site.close()


def test_an_oversize_update_is_refused_on_arrival_once_per_message(tmp_path):
    site, ob = open_site(tmp_path)
    site.apply_update(csv_lines(3))
    big = csv_lines(3, first=3_300_000_000) + b"#" * MAX_UPDATE_BYTES

    async def go():
        site.on_message(TOPIC, big)
        assert site.worker.pending == 0            # refused by its length: never parsed
        site.on_message(TOPIC, big)                # the retained message again, on a reconnect
        await site.settled()
    asyncio.run(go())
    [ev] = events(ob)
    assert ev["detail"]["problems"] == [
        "the message is 4.0 MiB, above the limit of 4 MiB for one update: send the entries in several "
        "messages (entries are kept, so each message need only carry what is new)"]
    assert site.registry.state(3_300_000_000, D("2026-06-02")).status == "unknown"
    assert site.registry.state(3_100_000_000, D("2026-06-02")).valid       # the old registry stays
    site.close()


def test_a_refused_retained_message_is_reported_once(tmp_path):
    site, ob = open_site(tmp_path)
    bad = b"card,holder_type,issued\n3000000001,tenant,2026-02-30\n"

    async def go():
        for _ in range(3):                         # the retained message at each reconnect
            site.on_message(TOPIC, bad)
            await site.settled()
    asyncio.run(go())
    assert [e["detail"]["problems"] for e in events(ob)] == [["line 2: issued: is not a date YYYY-MM-DD"]]
    site.close()


def test_too_many_entries_in_one_update(tmp_path):
    site, ob = open_site(tmp_path)
    payload = csv_lines(MAX_UPDATE_ENTRIES + 1)
    assert len(payload) < MAX_UPDATE_BYTES
    site.apply_update(payload)
    assert events(ob)[0]["detail"]["problems"] == [f"more than {MAX_UPDATE_ENTRIES} entries (the limit for one load)"]
    assert not site.registry.loaded
    site.close()


def test_the_registry_as_a_whole_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(registry_mod, "MAX_FILE_ENTRIES", 100)
    site, ob = open_site(tmp_path)
    site.apply_update(csv_lines(60))
    site.apply_update(csv_lines(60, first=3_400_000_000))
    assert events(ob)[0]["detail"]["problems"] == [
        "the registry would hold 120 entries, above its limit of 100"]
    assert site.registry.count_cards() == 60
    site.close()


def test_a_repeated_message_is_recognised(tmp_path):
    site, _ = open_site(tmp_path)
    assert site.apply_update(csv_lines(10)).status == "applied"
    assert site.apply_update(csv_lines(10)).status == "repeat"
    assert site.apply_update(b"  \n").status == "cleared"
    site.close()


def test_a_csv_the_rules_refuse_at_start_leaves_the_registry_and_the_daemon_up(tmp_path, caplog):
    csv = tmp_path / "cards.csv"
    csv.write_text("card,holder_type,issued\n3000000001,tenant,2026-01-01\n")
    site, _ = open_site(tmp_path, {"registry_csv": csv})
    site.close()
    csv.write_text("card,holder_type,issued,event,valid_until\n3000000001,tenant,2026-01-01,,\n"
                   "3000000002,tenant,2026-01-01,issue,2029-01-01\n")
    site, ob = open_site(tmp_path, {"registry_csv": csv})
    [ev] = events(ob)
    assert ev["detail"]["source"] == "csv:cards.csv" and "beyond what a tenant card allows" in ev["detail"]["problems"][0]
    assert site.registry.state(3000000001, D("2026-02-01")).valid
    assert "3000000002" not in caplog.text
    site.close()


def test_an_unchanged_csv_is_not_read_again(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="gateway.doors")
    csv = tmp_path / "cards.csv"
    csv.write_text("card,holder_type,issued\n3000000001,tenant,2026-01-01\n")
    open_site(tmp_path, {"registry_csv": csv})[0].close()
    caplog.clear()
    open_site(tmp_path, {"registry_csv": csv})[0].close()
    assert "unchanged since it was last loaded" in caplog.text


def test_the_daily_reminder_runs_on_the_worker(tmp_path):
    site, ob = open_site(tmp_path, now=lambda: 1_781_240_400.0)    # 2026-06-12 13:00 in Shanghai
    site.apply_update(b"card,holder_type,issued,event\n3000000001,owner,2026-06-01,issue\n"
                      b"3000000001,,2026-06-01,parking\n")

    async def one_round():
        task = asyncio.create_task(site.run())
        for _ in range(200):
            await asyncio.sleep(0.01)
            if site.registry.meta().get("reminded_on"):
                break
        task.cancel()
    asyncio.run(one_round())
    rows = [json.loads(r[0]) for r in ob._db.execute("SELECT payload FROM msg")]
    [body] = [b for b in rows if b.get("type") == "cards_expiring"]
    assert body["cards"] == [{"card": site.pseudonym(3000000001), "holder_type": "owner", "entitlement": "parking",
                              "valid_until": "2026-06-30", "days_left": 18}]
    site.close()


# --------------------------------------------------------------------------- cards.json of an earlier version

def legacy_cards_json(path: Path, n: int) -> None:
    """cards.json as TinyDB wrote it (one document, indent 1, sorted keys)."""
    entries = [{"card": 3_500_000_000 + i, "event": "issue", "date": "2026-01-01", "holder_type": "tenant",
                "valid_until": None, "replaces": None, "holder_ref": f"R-{i}", "note": None, "source": "mqtt"}
               for i in range(n)]
    doc = {"cards": {"1": {"key": "entries", "value": entries},
                     "2": {"key": "meta", "value": {"mqtt_sha256": "ab" * 32, "reminded_on": "2026-06-01"}}}}
    path.write_text(json.dumps(doc, indent=1, sort_keys=True))


PROBE = """
import sys, json
from pathlib import Path
from types import SimpleNamespace
from datetime import date
from gateway.deliver import payloads
from gateway.deliver.outbox import Outbox
from gateway.doors.site import DoorSite
d = Path(sys.argv[1])
ob = Outbox.open(d / "outbox.db", max_age_s=None)
site = DoorSite(SimpleNamespace(doors={}, gateway=SimpleNamespace(state_dir=d)), ob,
                payloads.Topics("edgegw", "gw1"))
st = site.registry.state(int(sys.argv[2]), date(2026, 6, 1))
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
print(json.dumps({"hwm_kb": hwm, "status": st.status, "cards": site.registry.count_cards(),
                  "meta": site.registry.meta()}))
"""


def probe(state: Path, card: int) -> dict:
    r = subprocess.run([sys.executable, "-c", PROBE, str(state), str(card)], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_large_cards_json_moves_once_with_flat_memory(tmp_path):
    n = 150_000
    legacy_cards_json(tmp_path / "cards.json", n)
    size_mb = (tmp_path / "cards.json").stat().st_size / 2**20
    first = probe(tmp_path, 3_500_000_000 + n - 1)
    assert not (tmp_path / "cards.json").exists()
    assert first["status"] == "valid" and first["cards"] == n
    assert first["meta"]["mqtt_sha256"] == "ab" * 32 and first["meta"]["reminded_on"] == "2026-06-01"
    again = probe(tmp_path, 3_500_000_000)
    print(f"\ncards.json {size_mb:.0f} MB, {n} entries: peak {first['hwm_kb'] // 1024} MB while moving it, "
          f"{again['hwm_kb'] // 1024} MB at the next start")
    assert first["hwm_kb"] <= MEMORY_BOUND_KB and again["hwm_kb"] <= MEMORY_BOUND_KB
    assert again["status"] == "valid"


def test_a_broken_cards_json_keeps_what_it_could_read_and_the_file(tmp_path):
    legacy_cards_json(tmp_path / "cards.json", 10)
    raw = (tmp_path / "cards.json").read_text()
    cut = raw.index('"card": 3500000005')
    (tmp_path / "cards.json").write_text(raw[:cut] + "}{ broken")
    site, _ = open_site(tmp_path)
    assert site.registry.count_cards() == 5
    assert not (tmp_path / "cards.json").exists()
    assert len(list(tmp_path.glob("cards.json.corrupt-*"))) == 1
    site.close()
