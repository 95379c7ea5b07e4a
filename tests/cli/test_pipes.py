"""`edgegw --version`, and output piped into a reader that leaves (`| head`)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import __version__

ROOT = Path(__file__).resolve().parents[2]


def test_version():
    out = subprocess.run([sys.executable, "-m", "gateway", "--version"], capture_output=True, text=True,
                         cwd=ROOT, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == f"edgegw {__version__}"


@pytest.mark.parametrize("argv", [
    ["explain", "turbine-evc", "SLEEP"],
    ["explain", "mhcg", "ERR-3", "--lang", "zh", "--json"],
    ["--help"],
    ["config", "check", "/nonexistent/edgegw.toml"],
])
def test_a_reader_that_leaves_gets_no_traceback(argv):
    # The read end is closed before the command starts, so its first write
    # meets a broken pipe, as `edgegw ... | head -1` does once head has its line.
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([sys.executable, "-m", "gateway", *argv], stdout=w, stderr=subprocess.PIPE,
                           cwd=ROOT, timeout=30, text=True)
    finally:
        os.close(w)
    assert "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr
