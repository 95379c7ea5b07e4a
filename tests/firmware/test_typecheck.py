"""mypy over the firmware: against the MicroPython rp2 stubs, and against CPython.

firmware/tools/typecheck.py builds a typeshed from micropython-stdlib-stubs and
micropython-rp2-stubs (see its docstring for why a plain MYPYPATH does not
work) and runs mypy with firmware/mypy.ini (strict). The board pass covers
main.py and every miu module that runs on MicroPython; the CPython pass covers
the whole miu package, host tooling included. Nothing is excluded.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"


def _tool():
    spec = importlib.util.spec_from_file_location("miu_typecheck", FIRMWARE / "tools" / "typecheck.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tool():
    return _tool()


@pytest.fixture(scope="module")
def typeshed(tool, tmp_path_factory):
    return tool.build_typeshed(tmp_path_factory.mktemp("typeshed"))


def test_board_code_against_micropython_stubs(tool, tmp_path):
    files = tool.board_files()
    assert "main.py" in files and "miu/core.py" in files and "miu/rtu.py" in files
    assert set(files) == {"main.py"} | {f"miu/{p.name}" for p in (FIRMWARE / "miu").glob("*.py")
                                        if p.name not in tool.HOST_ONLY}
    result = tool.check_board(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_package_against_cpython(tool, tmp_path):
    result = tool.check_host(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_board_pass_really_uses_the_micropython_stubs(tool, typeshed, tmp_path):
    # Negative control: CPython-only APIs and a wrong machine call must fail
    # under the board stubs, so a green board pass means something.
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import time\n"
        "import machine\n"
        "t: float = time.monotonic()\n"
        "machine.Pin(2).no_such_method()\n"
        "import typing\n"
        "x: int = time.ticks_ms()\n"
    )
    result = tool.run_mypy(["--custom-typeshed-dir", str(typeshed), "--no-site-packages", str(bad)])
    out = result.stdout
    assert result.returncode != 0
    assert 'Module has no attribute "monotonic"' in out
    assert "no_such_method" in out
    assert "_TicksMs" in out          # the stubs' opaque tick type is in force


def test_machine_stubs_are_the_rp2_ones(typeshed):
    machine = (typeshed / "stdlib" / "machine.pyi").read_text()
    assert "def txdone(self) -> bool" in machine
    assert "rp2" in machine
    assert sys.version_info >= (3, 11)
