"""The checker's base: every check records its own problem with the key path
and returns BAD, so one pass collects every problem of the file.

A problem is always one line: control characters, line separators and
unpaired surrogates (a file name that is not UTF-8) are written as escapes,
so a key or value cannot break the list or the terminal. A check that
raises what nobody foresaw becomes a problem of its key, never a traceback."""
from __future__ import annotations

import difflib
import json
import logging
import math
import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Iterable

from protocols.models.types import value_kind

BAD = object()   # a value that failed its check; its problem is already recorded
MAX_FILE_LINE = 64 * 1024   # bytes read of a file named by a key that holds a line or two

log = logging.getLogger(__name__)
_ESCAPED = {"\n": "\\n", "\r": "\\r"}


def one_line(s: str) -> str:
    if s.isprintable():
        return s
    out = []
    for ch in s:
        if ch == "\t" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            out.append(ch)
        elif ch in _ESCAPED:
            out.append(_ESCAPED[ch])
        else:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
    return "".join(out)


def q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


_BARE = re.compile(r"[A-Za-z0-9_-]+\Z")


def key_path(path: str, key: str) -> str:
    """path.key, with the key quoted as TOML would need it ("", "a.b")."""
    k = key if _BARE.match(key) else q(key)
    return f"{path}.{k}" if path else k


def num(x) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return repr(x)


Check = Callable[[str, Any], Any]


class BaseChecker:
    def __init__(self, path: Path, known_models: Iterable[str] | None):
        self.path = path
        self.base = path.parent
        self.known_models = None if known_models is None else sorted(set(known_models))
        # given the models themselves (not only their ids), keys that name a
        # model's values are checked too
        self.models = known_models if isinstance(known_models, Mapping) else None
        self.problems: list[str] = []

    def add(self, keypath: str, message: str) -> None:
        self.problems.append(one_line(f"{keypath}: {message}"))

    # ---- scalar checks: each records its own problem and returns BAD

    def string(self, kp, v, *, choices=None, pattern=None, pattern_text="", empty_ok=False):
        if not isinstance(v, str):
            self.add(kp, f"expected a string, got {value_kind(v)}")
            return BAD
        if choices is not None and v not in choices:
            self.add(kp, f"{q(v)} must be one of {', '.join(choices)}")
            return BAD
        if not v and not empty_ok:
            self.add(kp, "must not be empty")
            return BAD
        if pattern is not None and not pattern.match(v):
            self.add(kp, f"{q(v)} {pattern_text}")
            return BAD
        return v

    def integer(self, kp, v, lo=None, hi=None, choices=None):
        if isinstance(v, bool) or not isinstance(v, int):
            self.add(kp, f"expected an integer, got {value_kind(v)}")
            return BAD
        if choices is not None and v not in choices:
            self.add(kp, f"{v} must be one of {', '.join(map(str, choices))}")
            return BAD
        if lo is not None and hi is not None and not lo <= v <= hi:
            self.add(kp, f"{v} is outside {lo}-{hi}")
            return BAD
        if lo is not None and hi is None and v < lo:
            self.add(kp, f"{v} is below the minimum {lo}")
            return BAD
        return v

    def number(self, kp, v, lo=None, hi=None, above=None):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.add(kp, f"expected a number, got {value_kind(v)}")
            return BAD
        if not math.isfinite(v):
            self.add(kp, f"{v!r} is not a finite number")
            return BAD
        if lo is not None and not lo <= v <= hi:
            self.add(kp, f"{num(v)} is outside {num(lo)}-{num(hi)}")
            return BAD
        if above is not None and not v > above:
            self.add(kp, f"{num(v)} must be greater than {num(above)}")
            return BAD
        return float(v)

    def boolean(self, kp, v):
        if not isinstance(v, bool):
            self.add(kp, f"expected true or false, got {value_kind(v)}")
            return BAD
        return v

    def table(self, kp, v) -> dict | None:
        if not isinstance(v, dict):
            self.add(kp, f"expected a table, got {value_kind(v)}")
            return None
        return v

    def resolve(self, p: str) -> Path:
        return self.base / p   # an absolute p replaces the base

    def existing_file(self, kp, v):
        s = self.string(kp, v)
        if s is BAD:
            return BAD
        p = self.resolve(s)
        try:
            if not p.exists():
                self.add(kp, f"{p} does not exist")
                return BAD
            if not p.is_file():
                self.add(kp, f"{p} is not a file")
                return BAD
            with open(p, "rb"):
                pass
        except OSError as e:   # a name too long, a loop of links, no permission
            self.add(kp, f"{p} cannot be read ({e.strerror})")
            return BAD
        except ValueError:
            self.add(kp, f"{p} cannot be read (the name contains a NUL byte)")
            return BAD
        return p

    # ---- tables

    def fields(self, data: dict, path: str, spec: dict[str, Check], *,
               required: tuple[str, ...] = (), hints: dict[str, str] | None = None) -> dict:
        """Check every key of `data` in file order; unknown keys are problems."""
        out: dict = {}
        for key, value in data.items():
            kp = key_path(path, key)
            check = spec.get(key)
            if check is None:
                self.unknown(kp, key, spec, hints or {})
                continue
            result = self.guarded(check, kp, value)
            if result is not BAD:
                out[key] = result
        for key in required:
            if key not in data:
                self.add(f"{path}.{key}", "required key is missing")
        return out

    def guarded(self, check: Check, kp: str, value):
        """Run one key's check; what it raises is that key's problem."""
        try:
            return check(kp, value)
        except RecursionError:
            self.add(kp, "nested too deeply to check")
        except (OSError, ValueError, MemoryError) as e:
            # OSError: a path the filesystem refuses; ValueError: bytes in a
            # file that do not decode (the door registry); MemoryError: a
            # file far too big. None of them a traceback.
            why = e.strerror if isinstance(e, OSError) and e.strerror else f"{type(e).__name__}: {e}"
            self.add(kp, f"cannot be checked ({why})")
        except Exception as e:  # noqa: BLE001 - a checker bug must not hide the other problems
            log.debug("config check of %s failed", kp, exc_info=True)
            self.add(kp, f"cannot be checked ({type(e).__name__}: {e})")
        return BAD

    def unknown(self, kp, key, known: Iterable[str], hints: dict[str, str]) -> None:
        known = list(known)
        if key in hints:
            self.add(kp, f"unknown key ({hints[key]})")
            return
        by_lower = {k.lower(): k for k in known}
        close = difflib.get_close_matches(key.lower(), list(by_lower), n=1)
        if close:
            self.add(kp, f'unknown key (did you mean "{by_lower[close[0]]}"?)')
        else:
            self.add(kp, f"unknown key (known keys: {', '.join(known)})")

    def array_of_tables(self, kp, v) -> list | None:
        if isinstance(v, dict):
            self.add(kp, f"expected an array of tables ([[{kp}]]), got a single table ([{kp}])")
            return None
        if not isinstance(v, list):
            self.add(kp, f"expected an array of tables ([[{kp}]]), got {value_kind(v)}")
            return None
        return v

