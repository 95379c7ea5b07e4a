"""deploy/edgegw.service: `systemd-analyze verify` clean, exposure <= 2.0
offline, and the service contract the daemon and docs rely on.

systemd is not PID 1 where the tests run, so nothing here starts the unit:
`verify` loads it against a scratch root that holds systemd's own unit files
and a stand-in for /opt/edgegw/venv/bin/edgegw (verify refuses a unit whose
ExecStart= is missing), and `security --offline=yes` reads the file alone.
Both are skipped, with the reason, where systemd-analyze is missing (Debian:
package `systemd`)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.unitfile import ROOT, UNIT, assignments, systemd_analyze, values

ANALYZE = systemd_analyze()
needs_analyze = pytest.mark.skipif(ANALYZE is None,
                                   reason="systemd-analyze not installed (Debian package `systemd`)")
SYSTEM_UNITS = next((p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
                     if (p / "sysinit.target").exists()), None)
MAX_EXPOSURE = 2.0

# The longest single Modbus request the configuration allows
# (docs/configuration.md: timeout_s <= 10 s, retries <= 5).
LONGEST_REQUEST_S = 10 * (1 + 5)


def scratch_root(tmp_path: Path, unit_text: str) -> Path:
    root = tmp_path / "root"
    units = root / "usr/lib/systemd/system"
    shutil.copytree(SYSTEM_UNITS, units, symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/edgegw.service").write_text(unit_text)
    exe = root / "opt/edgegw/venv/bin/edgegw"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    return root


def verify(tmp_path: Path, unit_text: str) -> tuple[int, str]:
    if SYSTEM_UNITS is None:
        pytest.skip("systemd's own unit files (sysinit.target ...) are not installed here")
    root = scratch_root(tmp_path, unit_text)
    r = subprocess.run([ANALYZE, "verify", f"--root={root}", "--man=no", "--generators=no",
                        "edgegw.service"], capture_output=True, text=True, timeout=60)
    return r.returncode, (r.stdout + r.stderr).replace(str(root), "")


def security(path: Path) -> tuple[int, float, str]:
    r = subprocess.run([ANALYZE, "security", "--offline=yes", f"--threshold={int(MAX_EXPOSURE * 10)}",
                        "--no-pager", str(path)], capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", r.stdout)
    assert m, r.stdout + r.stderr
    return r.returncode, float(m.group(1)), r.stderr


# -- systemd-analyze -------------------------------------------------------------------


@needs_analyze
def test_verify_prints_nothing(tmp_path):
    rc, out = verify(tmp_path, UNIT.read_text())
    assert (rc, out) == (0, "")


@needs_analyze
def test_verify_would_catch_a_key_in_the_wrong_section(tmp_path):
    # The defect the unit once had: a start limit in [Service] is ignored
    # with a warning (and verify still exits 0, hence the check on output).
    text = UNIT.read_text().replace("[Service]\n", "[Service]\nStartLimitIntervalSec=0\n", 1)
    _rc, out = verify(tmp_path, text)
    assert "Unknown key 'StartLimitIntervalSec' in section [Service]" in out, out


@needs_analyze
def test_exposure_is_at_most_2_offline_without_warnings():
    rc, score, err = security(UNIT)
    assert score <= MAX_EXPOSURE, f"exposure {score}"
    assert rc == 0 and err == "", err


@needs_analyze
def test_the_score_check_can_fail(tmp_path):
    bare = tmp_path / "edgegw.service"
    bare.write_text("[Service]\nExecStart=/opt/edgegw/venv/bin/edgegw run\n")
    rc, score, _err = security(bare)
    assert score > MAX_EXPOSURE and rc != 0


# -- the contract ------------------------------------------------------------------------

TEXT = UNIT.read_text()


def one(section: str, key: str) -> str:
    got = values(TEXT, section, key)
    assert len(got) == 1, f"[{section}] {key}= appears {len(got)} times"
    return got[0]


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)\s*(s|min)?", value)
    assert m, f"write {value!r} as N, Ns or Nmin"
    return int(m.group(1)) * (60 if m.group(2) == "min" else 1)


def test_notify_with_a_watchdog_longer_than_any_legitimate_request():
    assert one("Service", "Type") == "notify"
    assert one("Service", "NotifyAccess") == "main"
    assert seconds(one("Service", "WatchdogSec")) >= 1.5 * LONGEST_REQUEST_S


def test_restarts_for_ever_but_not_on_a_refused_config():
    assert one("Service", "Restart") == "always"
    assert "2" in one("Service", "RestartPreventExitStatus").split()
    # A start limit only works in [Unit] (systemd.unit(5)).
    assert one("Unit", "StartLimitIntervalSec") == "0"
    assert not [k for s, k, _v in assignments(TEXT) if s == "Service" and k.startswith("StartLimit")]
    # RestartPreventExitStatus= looks at the main process only: a failing
    # ExecStartPre= would be retried every RestartSec for ever.
    assert not values(TEXT, "Service", "ExecStartPre")


def test_the_daemon_reaches_serial_ports_and_keeps_its_state():
    assert one("Service", "User") == "edgegw"
    assert "dialout" in one("Service", "SupplementaryGroups").split()
    allowed = {v.split()[0] for v in values(TEXT, "Service", "DeviceAllow")}
    assert {"char-ttyUSB", "char-ttyACM", "char-ttyAMA", "char-ttyS"} <= allowed
    assert all(v.split()[1] == "rw" for v in values(TEXT, "Service", "DeviceAllow"))
    assert one("Service", "DevicePolicy") == "closed"
    assert one("Service", "StateDirectory") == "edgegw"
    assert "/var/lib/edgegw" in one("Service", "ReadWritePaths").split()
    assert one("Service", "MemoryMax") == "200M"


def test_run_exits_2_on_a_config_it_refuses(tmp_path):
    # The exit status RestartPreventExitStatus= is keyed on.
    bad = tmp_path / "edgegw.toml"
    bad.write_text('[gateway]\nid = "x"\nlangauge = "en"\n')
    for path in (bad, tmp_path / "missing.toml"):
        r = subprocess.run([sys.executable, "-m", "gateway", "run", "--config", str(path)],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        assert "refusing to start" in r.stderr


def test_run_exits_2_on_a_config_that_upsets_the_parser(tmp_path):
    deep = tmp_path / "edgegw.toml"
    deep.write_text("a = " + "[" * 1000 + "]" * 1000 + "\n")
    r = subprocess.run([sys.executable, "-m", "gateway", "run", "--config", str(deep)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-500:]
