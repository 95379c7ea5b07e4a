"""`edgegw doorlog CONTROLLER`: latest access events, cursor, epoch, gaps.
Through the daemon when it runs; otherwise read-only from the state folder."""

import sys

from gateway.doors.site import DEFAULTS
from gateway.doors.view import doorlog_view

from .client import (
    ask_daemon,
    err,
    load_site,
    print_json,
)


def doorlog(args) -> int:
    """`edgegw doorlog CONTROLLER`: latest access events, cursor, epoch, gaps.
    Through the daemon when it runs; otherwise read-only from the state folder."""
    site = load_site(args)
    if isinstance(site, int):
        return site
    view, rc = ask_daemon(site, "doorlog", {"controller": args.controller})
    if rc is not None:
        return rc
    rc = 0
    if view is None:
        try:
            view = doorlog_view(site.cfg, args.controller)
        except KeyError as exc:
            err(str(exc).strip("'\""))
            return 2
        rc = 2  # daemon unreachable: what is shown is the last recorded state
    if not isinstance(view, dict) or "controller" not in view:
        err(str(view.get("error") if isinstance(view, dict) else view))
        return 2
    if args.json:
        print_json(view)
    else:
        sys.stdout.write(render_doorlog(view) + ("" if render_doorlog(view).endswith("\n") else "\n"))
    if rc == 0 and view.get("gaps"):
        rc = 1
    return rc


def render_doorlog(view: dict) -> str:
    """Text for a field engineer; `--json` prints the view itself."""
    lines = [f"door controller {view['controller']}  serial {view.get('serial') or '?'}  "
             f"epoch {view.get('epoch') or '?'}  ({'live' if view.get('source') == 'daemon' else 'from the state folder'})"]
    cur = view.get("cursor")
    st = view.get("controller_status")
    if cur:
        text = f"cursor: last record read {cur['last_index']}"
        if st:
            text += (f"; controller holds {st['oldest']}..{st['newest']} of {st['capacity']}, "
                     f"{st['unread']} unread")
        lines.append(text)
    else:
        lines.append("cursor: none yet (nothing read from this controller)")
    skew = view.get("clock_skew_s")
    if skew is not None:
        warn = view.get("clock_skew_warn_s") or DEFAULTS["clock_skew_warn_s"]
        lines.append(f"controller clock: {skew:+d} s from the gateway"
                     + ("  ** beyond the limit: set the controller's clock **" if abs(skew) > warn else ""))
    lines.append(f"gaps: {view.get('gaps_total', 0)}   log resets: {view.get('resets_total', 0)}")
    for g in view.get("gaps", []):
        lines.append(f"  gap  epoch {g['epoch']}: records {g['first_index']}..{g['last_index']} "
                     f"({g['missing']} lost, {g['reason']})  seen {g.get('ts')}")
    for r in view.get("resets", []):
        lines.append(f"  new epoch {r['epoch']}: {r['reason']}, from record {r['first_index']}  seen {r.get('ts')}")
    events = view.get("events", [])
    lines.append(f"latest events ({len(events)}):")
    for e in events:
        if e.get("type") == "expired_card_used":
            lines.append(f"  {e.get('device_ts')}  #{e.get('index')}  door {e.get('door')}  "
                         f"** GRANTED a card that is {e.get('reason')} **  card {e.get('card')}")
            continue
        who = ""
        if e.get("card"):
            who = f"  card {e['card']}"
            if e.get("holder_type"):
                who += f" ({e['holder_type']}{'' if e.get('card_valid') in (True, None) else ', ' + str(e.get('card_status'))})"
        skewed = "  [controller clock off]" if e.get("clock_skew_s") is not None else ""
        lines.append(f"  {e.get('device_ts')}  #{e.get('index')}  door {e.get('door')}  {e.get('event')}{who}{skewed}")
    return "\n".join(lines)
