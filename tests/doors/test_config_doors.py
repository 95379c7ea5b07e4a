"""The [doors] section of the site configuration: every problem by key path,
and the pseudonym key must be the service's alone."""
from __future__ import annotations

from pathlib import Path

from gateway.site.config import check_config, load_config


def write(tmp_path: Path, doors: str, state: str = "state") -> Path:
    p = tmp_path / "edgegw.toml"
    p.write_text(f'[gateway]\nid = "g1"\nstate_dir = "{state}"\n\n[doors]\n{doors}\n', encoding="utf-8")
    return p


def test_all_keys(tmp_path):
    key = tmp_path / "site.key"
    key.write_text("ab" * 32)
    key.chmod(0o600)
    (tmp_path / "cards.csv").write_text("card,holder_type,issued,holder_ref\n3000000017,tenant,2026-01-10,B-1\n")
    c = load_config(write(tmp_path, """
pseudonym_key_file = "site.key"
publish_raw_card_numbers = false
registry_csv = "cards.csv"
history_days = 30
clock_skew_warn_s = 120
owner_years = 3
family_years = 2
tenant_years = 1
merchant_years = 1
parking_months = 1
expiry_reminder_days = 14
reminder_hour = 9
timezone = "Asia/Shanghai"
"""))
    assert c.doors == {
        "pseudonym_key_file": key, "publish_raw_card_numbers": False,
        "registry_csv": tmp_path / "cards.csv", "history_days": 30.0, "clock_skew_warn_s": 120.0,
        "owner_years": 3, "family_years": 2, "tenant_years": 1, "merchant_years": 1,
        "parking_months": 1, "expiry_reminder_days": 14, "reminder_hour": 9, "timezone": "Asia/Shanghai",
    }


def test_every_problem_by_key_path(tmp_path):
    (tmp_path / "cards.csv").write_text("card,holder_type,issued\n1,tenant,2026-02-30\nx,tenant,2026-01-01\n")
    problems = check_config(write(tmp_path, """
pseudonym_key_file = "missing.key"
publish_raw_card_numbers = "no"
registry_csv = "cards.csv"
history_days = 0
clock_skew_warn_s = -5
tenant_years = 1.5
parking_months = 0
reminder_hour = 24
timezone = "Mars/Olympus"
histroy_days = 5
"""))
    assert problems == [
        f"doors.pseudonym_key_file: {tmp_path}/missing.key does not exist (leave pseudonym_key_file "
        "out and the gateway creates a key in state_dir)",
        'doors.publish_raw_card_numbers: expected true or false, got string "no"',
        f"doors.registry_csv: {tmp_path}/cards.csv: line 2: issued: is not a date YYYY-MM-DD",
        f"doors.registry_csv: {tmp_path}/cards.csv: line 3: card: is not a card number "
        "(digits only, as printed on the card)",
        "doors.history_days: 0 is outside 1-3650",
        "doors.clock_skew_warn_s: -5 is outside 1-86400",
        "doors.tenant_years: expected an integer, got float 1.5",
        "doors.parking_months: 0 is outside 1-24",
        "doors.reminder_hour: 24 is outside 0-23",
        'doors.timezone: "Mars/Olympus" is not a time zone (e.g. "Asia/Shanghai", "UTC")',
        'doors.histroy_days: unknown key (did you mean "history_days"?)',
    ]


def test_key_readable_by_others_refuses_to_start(tmp_path):
    key = tmp_path / "site.key"
    key.write_text("ab" * 32)
    key.chmod(0o640)
    assert check_config(write(tmp_path, 'pseudonym_key_file = "site.key"')) == [
        f"doors.pseudonym_key_file: {key} is readable or writable by group or others (run: chmod 600 {key})"]
    key.chmod(0o600)
    assert check_config(write(tmp_path, 'pseudonym_key_file = "site.key"')) == []


def test_generated_key_in_state_dir_is_checked_too(tmp_path):
    (tmp_path / "state").mkdir()
    key = tmp_path / "state" / "door-pseudonym.key"
    key.write_text("ab" * 32)
    key.chmod(0o644)
    p = tmp_path / "edgegw.toml"
    p.write_text('[gateway]\nid = "g1"\nstate_dir = "state"\n')   # no [doors] at all
    assert check_config(p) == [
        f"doors.pseudonym_key_file: {key} is readable or writable by group or others (run: chmod 600 {key})"]
    key.chmod(0o600)
    assert check_config(p) == [] and load_config(p).doors == {}
