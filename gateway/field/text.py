"""Terminal text for the field commands: colour only on a terminal, widths in
display cells (a Chinese character takes two columns), times and numbers.

Colour is only used when the output is a terminal: an engineer pipes
`edgegw status` into a ticket or a log, and escape codes would be noise there.
"""

import os
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
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.7g}"
    return str(v)



def _sev(lang: str, sev: str | None) -> str:
    return t(lang, f"sev.{sev}") if sev in SEV_ORDER else (sev or "-")



def _text(item: dict, key: str, lang: str) -> str:
    v = item.get(key)
    if isinstance(v, dict):
        return v.get(lang) or v.get("en") or ""
    return v or ""
