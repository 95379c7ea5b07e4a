"""Type-check the firmware twice: against MicroPython's rp2 stubs and against CPython.

    python firmware/tools/typecheck.py        # exit status 0 = no errors

The rp2 stubs (micropython-rp2-stubs) install machine.pyi, time.pyi, ... at the
top of site-packages, where mypy will not take them for the standard library,
and micropython-stdlib-stubs installs a reduced typeshed there. mypy only
replaces the standard library through --custom-typeshed-dir, so this builds
one temporary typeshed from the two distributions: the reduced stdlib, with
the port's modules and their _mpy_shed helpers added to stdlib/ and listed in
VERSIONS. Errors inside the stubs themselves are then silenced like any
typeshed's; errors in our code are not.

Board code = every module of miu that runs on the board or under the
MicroPython WebAssembly port, plus main.py. miu/ptyserve.py is host tooling
(pyserial, ptys) and is checked in the CPython pass only, with the rest of
the package.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parent.parent
CONFIG = FIRMWARE / "mypy.ini"
HOST_ONLY = {"ptyserve.py"}


def board_files() -> list[str]:
    files = ["main.py"]
    for p in sorted((FIRMWARE / "miu").glob("*.py")):
        if p.name not in HOST_ONLY:
            files.append(f"miu/{p.name}")
    return files


def host_files() -> list[str]:
    return ["miu", "tools/typecheck.py"]


def _dist_files(name: str) -> list[tuple[str, Path]]:
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(f"{name} is not installed: pip install micropython-rp2-stubs") from None
    out = []
    for f in dist.files or []:
        rel = str(f)
        if rel.endswith(".pyi") and ".dist-info" not in rel:
            out.append((rel, Path(str(dist.locate_file(f)))))
    return out


def build_typeshed(dest: Path) -> Path:
    """Assemble the MicroPython typeshed under dest; returns its root."""
    root = dest / "typeshed"
    stdlib = root / "stdlib"
    for rel, src in _dist_files("micropython-stdlib-stubs"):
        if rel.startswith("stdlib/") or rel.startswith("stubs/"):
            target = root / rel
        else:  # _mpy_shed/...: helpers the port stubs import
            target = stdlib / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    # VERSIONS is not a .pyi; take it from next to the copied stdlib.
    versions_src = None
    for rel, src in _dist_files("micropython-stdlib-stubs"):
        if rel.startswith("stdlib/"):
            versions_src = src.parent
            while versions_src.name != "stdlib":
                versions_src = versions_src.parent
            break
    if versions_src is None:
        raise SystemExit("micropython-stdlib-stubs has no stdlib/ directory")
    shutil.copyfile(versions_src / "VERSIONS", stdlib / "VERSIONS")
    for rel, src in _dist_files("micropython-rp2-stubs"):
        target = stdlib / rel  # the port's own modules win over the reduced stdlib
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    versions = (stdlib / "VERSIONS").read_text()
    known = {line.split(":")[0].strip() for line in versions.splitlines() if ":" in line}
    extra = []
    for entry in sorted(stdlib.iterdir()):
        mod = entry.name[:-4] if entry.name.endswith(".pyi") else entry.name
        if entry.name == "VERSIONS" or mod in known:
            continue
        extra.append(f"{mod}: 3.0-\n")
    (stdlib / "VERSIONS").write_text(versions.rstrip("\n") + "\n" + "".join(extra))
    return root


def run_mypy(args: list[str], mypy_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("MYPYPATH", None)
    if mypy_path is not None:
        env["MYPYPATH"] = str(mypy_path)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(CONFIG), "--no-incremental", *args],
        cwd=FIRMWARE, env=env, capture_output=True, text=True, check=False)


def check_board(tmp: Path) -> subprocess.CompletedProcess[str]:
    typeshed = build_typeshed(tmp)
    return run_mypy(["--custom-typeshed-dir", str(typeshed), "--no-site-packages",
                     *board_files()])


# On CPython `from micropython import const` fails and miu.compat falls back
# to an identity function; this stub states that contract for the host pass,
# so constants keep their int type instead of becoming Any.
HOST_MICROPYTHON_STUB = """\
from typing import TypeVar
_T = TypeVar("_T")
def const(expr: _T, /) -> _T: ...
"""


def check_host(tmp: Path) -> subprocess.CompletedProcess[str]:
    stubs = tmp / "host-stubs"
    stubs.mkdir(exist_ok=True)
    (stubs / "micropython.pyi").write_text(HOST_MICROPYTHON_STUB)
    return run_mypy(host_files(), mypy_path=stubs)


def main() -> int:
    status = 0
    with tempfile.TemporaryDirectory(prefix="miu-typeshed-") as tmp:
        for name, result in (("MicroPython rp2 stubs", check_board(Path(tmp))),
                             ("CPython", check_host(Path(tmp)))):
            print(f"== mypy ({name})")
            print(result.stdout + result.stderr, end="")
            status |= result.returncode
    return status


if __name__ == "__main__":
    raise SystemExit(main())
