"""What `edgegw doorlog` shows, from the running daemon or, with it stopped,
read-only from the state folder."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from .history import HISTORY_FILE, History

RECENT_EVENTS = 20


def cursor_key(device: str) -> str:
    """Where a controller's log cursor lives in the outbox kv."""
    return f"door/{device}"



def _view_from(controller: str, cursor: dict | None, history: History | None, gaps=None, resets=None) -> dict:
    events = history.recent(controller, ("access", "expired_card_used"), RECENT_EVENTS) if history else []
    gap_events = history.recent(controller, ("log_gap",), 10) if history else []
    reset_events = history.recent(controller, ("log_reset",), 10) if history else []
    cursor = cursor or {}
    return {
        "controller": controller,
        "serial": cursor.get("serial"),
        "epoch": cursor.get("epoch"),
        "cursor": None if not cursor else {"last_index": cursor.get("last_index"),
                                           "fingerprint": cursor.get("fingerprint")},
        "gaps_total": cursor.get("gaps", 0) if gaps is None else gaps,
        "resets_total": cursor.get("resets", 0) if resets is None else resets,
        "gaps": [{k: g.get(k) for k in ("id", "epoch", "first_index", "last_index", "missing", "reason", "ts")}
                 for g in gap_events],
        "resets": [{k: r.get(k) for k in ("id", "epoch", "reason", "first_index", "previous", "ts")}
                   for r in reset_events],
        "events": [{k: e.get(k) for k in ("id", "ts", "device_ts", "index", "epoch", "door", "event", "type",
                                          "card", "holder_type", "card_valid", "card_status",
                                          "clock_skew_s", "reason") if k in e}
                   for e in events],
    }


def doorlog_view(daemon_or_state, controller: str) -> dict:
    """What `edgegw doorlog CONTROLLER` shows: latest events, cursor, epoch, gaps.

    ``daemon_or_state`` is the running Daemon (live: adds the controller's
    status and clock skew), or, with the daemon stopped, the Config or the
    state folder (read-only: cursor from the outbox, events from the local
    history). Raises KeyError for a name that is not a door controller."""
    doors = getattr(daemon_or_state, "doors", None)
    if doors is not None and hasattr(doors, "view"):
        return doors.view(controller)
    if hasattr(daemon_or_state, "runtimes"):
        raise KeyError(f"{controller!r}: this gateway has no door controllers")
    if hasattr(daemon_or_state, "gateway"):
        cfg = daemon_or_state
        state_dir = Path(cfg.gateway.state_dir)
        names = [dc.name for dc in cfg.devices]
        if controller not in names:
            raise KeyError(f"{controller!r} is not a device of this gateway")
    else:
        state_dir = Path(daemon_or_state)
    cursor = None
    ob = state_dir / "outbox.db"
    if ob.exists():
        try:
            db = sqlite3.connect(f"file:{ob}?mode=ro", uri=True, timeout=5.0)
            try:
                row = db.execute("SELECT value FROM kv WHERE key=?", (cursor_key(controller),)).fetchone()
            finally:
                db.close()
            cursor = json.loads(row[0]) if row else None
        except sqlite3.Error:
            cursor = None
    hist = None
    hp = state_dir / HISTORY_FILE
    if hp.exists():
        try:
            hist = History(hp, readonly=True)
        except sqlite3.Error:
            hist = None
    try:
        if cursor is None and (hist is None or not hist.recent(controller, ("access", "log_reset", "log_gap"), 1)):
            raise KeyError(f"{controller!r}: no door log has been read for it (is it a door controller?)")
        out = _view_from(controller, cursor, hist)
    finally:
        if hist is not None:
            hist.close()
    out["source"] = "state"
    return out


