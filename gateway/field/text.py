"""Terminal text for the field commands: colour only on a terminal, widths in
display cells (a Chinese character takes two columns), times and numbers.

Colour is only used when the output is a terminal: an engineer pipes
`edgegw status` into a ticket or a log, and escape codes would be noise there.
"""

import json
import os
import re
import sys
import unicodedata
from datetime import datetime, timezone

from .i18n import t

LEVEL_ORDER = {"fail": 0, "warn": 1, "pass": 2}



SEV_ORDER = {"critical": 0, "major": 1, "minor": 2, "info": 3}



def use_color(stream=None) -> bool:
    stream = stream if stream is not None else sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False



class Style:
    def __init__(self, color: bool) -> None:
        self.color = color

    def _sgr(self, code: str, s: str) -> str:
        return f"\x1b[{code}m{s}\x1b[0m" if self.color and s else s

    def bold(self, s: str) -> str:
        return self._sgr("1", s)

    def red(self, s: str) -> str:
        return self._sgr("1;31", s)

    def yellow(self, s: str) -> str:
        return self._sgr("33", s)

    def green(self, s: str) -> str:
        return self._sgr("32", s)

    def dim(self, s: str) -> str:
        return self._sgr("2", s)

    def level(self, level: str, s: str) -> str:
        return {"fail": self.red, "warn": self.yellow, "pass": self.green}.get(level, str)(s)



def width(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 0 if unicodedata.combining(c) else 1
               for c in s)



def clip(s: str, cols: int) -> str:
    """Cut a line (escape codes included) to `cols` display cells, so a
    redraw in place knows how many rows it printed."""
    out, used, i = [], 0, 0
    while i < len(s):
        if s[i] == "\x1b":
            j = s.find("m", i)
            j = len(s) - 1 if j < 0 else j
            out.append(s[i:j + 1])
            i = j + 1
            continue
        w = width(s[i])
        if used + w > cols:
            out.append("\x1b[0m" if "\x1b[" in s else "")
            break
        out.append(s[i])
        used += w
        i += 1
    return "".join(out)



MARK = "..."   # ASCII: "…" is of ambiguous width, two cells on many Chinese terminals


def fit(s: str, cols: int) -> str:
    """`s` in at most `cols` display cells, the cut marked with "..."; a
    clipped line must not pass for the whole text."""
    if width(_SGR.sub("", s)) <= cols:
        return s
    return clip(s, max(0, cols - len(MARK))) + MARK


_SGR = re.compile(r"\x1b\[[0-9;]*m")


def pad(s: str, w: int, right: bool = False) -> str:
    fill = " " * max(0, w - width(s))
    return fill + s if right else s + fill



def table(headers: list[str] | None, rows: list[list], *, right: frozenset[int] | set[int] = frozenset(),
          indent: int = 2, style: Style | None = None) -> list[str]:
    """Rows of cells; a cell is text or (text, style function). Widths in display cells."""
    plain = [[c[0] if isinstance(c, tuple) else ("" if c is None else str(c)) for c in r] for r in rows]
    all_rows = ([headers] if headers else []) + plain
    if not all_rows:
        return []
    ncol = max(len(r) for r in all_rows)
    widths = [max((width(r[i]) for r in all_rows if i < len(r)), default=0) for i in range(ncol)]
    out = []
    if headers:
        line = "  ".join(pad(h, widths[i], i in right) for i, h in enumerate(headers))
        out.append(" " * indent + ((style.bold(line.rstrip()) if style else line.rstrip())))
    for raw, cells in zip(rows, plain):
        parts = []
        for i, text in enumerate(cells):
            cell = pad(text, widths[i], i in right) if i < ncol - 1 or i in right else text
            fn = raw[i][1] if isinstance(raw[i], tuple) else None
            if fn is not None and style is not None and style.color:
                core = fn(text)
                cell = cell.replace(text, core, 1) if text else cell
            parts.append(cell)
        out.append((" " * indent + "  ".join(parts)).rstrip())
    return out



def parse_iso(ts: str | None) -> float | None:
    if not ts:
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None



def fmt_ts(ts: str | None) -> str:
    """"2026-11-23T16:18:30.123Z" -> "2026-11-23 16:18:30 UTC"."""
    epoch = parse_iso(ts)
    if epoch is None:
        return ts or "-"
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")



def seconds_between(now: str | None, then: str | None) -> float | None:
    a, b = parse_iso(now), parse_iso(then)
    if a is None or b is None:
        return None
    return max(0.0, a - b)



def fmt_num(v) -> str:
    """A value as an engineer reads it: numbers short, booleans and
    anything structured as JSON, never a Python repr."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.7g}"
    if isinstance(v, (int, str)):
        return str(v)
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"), default=str)



def _sev(lang: str, sev: str | None) -> str:
    return t(lang, f"sev.{sev}") if sev in SEV_ORDER else (sev or "-")



def _text(item: dict, key: str, lang: str) -> str:
    v = item.get(key)
    if isinstance(v, dict):
        return v.get(lang) or v.get("en") or ""
    return v or ""



# --------------------------------------------------------------------------- a code said once

# Some catalogue meanings start as the display shows them ("ERR-1: magnetic
# attack. ...", "显示“请速购气”：..."): next to the code that is the code twice.
_SENTENCE_END = re.compile(r"[.;](?=\s)|[。；]")
_HEAD_MAX = 80
_RULE = ("Gateway rule: ", "网关规则：")


def _head(meaning: str) -> int:
    """Where the text after a leading "head:" starts, or 0."""
    m = re.search(r"[:：]\s*", meaning[:_HEAD_MAX + 2])
    if not m or _SENTENCE_END.search(meaning[:m.start()]):
        return 0
    return m.end()


def names_code(code: str, text: str) -> bool:
    if code.isascii():
        # "t" is a code on the MHCG: as a token only, not the letter in "the"
        return re.search(rf"(?<![A-Za-z0-9_-]){re.escape(code)}(?![A-Za-z0-9_-])", text) is not None
    return code in text


def _rest(meaning: str, end: int) -> str:
    rest = meaning[end:]
    return rest[:1].upper() + rest[1:] if rest[:1].isascii() else rest


def without_code(code: str, meaning: str) -> str:
    """The meaning without a leading "CODE:", for a block under the code's heading."""
    end = _head(meaning)
    return _rest(meaning, end) if end and meaning[:end].rstrip(" :：") == code else meaning


def after_code(code: str, meaning: str) -> str:
    """The meaning for a line that shows the code already: a head naming the
    code ("Display 请速购气 (buy gas now):", "关阀+故障+ERR-1：") is dropped."""
    end = _head(meaning)
    return _rest(meaning, end) if end and names_code(code, meaning[:end]) else meaning


def headline(code: str, meaning: str) -> str:
    """The first sentence of what the code means, for a one-line summary."""
    text = after_code(code, meaning)
    for rule in _RULE:
        if text.startswith(rule):
            text = _rest(text, len(rule))
    return _SENTENCE_END.split(text, maxsplit=1)[0].strip().rstrip(".;。；")


# --------------------------------------------------------------------------- response deadlines

def overdue_s(f: dict, now: str | None) -> float | None:
    """Seconds past the fault's response deadline (negative: time left), or
    None when the site promises nothing for it."""
    by = f.get("respond_by")
    a, b = parse_iso(now), parse_iso(by)
    if a is None or b is None:
        return None
    return a - b


def hours(h) -> str:
    return f"{h:g}"
