"""The firmware on the real MicroPython interpreter (WebAssembly port under Node).

firmware/package.json pins @micropython/micropython-webassembly-pyscript;
`npm ci` in firmware/ installs it. firmware/tools/run_wasm.mjs loads the miu
package into the interpreter's filesystem at /lib/miu (as on the board) and
runs a script. The same scenario script runs on CPython; the outputs must be
identical line for line.

Skipped only when `node` itself is missing. A missing or broken npm package
is a failure, with the command that fixes it.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
HERE = Path(__file__).resolve().parent
RUNNER = FIRMWARE / "tools" / "run_wasm.mjs"
PACKAGE = "@micropython/micropython-webassembly-pyscript"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    NODE is None, reason="node is not installed: the MicroPython WebAssembly tests need Node.js >= 18")


def _installed_version() -> str:
    pkg = FIRMWARE / "node_modules" / PACKAGE / "package.json"
    if not pkg.exists():
        pytest.fail(f"{PACKAGE} is not installed: run `npm ci` in {FIRMWARE} "
                    "(CI must do this before the firmware tests)", pytrace=False)
    return json.loads(pkg.read_text())["version"]


def run_micropython(script: Path, *puts: str) -> list[str]:
    version = _installed_version()
    wanted = json.loads((FIRMWARE / "package.json").read_text())["dependencies"][PACKAGE]
    if version != wanted:
        pytest.fail(f"{PACKAGE} {version} installed, package.json pins {wanted}: run `npm ci` in "
                    f"{FIRMWARE}", pytrace=False)
    cmd = [NODE, str(RUNNER), str(script)]
    for p in puts:
        cmd += ["--put", p]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    if proc.returncode == 2:
        pytest.fail(f"the MicroPython WebAssembly port could not be loaded:\n{proc.stderr}\n"
                    f"run `npm ci` in {FIRMWARE}", pytrace=False)
    assert proc.returncode == 0, f"MicroPython raised:\n{proc.stderr}\noutput so far:\n{proc.stdout}"
    return proc.stdout.splitlines()


def run_cpython(script: Path) -> list[str]:
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(FIRMWARE)))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_scenario_same_on_micropython_and_cpython():
    script = HERE / "mp_scenario.py"
    mp = run_micropython(script)
    cp = run_cpython(script)
    assert mp[0] == "impl micropython"
    assert cp[0] == "impl cpython"
    assert mp[1:] == cp[1:]
    # The scenario reached its end and its checks hold on both.
    assert mp[-1] == "done"
    assert "junk-answered 0" in mp
    assert any(line.startswith("isr ok ") for line in mp)     # no allocation under heap_lock
    assert "rtu-badcrc - max_flow 8001" in mp                  # bad CRC silent, broadcast executed


def test_every_board_module_loads_on_micropython(tmp_path):
    modules = sorted(p.stem for p in (FIRMWARE / "miu").glob("*.py") if p.name != "ptyserve.py")
    script = tmp_path / "imports.py"
    script.write_text(
        "import sys\n"
        + "".join(f"import miu.{m}\n" for m in modules if m != "__init__")
        + "print('typing' in sys.modules, len([m for m in sys.modules if m.startswith('miu')]))\n")
    out = run_micropython(script)
    # No run-time typing import anywhere (MicroPython has none), every module parsed.
    assert out == [f"False {len(modules)}"]


def test_main_py_on_micropython():
    out = run_micropython(HERE / "mp_main.py",
                          f"{HERE / 'fake_machine.py'}=/lib/machine.py",
                          f"{FIRMWARE / 'main.py'}=/lib/main.py")
    assert out == [
        "isr ok hard True True",                 # reed handlers are hard IRQs and do not allocate
        "replies 2",
        "first 0104080000000003e90064f456",      # pulse count 0, model 1001, firmware 100
        "last 0104080000000603e900647c56",       # six revolutions later: 6 pulses
        "de-high-while-sending True",
        "de-history [0, 0, 1] 0",                # low at rest, high to send, low again after
        "valve-drive [0, 0, 1] [0, 0]",          # blank unit: shut valve re-asserted at power-up
        "wdt 5000 1500",                         # fed once per healthy pass
        "done",
    ]


def test_npm_package_is_pinned_exactly():
    pkg = json.loads((FIRMWARE / "package.json").read_text())
    lock = json.loads((FIRMWARE / "package-lock.json").read_text())
    wanted = pkg["dependencies"][PACKAGE]
    assert wanted[0].isdigit(), "pin an exact version, not a range"
    assert lock["packages"][f"node_modules/{PACKAGE}"]["version"] == wanted
