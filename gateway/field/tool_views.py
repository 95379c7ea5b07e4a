"""Screens of the tool commands: scan, read, watch, diag and config check.
Each is a pure function of a result dict and returns text."""

from .i18n import age, t
from .text import Style, fmt_num, fmt_ts, parse_iso, table


def progress_line(p: dict, lang: str, cols: int = 80) -> str:
    done, total = p["done"], max(1, p["total"])
    bar_w = 24
    fill = int(bar_w * done / total)
    eta = age(p.get("eta_s"), lang) if p.get("eta_s") is not None else "-"
    text = t(lang, "sc.progress", unit=p["unit"], done=done, total=p["total"], found=p["found"], eta=eta)
    line = f"[{'#' * fill}{'-' * (bar_w - fill)}] {text}"
    return line[:max(20, cols - 1)]



def via_text(r: dict, lang: str) -> str:
    if r.get("via") == "daemon":
        return t(lang, "via.daemon")
    if r.get("via") == "direct_idle":
        return t(lang, "via.direct_idle", bus=r.get("bus"), port=r.get("port"))
    return t(lang, "via.direct", port=r.get("port"))



def render_scan(r: dict, lang: str, color: bool = False) -> str:
    s = Style(color)
    lines = [s.bold(t(lang, "sc.title", bus=r["bus"], port=r.get("port"), first=r["first"], last=r["last"])),
             s.dim(via_text(r, lang)), ""]
    rows = []
    for u in r.get("found") or []:
        if u.get("model"):
            ident = f"{t(lang, u['ident']['function'])} {u['ident']['address']} = {u['ident']['value']}"
            model = (u["model"], s.green)
        else:
            ident = t(lang, "sc.unknown_model")
            model = ("?", s.yellow)
        conf = u.get("configured_as") or t(lang, "sc.not_configured")
        ms = u.get("response_ms")
        rows.append([str(u["unit"]), model, ident, conf, f"{ms:.0f} ms" if ms is not None else "-"])
    if rows:
        lines += table([t(lang, k) for k in ("col.unit", "col.model", "col.identified", "col.configured",
                                             "col.response")], rows, right={0}, style=s)
        lines.append("")
    total = r["last"] - r["first"] + 1
    lines.append(t(lang, "sc.summary", n=len(r.get("found") or []), total=total,
                   elapsed=age(r.get("elapsed_s"), lang) if (r.get("elapsed_s") or 0) >= 1
                   else t(lang, "age.fs", s=r.get("elapsed_s") or 0.0)))
    if not r.get("found"):
        lines.append(s.yellow(t(lang, "sc.none")))
    return "\n".join(lines) + "\n"



def _ascii(reg: int) -> str:
    return "".join(chr(b) if 32 <= b < 127 else "." for b in (reg >> 8, reg & 0xFF))



def render_read(r: dict, lang: str, color: bool = False) -> str:
    s = Style(color)
    first, count = r["address"], r["count"]
    lines = [s.bold(t(lang, "rd.title", bus=r["bus"], unit=r["unit"], function=t(lang, r["function"]),
                      first=first, last=first + count - 1)), s.dim(via_text(r, lang)), ""]
    regs = r.get("registers")
    if regs is None:
        lines.append(s.red(t(lang, "rd.failed", why=r.get("failure"))))
        return "\n".join(lines) + "\n"
    rows = [[str(first + i), f"0x{v:04X}", str(v), str(v - 0x10000 if v & 0x8000 else v), _ascii(v)]
            for i, v in enumerate(regs)]
    lines += table([t(lang, k) for k in ("col.addr", "col.hex", "col.dec", "col.int16", "col.ascii")],
                   rows, right={0, 2, 3}, style=s)
    lines += ["", t(lang, "rd.decoded", addr=first, n=len(regs))]
    orders = ["ABCD", "CDAB", "BADC", "DCBA"]
    by_type: dict[str, dict[str, str]] = {}
    for item in r.get("decoded") or []:
        cell = fmt_num(item["value"]) if "value" in item else t(lang, "rd.bad")
        if isinstance(item.get("value"), str):
            cell = repr(item["value"])
        by_type.setdefault(item["type"], {})[item["order"]] = cell
    rows = [[typ] + [cells.get(o, "") for o in orders] for typ, cells in by_type.items()]
    lines += table([t(lang, "col.type")] + orders, rows, style=s)
    return "\n".join(lines) + "\n"



def watch_values(values: dict, limit: int | None = None) -> str:
    items = list(values.items())[:limit]
    return "  ".join(f"{k}={fmt_num(v)}" for k, v in items)



def watch_row(ev: dict, lang: str, limit: int | None = None) -> list:
    av = ev.get("availability") or "unknown"
    flags = ",".join([f["code"] if isinstance(f, dict) else f for f in ev.get("faults") or []]
                     + [f"({c})" for c in ev.get("states") or []]) or "-"
    return [ev["device"], t(lang, av), fmt_ts(ev.get("ts"))[11:19] if ev.get("ts") else "-",
            ev.get("error") or "ok", flags, watch_values(ev.get("values") or {}, limit)]



def render_watch_table(events: dict[str, dict], lang: str, color: bool = False, lost: int = 0) -> list[str]:
    s = Style(color)
    rows = []
    for name in sorted(events):
        r: list = watch_row(events[name], lang, limit=6)
        av = str(events[name].get("availability"))
        r[1] = (r[1], {"online": s.green, "unavailable": s.red}.get(av, s.yellow))
        if r[4] != "-" and events[name].get("faults"):
            r[4] = (r[4], s.red)
        rows.append(r)
    headers = [t(lang, "col.device"), t(lang, "col.avail"), t(lang, "col.time"), t(lang, "col.read"), t(lang, "col.faults"),
               t(lang, "col.values")]
    out = table(headers, rows, indent=0, style=s)
    if lost:
        out.append(s.dim(t(lang, "wt.lost", n=lost)))
    return out



def watch_line(ev: dict, lang: str) -> str:
    """One reading, piped: words and key=value pairs (a value that is not a
    number or a word as JSON), so grep and awk can read it."""
    r = watch_row(ev, lang)
    ts = ev.get("ts") or "-"
    edges = " ".join(f"{e.get('state')}={e.get('code')}" for e in ev.get("edges") or [] if isinstance(e, dict))
    lost = t(lang, "wt.lost", n=ev["lost"]) if ev.get("lost") else ""
    return " ".join(x for x in (ts, r[0], r[1], r[3], f"faults={r[4]}", edges, r[5], lost) if x)



def check_label(c: dict, lang: str) -> str:
    return t(lang, f"dg.check.{c['check']}", **(c.get("label_args") or {}))



def check_text(c: dict, lang: str) -> str:
    """A check's args are language-neutral: `<name>_key` names a phrase to
    word in `lang`, `up_s`/`age_s` are durations; the rest is used as is."""
    a = dict(c.get("args") or {})
    tail = ""
    for k in list(a):
        if k.endswith("_key"):
            v = a.pop(k)
            if k == "rec_key":
                tail = t(lang, v) if v else ""
            else:
                a[k[:-4]] = t(lang, v, **a) if v else ""
        elif k in ("up_s", "age_s", "window_s"):
            a[k[:-2]] = age(a.pop(k), lang)
        elif k == "ts" and parse_iso(a[k]) is not None:
            a[k] = fmt_ts(a[k])
    return t(lang, c["key"], **a) + tail



def verdict(checks: list[dict]) -> dict:
    fails = [c for c in checks if c["level"] == "fail"]
    warns = [c for c in checks if c["level"] == "warn"]
    first = (fails or warns)[0] if fails or warns else None
    return {"level": "fail" if fails else "warn" if warns else "pass",
            "fails": len(fails), "warns": len(warns), "checks": len(checks),
            "first": first}



def verdict_text(checks: list[dict], lang: str) -> str:
    v = verdict(checks)
    first = v["first"]
    sep = "：" if lang == "zh" else ": "
    what = f"{check_label(first, lang)}{sep}{check_text(first, lang)}" if first else ""
    if v["level"] == "fail":
        return t(lang, "dg.verdict_fail", f=v["fails"], w=v["warns"], first=what)
    if v["level"] == "warn":
        return t(lang, "dg.verdict_warn", w=v["warns"], first=what)
    return t(lang, "dg.verdict_ok", n=v["checks"])



def render_diag(r: dict, lang: str, color: bool = False) -> str:
    s = Style(color)
    lines = [s.bold(t(lang, "dg.title", gw=r.get("gateway") or "?", ts=fmt_ts(r.get("ts")))), ""]
    rows = [[(t(lang, c["level"]), lambda x, lv=c["level"]: s.level(lv, x)), check_label(c, lang),
             check_text(c, lang)] for c in r["checks"]]
    lines += table(None, rows, style=s)
    lines.append("")
    level = verdict(r["checks"])["level"]
    lines.append(s.level(level, verdict_text(r["checks"], lang)))
    return "\n".join(lines) + "\n"



def render_config_check(path: str, problems_: list[str], lang: str, color: bool = False) -> str:
    s = Style(color)
    lines = [s.bold(t(lang, "cc.title", path=path)), ""]
    if problems_:
        rows = [[(t(lang, "fail"), s.red), p] for p in problems_]
        lines += table(None, rows, style=s)
        lines += ["", s.red(t(lang, "cc.bad", n=len(problems_)))]
    else:
        lines.append(s.green(t(lang, "cc.ok")))
    return "\n".join(lines) + "\n"
