"""Issue 12, defect 5: hostile config files through every way in.

`edgegw config check`, `edgegw run` and `python -m gateway.site.config`,
each as a real process with a deadline: one line naming the key path (or
the file), never a traceback, never a hang, and the exit codes the unit's
ExecStartPre relies on (config check: 1 for any problem with the file, be
it bad content or a file that cannot be read; run: 2, refusing to start)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

DEADLINE_S = 30


def _cases(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (config path, what the one problem line starts with)."""
    def write(name: str, text: str) -> Path:
        p = tmp / f"{name}.toml"
        p.write_text(text, encoding="utf-8")
        return p
    # GBK, as Excel saves it on a Chinese office PC, and a line that is not
    # GB18030 either: a problem of the key whichever the reader accepts.
    (tmp / "cards.csv").write_bytes("card,holder_type,issued,note\n1,owner,2024-01-01,张三\n".encode("gbk")
                                    + b"\xff\x80\n")
    fifo = tmp / "fifo.toml"
    os.mkfifo(fifo)
    big = tmp / "big.toml"
    with open(big, "wb") as f:
        f.truncate(2 << 20)
    return {
        "registry_csv_gbk": (write("gbk", '[gateway]\nid = "g"\n[doors]\nregistry_csv = "cards.csv"\n'),
                             f"doors.registry_csv: {tmp}/cards.csv: "),
        "nested_1000": (write("deep", '[gateway]\nid = "g"\n[mqtt]\nhost = ' + "[" * 1000 + "]" * 1000 + "\n"),
                        f"{tmp}/deep.toml: nested more than"),
        "state_dir_300": (write("sd", '[gateway]\nid = "g"\nstate_dir = "' + "s" * 300 + '"\n'),
                          "gateway.state_dir: "),
        "credentials_300": (write("cred", '[gateway]\nid = "g"\n[mqtt]\ncredentials_file = "' + "c" * 300 + '"\n'),
                            "mqtt.credentials_file: "),
        "dev_zero": (Path("/dev/zero"), "/dev/zero: is not a regular file"),
        "fifo": (fifo, f"{fifo}: is not a regular file (a FIFO)"),
        "over_1_mib": (big, f"{big}: is {2 << 20} bytes"),
    }


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return _cases(tmp_path_factory.mktemp("hostile"))


def _run(*argv) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=DEADLINE_S, stdin=subprocess.DEVNULL)


NAMES = ["registry_csv_gbk", "nested_1000", "state_dir_300", "credentials_300", "dev_zero", "fifo", "over_1_mib"]


@pytest.mark.parametrize("name", NAMES)
def test_config_check(cases, name):
    path, start = cases[name]
    p = _run("-m", "gateway", "config", "check", str(path))
    assert "Traceback" not in p.stdout + p.stderr, p.stderr[-2000:]
    assert p.returncode == 1
    fails = [ln.strip()[len("FAIL  "):] for ln in p.stdout.splitlines() if ln.strip().startswith("FAIL")]
    assert len(fails) == 1 and fails[0].startswith(start), p.stdout


@pytest.mark.parametrize("name", NAMES)
def test_config_check_json(cases, name):
    path, start = cases[name]
    p = _run("-m", "gateway", "config", "check", "--json", str(path))
    assert "Traceback" not in p.stdout + p.stderr, p.stderr[-2000:]
    assert p.returncode == 1
    problems = json.loads(p.stdout)["problems"]
    assert len(problems) == 1 and problems[0].startswith(start)


@pytest.mark.parametrize("name", NAMES)
def test_run_refuses_to_start_with_one_line(cases, name):
    path, start = cases[name]
    p = _run("-m", "gateway", "run", "--config", str(path))
    assert p.returncode == 2
    assert p.stdout == ""
    assert p.stderr.count("\n") == 1 and p.stderr.startswith(f"edgegw: refusing to start: {start}"), p.stderr


@pytest.mark.parametrize("name", NAMES)
def test_module_checker(cases, name):
    path, start = cases[name]
    p = _run("-m", "gateway.site.config", str(path))
    assert "Traceback" not in p.stdout + p.stderr, p.stderr[-2000:]
    assert p.returncode == 1
    assert p.stdout.count("\n") == 1 and p.stdout.startswith(start), p.stdout


def test_a_file_name_that_is_not_utf8_is_printed_not_raised(tmp_path):
    # Bytes in the name that are not UTF-8 reach Python as lone surrogates.
    name = os.fsencode(tmp_path) + b"/\xff\xfe.toml"
    with open(name, "wb") as f:
        f.write(b'[gateway]\nid = "g"\nlog_level = "loud"\n')
    # A UTF-8 locale with strict output, as on a site box (C.UTF-8 would
    # let Python write the bad bytes back out and hide the problem).
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", "NO_COLOR": "1"}
    for argv in ([b"config", b"check", name], [b"config", b"check", b"--json", name], [b"run", b"--config", name]):
        p = subprocess.run([sys.executable, b"-m", b"gateway", *argv], capture_output=True, cwd=ROOT,
                           timeout=DEADLINE_S, env=env)
        assert b"Traceback" not in p.stdout + p.stderr, p.stderr[-2000:]
        assert p.returncode in (1, 2) and b"gateway.log_level" in p.stdout + p.stderr
