"""Registry files as office PCs save them (issue 12 #5): UTF-8 (with or
without a BOM) and GB18030/GBK, common on Chinese office PCs, are read; a file
that is neither, or too big, gives one clear line and never a traceback, in
`edgegw config check` (subprocess, as ExecStartPre runs it), at start and over
MQTT."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway.deliver import payloads
from gateway.deliver.outbox import Outbox
from gateway.doors.site import DoorSite
from gateway.site import cardfile
from gateway.site.cardfile import RegistryError, parse_csv
from gateway.site.config import check_config

ROOT = Path(__file__).resolve().parents[2]
TEXT = ("card,holder_type,issued,holder_ref,event,valid_until,replaces,note,姓名\n"
        "3000000017,tenant,2026-01-10,B座-1203,issue,,,押金已收,张三\n"
        "3000000018,owner,2026-01-11,A座-0101,issue,,,业主本人办理,李四\n")


def write_config(tmp_path: Path, csv_name: str) -> Path:
    p = tmp_path / "edgegw.toml"
    p.write_text(f'[gateway]\nid = "g1"\nstate_dir = "state"\n\n[doors]\nregistry_csv = "{csv_name}"\n',
                 encoding="utf-8")
    return p


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030", "gbk"])
def test_office_encodings_are_read(tmp_path, encoding):
    raw = TEXT.encode(encoding)
    entries = parse_csv(raw)
    assert [e["holder_ref"] for e in entries] == ["B座-1203", "A座-0101"]
    assert entries[1]["note"] == "业主本人办理"
    (tmp_path / "cards.csv").write_bytes(raw)
    assert check_config(write_config(tmp_path, "cards.csv")) == []


def test_gbk_file_is_loaded_at_start(tmp_path):
    (tmp_path / "cards.csv").write_bytes(TEXT.encode("gbk"))
    ob = Outbox.open(tmp_path / "outbox.db", max_age_s=None)
    cfg = SimpleNamespace(doors={"registry_csv": tmp_path / "cards.csv"}, gateway=SimpleNamespace(state_dir=tmp_path))
    site = DoorSite(cfg, ob, payloads.Topics("edgegw", "gw1"))
    hist = site.registry.history(3000000018)
    assert hist[0]["holder_ref"] == "A座-0101" and hist[0]["note"] == "业主本人办理"
    site.close()


NEITHER = [
    pytest.param(TEXT.encode("utf-16"), id="utf-16"),
    pytest.param(b"card,holder_type,issued\n3000000017,tenant,2026-01-10\n\xff\xfe\x00garbage\x80\n", id="binary"),
    pytest.param(b"card,holder_type,issued\n3000000017,\x81\x30,2026-01-10\n", id="truncated-gb18030"),
]


@pytest.mark.parametrize("raw", NEITHER)
def test_neither_utf8_nor_gb18030_is_one_clear_line(tmp_path, raw):
    with pytest.raises(RegistryError) as e:
        parse_csv(raw)
    assert len(e.value.problems) == 1
    assert "neither UTF-8 nor GB18030" in e.value.problems[0] and "\n" not in e.value.problems[0]
    assert "3000000017" not in e.value.problems[0]
    (tmp_path / "cards.csv").write_bytes(raw)
    cfg = write_config(tmp_path, "cards.csv")
    r = subprocess.run([sys.executable, "-m", "gateway", "config", "check", str(cfg)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "Traceback" not in out, out
    lines = [x for x in out.splitlines() if "registry_csv" in x]
    assert len(lines) == 1 and "neither UTF-8 nor GB18030" in lines[0], out
    assert "3000000017" not in out


def test_a_file_over_the_limit_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(cardfile, "MAX_FILE_BYTES", 1000)
    (tmp_path / "cards.csv").write_bytes(TEXT.encode() * 20)
    problems = check_config(write_config(tmp_path, "cards.csv"))
    assert len(problems) == 1 and "above the limit" in problems[0], problems


def test_many_problems_are_capped_and_counted(tmp_path):
    rows = "".join(f"{3000000000 + i},tenant,2026-02-30\n" for i in range(500))
    (tmp_path / "cards.csv").write_text("card,holder_type,issued\n" + rows)
    problems = check_config(write_config(tmp_path, "cards.csv"))
    assert len(problems) == cardfile.MAX_PROBLEMS + 1
    assert problems[-1].endswith(f"and {500 - cardfile.MAX_PROBLEMS} more problems")
    assert not any("30000" in p for p in problems)


def test_gbk_update_over_mqtt(tmp_path):
    ob = Outbox.open(tmp_path / "outbox.db", max_age_s=None)
    cfg = SimpleNamespace(doors={}, gateway=SimpleNamespace(state_dir=tmp_path))
    site = DoorSite(cfg, ob, payloads.Topics("edgegw", "gw1"))
    site.apply_update(TEXT.encode("gb18030"))
    assert site.registry.history(3000000017)[0]["note"] == "押金已收"
    site.apply_update(TEXT.encode("utf-16"))
    events = [json.loads(r[0]) for r in ob._db.execute("SELECT payload FROM msg")]
    [ev] = [e for e in events if e.get("code") == "cards_update_rejected"]
    assert len(ev["detail"]["problems"]) == 1 and "neither UTF-8 nor GB18030" in ev["detail"]["problems"][0]
    site.close()
