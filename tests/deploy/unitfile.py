"""Reading deploy/edgegw.service the way the tests need it: every assignment
in order (systemd keys may repeat), and the system-call allow list the unit
really grants, expanded with systemd-analyze's own group tables."""
from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "edgegw.service"

# Always allowed by systemd whatever the filter says (systemd.exec(5),
# SystemCallFilter=): without them no process could start or end.
ALWAYS_ALLOWED = {"execve", "exit", "exit_group", "getrlimit", "rt_sigreturn", "sigreturn"}


def systemd_analyze() -> str | None:
    return shutil.which("systemd-analyze") or next(
        (p for p in ("/usr/bin/systemd-analyze", "/bin/systemd-analyze") if Path(p).exists()), None)


def assignments(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment, in file order."""
    out, section, pending = [], "", ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def values(text: str, section: str, key: str) -> list[str]:
    return [v for s, k, v in assignments(text) if s == section and k == key]


@functools.cache
def expand_group(name: str) -> frozenset[str]:
    exe = systemd_analyze()
    assert exe, "systemd-analyze is needed to expand system-call groups"
    out = subprocess.run([exe, "syscall-filter", name], capture_output=True, text=True, check=True).stdout
    names: set[str] = set()
    for line in out.splitlines()[1:]:
        word = line.strip()
        if not word or word.startswith("#"):
            continue
        names |= expand_group(word) if word.startswith("@") else {word}
    return frozenset(names)


def allowed_syscalls(text: str) -> set[str]:
    """The allow list the unit's SystemCallFilter= lines build, in order:
    the first line (an allow list here) sets the mode, later '~' lines take
    calls away and later plain lines add them back."""
    allowed: set[str] | None = None
    for value in values(text, "Service", "SystemCallFilter"):
        deny = value.startswith("~")
        names: set[str] = set()
        for word in value.lstrip("~").split():
            names |= expand_group(word) if word.startswith("@") else {word}
        if allowed is None:
            assert not deny, "the unit's filter must be an allow list"
            allowed = set()
        allowed = allowed - names if deny else allowed | names
    assert allowed is not None, "the unit has no SystemCallFilter="
    return allowed | ALWAYS_ALLOWED
