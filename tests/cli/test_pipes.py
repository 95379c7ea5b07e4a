"""`edgegw --version`, and output piped into a reader that leaves (`| head`)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import __version__
from gateway.field import tool_views

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


# --------------------------------------------------------------------------- no Python reprs

REPR = re.compile(r"\{'|\['|': |\bNone\b|\bTrue\b|\bFalse\b")


def test_a_piped_watch_line_is_text_never_a_repr():
    ev = {"device": "door-1", "ts": "2026-11-23T08:30:00.000Z", "ok": True, "error": None,
          "availability": "online", "faults": [{"code": "ERR-1"}], "states": ["SLEEP"],
          "values": {"flow_m3h": 1.5, "open": True, "last_event": {"door": 1, "event": "access_granted"},
                     "doors": [1, 2], "serial_number": "EVC0001"},
          "edges": [{"code": "ERR-1", "state": "raised"}], "lost": 3}
    for lang in ("en", "zh"):
        line = tool_views.watch_line(ev, lang)
        assert not REPR.search(line), line
        assert 'last_event={"door":1,"event":"access_granted"}' in line and "doors=[1,2]" in line
        assert "open=true" in line and "ERR-1" in line


@pytest.mark.integration
def test_the_demo_says_where_everything_is_in_words(tmp_path):
    p = subprocess.run([sys.executable, "-m", "gateway", "demo", "--seconds", "2", "--dir", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=90)
    first = p.stdout.splitlines()[0]
    assert not REPR.search(first), first
    assert re.match(r"edgegw demo: broker 127\.0\.0\.1:\d+, simulators rs485-1=\S+, config \S+, logs in \S+$",
                    first), first
    for line in p.stdout.splitlines():
        assert not REPR.search(line), line
