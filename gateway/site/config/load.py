"""Read a site config file (encoding, TOML syntax) and run the checker on it.

Whatever the path names, the answer is a list of one-line problems, never an
exception and never a wait: the file is opened without blocking and refused
unread unless it is a regular file of at most MAX_CONFIG_BYTES (a FIFO would
wait for a writer, /dev/zero would never end); TOML nested deeper than
MAX_DEPTH is refused (tomllib recurses, so deep enough it would overflow the
stack); and a check that fails in a way nobody foresaw is reported against
its key (checker.py), not raised.
"""
from __future__ import annotations

import errno
import os
import re
import stat
import sys
import tomllib
from pathlib import Path
from typing import Iterable

from .checker import one_line
from .sections import Checker
from .types import Config, ConfigError

__all__ = ["Checker", "check_config", "load_config", "raw_document", "read_config_bytes", "MAX_CONFIG_BYTES", "MAX_DEPTH"]

MAX_CONFIG_BYTES = 1 << 20   # docs/configuration.md "General rules"
MAX_DEPTH = 32               # arrays and tables within one another; a site config needs 3

_TOML_ERR = re.compile(r"(?s)(.*) \(at line (\d+), column (\d+)\)\Z")
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def read_config_bytes(path, limit: int = MAX_CONFIG_BYTES) -> tuple[bytes | None, str | None]:
    """The bytes of a config file, or None and why not (without the path).

    O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
    writer. What it is is decided by fstat on the open descriptor, so the
    file cannot be swapped between the check and the read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, "file not found"
    except ValueError:
        return None, "cannot be read (the name contains a NUL byte)"
    except OSError as e:
        if e.errno == errno.EISDIR:
            return None, "is a folder, expected a TOML file"
        return None, f"cannot be read ({e.strerror})"
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            return None, "is a folder, expected a TOML file"
        if not stat.S_ISREG(st.st_mode):
            what = next((name for test, name in _KINDS if test(st.st_mode)), "not a file")
            return None, f"is not a regular file ({what}), expected a TOML file"
        if st.st_size > limit:
            return None, f"is {st.st_size} bytes, more than a config file may be ({limit} bytes)"
        os.set_blocking(fd, True)
        chunks, size = [], 0
        while size <= limit:   # read to the end, in case it grew since fstat
            chunk = os.read(fd, min(1 << 16, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            return None, f"is more than {limit} bytes, more than a config file may be"
        return b"".join(chunks), None
    except OSError as e:
        return None, f"cannot be read ({e.strerror})"
    finally:
        os.close(fd)


def _too_deep(doc: dict) -> bool:
    stack: list[tuple[object, int]] = [(doc, 0)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(v, dict):
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)
    return False


def raw_document(path) -> dict:
    """The config's TOML as a plain dict, unchecked, for what must be known
    before it can be checked (the site model folder, the language); {} when
    the file cannot be read or parsed, with the same bounds as the check."""
    raw, _why = read_config_bytes(path)
    if raw is None:
        return {}
    try:
        doc = tomllib.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        return {}
    return {} if _too_deep(doc) else doc


def _check(path, known_models) -> tuple[Config | None, list[str]]:
    given = one_line(str(path))
    raw, why = read_config_bytes(path)
    if raw is None:
        return None, [f"{given}: {why}"]
    try:
        # utf-8-sig: editors on Windows add a BOM, which TOML itself rejects.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return None, [f"{given}: is not UTF-8 text (bad byte at offset {e.start})"]
    deep = f"{given}: nested more than {MAX_DEPTH} levels deep (tables or arrays)"
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = _TOML_ERR.match(str(e))
        if m:
            return None, [one_line(f"{given}: TOML syntax error at line {m[2]}, column {m[3]}: {m[1]}")]
        return None, [one_line(f"{given}: TOML syntax error: {e}")]
    except RecursionError:
        return None, [deep]
    if _too_deep(doc):
        return None, [deep]
    checker = Checker(Path(os.path.abspath(path)), known_models)
    config = checker.document(doc)
    return config, checker.problems


def _main(argv: list[str] | None = None) -> int:
    # Lets an installer check a file before the CLI or the daemon exist on
    # the box: python3 -m gateway.site.config /etc/edgegw/edgegw.toml
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python3 -m gateway.site.config CONFIG.toml", file=sys.stderr)
        return 2
    problems = check_config(args[0])
    for p in problems:
        print(p)
    if not problems:
        print(f"{args[0]}: OK")
    return 1 if problems else 0


def load_config(path, *, known_models: Iterable[str] | None = None) -> Config:
    """Read and check `path`; raise ConfigError listing every problem."""
    config, problems = _check(path, known_models)
    if problems:
        raise ConfigError(problems)
    assert config is not None
    return config


def check_config(path, *, known_models: Iterable[str] | None = None) -> list[str]:
    """Every problem of `path`, in file order; [] when it is valid."""
    return _check(path, known_models)[1]
