"""deploy/install.sh, run for real into a scratch root (EDGEGW_DESTDIR), so
this machine's /etc, /opt and systemd are never touched.

Stand-ins on PATH record what the script asks of systemctl, apt-get,
useradd and groupadd (no systemd runs here, and apt or a new system user
would change the machine). Everything else is real: the Python check, the
copy, the venv, pip from a folder of wheels with no network (the script runs
in a network namespace without interfaces when this machine allows it), the
configuration check as the service user.

The runs that install need a folder of wheels (edgegw and its
dependencies), which only a machine with internet can make:
    python -m pip wheel -w DIR .        # from the checkout
    EDGEGW_TEST_WHEELS=DIR python -m pytest tests/deploy/test_install.py
Without it those runs are skipped; the refusals are tested regardless."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.deploy.unitfile import ROOT

SCRIPT = ROOT / "deploy" / "install.sh"
EXAMPLE = ROOT / "deploy" / "edgegw.example.toml"
STANDINS = ("systemctl", "apt-get", "useradd", "groupadd")
IS_ROOT = os.geteuid() == 0


@pytest.fixture
def sandbox(tmp_path):
    """(run, destdir, calls): run(*args, python=..., env=...) -> CompletedProcess."""
    dest = tmp_path / "root"
    dest.mkdir()
    bin_dir = tmp_path / "standins"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    log.touch()
    for name in STANDINS:
        p = bin_dir / name
        p.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n')
        p.chmod(0o755)

    def run(*args: str, python: str | None = sys.executable, extra_path: Path | None = None,
            offline: bool = False, env: dict | None = None) -> subprocess.CompletedProcess:
        e = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEGW_", "PIP_"))}
        e.update(EDGEGW_DESTDIR=str(dest), EDGEGW_USER="root", EDGEGW_GROUP="root",
                 PATH=":".join(str(p) for p in (extra_path, bin_dir) if p) + ":" + os.environ["PATH"],
                 PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_CONFIG_FILE=os.devnull)
        if python is not None:
            e["EDGEGW_PYTHON"] = python
        e.update(env or {})
        cmd = ["bash", str(SCRIPT), *args]
        if offline:
            cmd = ["unshare", "--net", "--", *cmd]
        return subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=600)

    def calls() -> list[str]:
        return log.read_text().splitlines()

    return run, dest, calls


def nothing_written(dest: Path) -> bool:
    return not any(dest.iterdir())


# -- the script itself ------------------------------------------------------------------


def test_bash_parses_it():
    r = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (Debian package)")
def test_shellcheck_is_clean():
    r = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


# -- refusals before any change ------------------------------------------------------------


def test_an_old_python_is_refused_before_anything_else(sandbox, tmp_path):
    run, dest, calls = sandbox
    old = tmp_path / "oldpy"
    old.mkdir()
    # Answers the script's one question the way Python 3.9 does.
    (old / "python3").write_text("#!/bin/sh\necho 3.9.2\nexit 1\n")
    (old / "python3").chmod(0o755)
    r = run(python=None, extra_path=old)
    assert r.returncode == 2, r.stderr
    assert "3.11" in r.stderr and "3.9.2" in r.stderr
    assert calls() == [] and nothing_written(dest)


def test_a_missing_python_is_refused(sandbox):
    run, dest, calls = sandbox
    r = run(python="/nonexistent/python3")
    assert r.returncode == 2 and "3.11" in r.stderr
    assert calls() == [] and nothing_written(dest)


def test_the_real_python_passes_the_check(sandbox):
    # The same check with this interpreter (>= 3.11) goes on to the arguments.
    run, dest, calls = sandbox
    r = run("--no-such-option")
    assert r.returncode == 2 and "unknown argument" in r.stderr
    assert calls() == [] and nothing_written(dest)


def test_a_wheels_folder_without_edgegw_is_refused(sandbox, tmp_path):
    run, dest, calls = sandbox
    empty = tmp_path / "wheels"
    empty.mkdir()
    r = run("--wheels", str(empty))
    assert r.returncode == 2 and "pip wheel -w DIR" in r.stderr
    r = run("--wheels", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "not a folder" in r.stderr
    assert calls() == [] and nothing_written(dest)


SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.mark.skipif(not IS_ROOT or shutil.which("setpriv") is None or not os.access(SYSTEM_PYTHON, os.X_OK),
                    reason="needs root, setpriv and /usr/bin/python3")
def test_only_root_installs(sandbox):
    _run, dest, _calls = sandbox
    ok = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; sys.exit(sys.version_info < (3, 11))"])
    if ok.returncode != 0:
        pytest.skip("/usr/bin/python3 is older than 3.11")
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", str(SCRIPT)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                       env={"PATH": os.environ["PATH"], "EDGEGW_PYTHON": SYSTEM_PYTHON,
                            "EDGEGW_DESTDIR": str(dest)})
    assert r.returncode == 2 and "run as root" in r.stderr
    assert nothing_written(dest)


# -- installing, offline, into the scratch root --------------------------------------------

WHEELS = os.environ.get("EDGEGW_TEST_WHEELS")
needs_wheels = pytest.mark.skipif(
    not (WHEELS and list(Path(WHEELS).glob("edgegw-*.whl"))),
    reason="set EDGEGW_TEST_WHEELS to a folder made by `python -m pip wheel -w DIR .`")


def can_unshare_net() -> bool:
    return IS_ROOT and shutil.which("unshare") is not None and \
        subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode == 0


SITE = """
[gateway]
id = "site-7"
state_dir = "{state}"
[mqtt]
host = "127.0.0.1"
port = 1883
[[bus]]
name = "tcp-1"
port = "tcp://127.0.0.1:1502"
[[device]]
name = "fm-01"
bus = "tcp-1"
unit = 1
model = "turbine-evc"
"""


@pytest.fixture
def index_recorder():
    """A package index on 127.0.0.1 that answers nothing and remembers every
    request: pip pointed at it must never ask it anything."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/simple", asked
    server.shutdown()
    server.server_close()


@pytest.mark.slow
@needs_wheels
def test_install_from_wheels_offline_then_enable_once_the_config_is_edited(sandbox, index_recorder):
    run, dest, calls = sandbox
    offline = can_unshare_net()
    index_url, asked = index_recorder

    # 1. First install, with no network at all: everything in place, the
    # example config, not enabled.
    r = run("--wheels", WHEELS, offline=offline)
    assert r.returncode == 3, r.stdout + r.stderr
    assert 'id = "CHANGE-ME"' in r.stderr and "[[bus]] port" in r.stderr
    assert "systemctl enable --now edgegw" in r.stderr
    conf = dest / "etc/edgegw/edgegw.toml"
    assert conf.read_text() == EXAMPLE.read_text()
    assert oct(conf.stat().st_mode & 0o777) == "0o640"
    assert (dest / "etc/systemd/system/edgegw.service").read_text() == (ROOT / "deploy/edgegw.service").read_text()
    assert (dest / "opt/edgegw/docs/install.md").is_file()
    assert not (dest / "opt/edgegw/src/.git").exists()
    assert (dest / "var/lib/edgegw").is_dir()
    assert calls() == ["systemctl daemon-reload"]   # no apt-get, no user created, not enabled
    edgegw = dest / "usr/local/bin/edgegw"
    assert edgegw.is_symlink()
    pip = subprocess.run([str(dest / "opt/edgegw/venv/bin/python"), "-m", "pip", "list",
                          "--format=freeze"], capture_output=True, text=True)
    assert {"edgegw", "pymodbus", "pyserial", "paho-mqtt", "tinydb"} <= \
        {line.split("==")[0].lower() for line in pip.stdout.split()}

    # 2. The site edits its config (a problem left in): enabled, not started.
    # This upgrade runs with a reachable index, which pip must not ask.
    conf.write_text(SITE.format(state=dest / "var/lib/edgegw") + "bogus = 1\n")
    r = run("--wheels", WHEELS, env={"PIP_INDEX_URL": index_url})
    assert asked == [], f"pip asked the index: {asked[:3]}"
    assert r.returncode == 1, r.stdout + r.stderr
    assert "bogus" in r.stdout + r.stderr
    assert calls()[-2:] == ["systemctl daemon-reload", "systemctl enable edgegw.service"]

    # 3. Fixed: enabled and (re)started; the config is kept across upgrades.
    conf.write_text(SITE.format(state=dest / "var/lib/edgegw"))
    r = run("--wheels", WHEELS, env={"PIP_INDEX_URL": index_url})
    assert asked == []
    assert r.returncode == 0, r.stdout + r.stderr
    assert calls()[-3:] == ["systemctl daemon-reload", "systemctl enable edgegw.service",
                            "systemctl restart edgegw.service"]
    assert "site-7" in conf.read_text()
    # The installed command works from the scratch root.
    check = subprocess.run([str(edgegw), "config", "check", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    if not offline:
        pytest.skip("installed, but this machine cannot prove it offline (no `unshare --net`)")
