"""`edgegw watch`: live values and states, redrawn in place on a terminal,
one line per reading when piped, JSON lines with --json."""

import json
import shutil
import sys

from . import i18n
from .client import (
    DaemonDenied,
    DaemonDown,
    DaemonError,
    Site,
    daemon_error,
    err,
    load_site,
)
from .text import clip
from .tool_views import render_watch_table, watch_line


def cmd_watch(args) -> int:
    site = load_site(args)
    if isinstance(site, int):
        return site
    tty = site.color or (sys.stdout.isatty() and not args.json)
    shown = 0
    latest: dict[str, dict] = {}
    drawn = 0
    lost = 0
    try:
        with site.client(timeout=max(60.0, 10 * _longest_interval(site))) as c:
            if tty:
                print(i18n.t(site.lang, "wt.title", n=len(args.devices) or len(site.cfg.devices)))
            for ev in c.events("watch", {"devices": list(args.devices)}):
                initial = ev.get("ok") is None
                lost += ev.get("lost", 0)
                if args.json:
                    print(json.dumps(ev, ensure_ascii=False), flush=True)
                elif tty:
                    latest[ev["device"]] = ev
                    cols = shutil.get_terminal_size((100, 24)).columns
                    table = [clip(x, cols - 1) for x in render_watch_table(latest, site.lang, site.color, lost)]
                    # Redraw in place: cursor up over the previous table, clear to the end.
                    sys.stdout.write((f"\x1b[{drawn}F\x1b[J" if drawn else "") + "\n".join(table) + "\n")
                    sys.stdout.flush()
                    drawn = len(table)
                else:
                    print(watch_line(ev, site.lang), flush=True)
                if not initial:
                    shown += 1
                    if args.count and shown >= args.count:
                        return 0
    except (DaemonDown, DaemonDenied) as exc:
        if isinstance(exc, DaemonDown):
            err(i18n.t(site.lang, "er.watch_needs_daemon"))
        return daemon_error(site, exc)
    except DaemonError as exc:
        return daemon_error(site, exc)
    return 0


def _longest_interval(site: Site) -> float:
    return max((d.poll_interval_s for d in site.cfg.devices), default=10.0)
