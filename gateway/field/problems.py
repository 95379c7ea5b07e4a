"""What is wrong on a site, worst first, and how each problem is worded: in
full for `edgegw status --all`, on one line with the first step for the
one-screen `edgegw status`.

The exit code of `edgegw status` follows from this list (any "fail": 1), so
the screen and the exit code can never disagree.
"""
from __future__ import annotations

from .i18n import age, t
from .text import (
    SEV_ORDER,
    _sev,
    _text,
    after_code,
    fit,
    fmt_ts,
    headline,
    overdue_s,
    seconds_between,
    width,
)

# Ranks, smallest first: the gateway's own failures (nothing else works
# without them), then faults past the site's response deadline (most overdue
# first), then by severity; a device that stopped answering comes after the
# critical faults (gas) and before the rest, since a silent device tells us
# nothing. Warnings last.
_OVERDUE = 3.5
_UNAVAILABLE = 4.05

# The first thing to do about a problem that is not a catalogued fault.
_STEPS = {"pb.daemon_down": "do.daemon_down", "pb.broker_down": "do.diag", "pb.store": "do.diag",
          "pb.bus_down": "do.diag", "pb.unavailable": "do.unavailable", "pb.never": "do.unavailable",
          "pb.backlog_old": "do.diag", "pb.clock": "do.clock"}


def problems(st: dict) -> list[dict]:
    """[{level, subject, key, args, device?, fault?}], worst first."""
    out: list[dict] = []
    d = st.get("daemon") or {}
    gw = st.get("gateway") or {}
    now = st.get("ts")

    def add(level, subject, key, rank, args=None, **more):
        out.append({"level": level, "subject": subject, "key": key, "args": args or {}, "rank": rank, **more})

    if not d.get("running"):
        add("fail", gw.get("id") or "gateway", "pb.daemon_down", (0, 0, 0))
    else:
        br = st.get("broker") or {}
        if not br.get("connected"):
            err = br.get("last_error")
            add("fail", "mqtt", "pb.broker_down", (0, 1, 0),
                {"where": f"{br.get('host')}:{br.get('port')}", "err": f" ({err})" if err else ""})
        ob = st.get("outbox") or {}
        if ob.get("health") not in (None, "ok"):
            add("fail", "outbox", "pb.store", (0, 2, 0),
                {"health": ob.get("health"), "detail": ob.get("health_detail") or ""})
        for name, b in sorted((st.get("buses") or {}).items()):
            if not b.get("connected"):
                add("fail", name, "pb.bus_down", (0, 3, 0), {"bus": name, "err": b.get("last_connect_error") or "-"})
        if (ob.get("dropped") or {}).get("event"):
            add("warn", "outbox", "pb.event_drops", (1, 2, 0), {"n": ob["dropped"]["event"]})
        if (ob.get("oldest_age_s") or 0) > 600:
            add("warn", "outbox", "pb.backlog_old", (1, 3, 0), {"age_s": ob["oldest_age_s"]})
        if (st.get("clock") or {}).get("synced") is False:
            add("warn", "clock", "pb.clock", (1, 4, 0))
    for dev in st.get("devices") or []:
        name = dev["name"]
        if dev.get("availability") == "unavailable":
            key = "pb.unavailable" if dev.get("last_good_ts") else "pb.never"
            add("fail", name, key, (0, _UNAVAILABLE, 0),
                {"since": dev.get("last_good_ts"), "err": dev.get("last_error") or "-"}, device=name)
        for f in dev.get("faults") or []:
            sev = f.get("severity")
            late = overdue_s(f, now)
            if late is not None and late > 0:
                # a broken promise is a failure whatever the severity; among
                # them the gas-safety ones first, then the longest overdue
                level, rank = "fail", (0, _OVERDUE + SEV_ORDER.get(sev, 3) / 100, -late)
            else:
                level = "fail" if sev in ("critical", "major") else "warn"
                rank = (0 if level == "fail" else 1, 4 + SEV_ORDER.get(sev, 3) / 10, 0)
            add(level, name, "pb.fault", rank,
                {"code": f["code"], "meaning": f.get("meaning"), "sev": sev, "since": f.get("since"),
                 "overdue_s": late if late is not None and late > 0 else None},
                device=name, fault=f)
    out.sort(key=lambda p: (p["rank"], p["subject"]))
    for p in out:
        del p["rank"]
    return out


_SUBJECTS = {"clock": "st.clock", "mqtt": "st.broker", "outbox": "st.backlog"}


def problem_subject(p: dict, lang: str) -> str:
    key = None if p.get("device") else _SUBJECTS.get(p["subject"])
    return t(lang, key) if key else p["subject"]


def _meaning(a: dict, lang: str) -> str:
    m = a.get("meaning")
    return (m.get(lang) or m.get("en") or "") if isinstance(m, dict) else (m or "")


def due_text(a: dict, lang: str) -> str:
    return t(lang, "due.overdue", age=age(a["overdue_s"], lang)) if a.get("overdue_s") else ""


def problem_text(p: dict, lang: str) -> str:
    """The whole problem, for `status --all`."""
    a = dict(p["args"])
    if p["key"] == "pb.fault":
        due = due_text(a, lang)
        a = {"code": a["code"], "meaning": after_code(a["code"], _meaning(a, lang)), "sev": _sev(lang, a["sev"]),
             "since": fmt_ts(a["since"]), "due": t(lang, "pb.due", due=due) if due else ""}
    elif p["key"] == "pb.unavailable":
        a["since"] = fmt_ts(a["since"])
    elif p["key"] == "pb.backlog_old":
        a = {"age": age(a["age_s"], lang)}
    return t(lang, p["key"], **a)


def problem_cells(p: dict, lang: str, now: str | None, room: int) -> tuple[str, str]:
    """(code, text) of the one-line form: what is wrong, in short, and after
    "->" the first thing to do. `room` is the display width left for the
    text: the headline gets at most half of it, so the step always shows."""
    a = p["args"]
    if p["key"] == "pb.fault":
        f = p["fault"]
        due = due_text(a, lang)
        due = t(lang, "pb.due_short", due=due) if due else ""
        step = " -> " + _text(f, "remedy", lang)
        head = headline(a["code"], _meaning(a, lang))
        # a short step leaves the rest to the headline; beside a long one the
        # headline keeps half the room and the step is cut at the line's end
        room_head = max(room - width(due) - width(step), min(width(head), max(room // 2 - width(due), 24)))
        return a["code"], fit(head, room_head) + due + step
    if p["key"] == "pb.unavailable":
        text = t(lang, "pb.unavailable_for", age=age(seconds_between(now, a["since"]), lang), err=a["err"])
    elif p["key"] == "pb.clock":
        text = t(lang, "pb.clock_short")
    else:
        text = problem_text(p, lang)
    step = _STEPS.get(p["key"])
    return "", text + (" -> " + t(lang, step) if step else "")


def device_rank(st: dict) -> dict[str, tuple]:
    """Devices with problems first (worst first), then the rest by name."""
    worst: dict[str, tuple] = {}
    for i, p in enumerate(problems(st)):
        dev = p.get("device")
        if dev and dev not in worst:
            worst[dev] = (0, i)
    return {d["name"]: worst.get(d["name"], (1, 0)) for d in st.get("devices") or []}
