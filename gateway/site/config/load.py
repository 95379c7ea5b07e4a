"""Read a site config file (encoding, TOML syntax) and run the checker on it."""
from __future__ import annotations

import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Iterable

from .sections import Checker
from .types import Config, ConfigError

__all__ = ["Checker", "check_config", "load_config"]

_TOML_ERR = re.compile(r"(?s)(.*) \(at line (\d+), column (\d+)\)\Z")


def _check(path, known_models) -> tuple[Config | None, list[str]]:
    given = str(path)
    path = Path(os.path.abspath(path))
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, [f"{given}: file not found"]
    except IsADirectoryError:
        return None, [f"{given}: is a folder, expected a TOML file"]
    except OSError as e:
        return None, [f"{given}: cannot be read ({e.strerror})"]
    try:
        # utf-8-sig: editors on Windows add a BOM, which TOML itself rejects.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return None, [f"{given}: is not UTF-8 text (bad byte at offset {e.start})"]
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = _TOML_ERR.match(str(e))
        if m:
            return None, [f"{given}: TOML syntax error at line {m[2]}, column {m[3]}: {m[1]}"]
        return None, [f"{given}: TOML syntax error: {e}"]
    checker = Checker(path, known_models)
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
