"""`edgegw explain MODEL CODE` and `edgegw faults [DEVICE...]`.

explain reads only the packaged model catalogue: it works on a laptop in the
van, with no config and no daemon. faults asks the daemon for what stands
now and reads the fault history the daemon keeps in the state dir; with the
daemon stopped it shows what was last recorded and says so.
"""
from __future__ import annotations

import difflib
import sys
from pathlib import Path

from . import i18n


def _lang_for_explain(args) -> str:
    from .control import _raw_language
    from .cli import DEFAULT_CONFIG
    return (i18n.norm(args.lang) or _raw_language(args.config or DEFAULT_CONFIG)
            or i18n.env_lang() or "en")


def explain(args) -> int:
    from protocols.models import load_models

    from .control import err, print_json
    from .views import explain_dict, render_explain, use_color
    lang = _lang_for_explain(args)
    models = load_models()
    model = models.get(args.model) or next((m for k, m in models.items() if k.lower() == args.model.lower()),
                                           None)
    if model is None:
        err(i18n.t(lang, "ex.no_model", model=args.model, known=", ".join(sorted(models))))
        return 2
    codes = [f.code for f in model.faults]
    fault = next((f for f in model.faults if f.code == args.code), None) or \
        next((f for f in model.faults if f.code.lower() == args.code.lower()), None)
    if fault is None:
        close = difflib.get_close_matches(args.code.upper(), codes, n=1, cutoff=0.5)
        hint = i18n.t(lang, "ex.did_you_mean", m=close[0]) if close else ""
        err(i18n.t(lang, "ex.no_code", model=model.id, code=args.code, hint=hint, codes=", ".join(codes)))
        return 2
    e = explain_dict(model, fault)
    if args.json:
        print_json(e)
    else:
        sys.stdout.write(render_explain(e, lang, use_color()))
    return 0


def faults(args) -> int:
    from .control import (HISTORY_NAME, DaemonDenied, DaemonDown, DaemonError, History, daemon_error, err,
                          load_site, print_json, recorded_status)
    from .views import fmt_ts, render_faults
    site = load_site(args)
    if isinstance(site, int):
        return site
    names = [d.name for d in site.cfg.devices]
    for d in args.devices:
        if d not in names:
            err(i18n.t(site.lang, "fl.unknown_device", name=d, known=", ".join(names) or "-"))
            return 2
    rc = None
    try:
        with site.client() as c:
            data = c.request("faults", {"devices": list(args.devices), "history": args.history})
    except DaemonDenied as exc:
        return daemon_error(site, exc)
    except DaemonDown:
        st = recorded_status(site.cfg, site.models, f"no answer on {site.socket}")
        hist = History(Path(site.state_dir) / HISTORY_NAME).read(args.history, list(args.devices)) \
            if args.history else []
        data = {"ts": st["ts"], "daemon": st["daemon"], "recorded": st["recorded"],
                "active": [d for d in st["devices"] if not args.devices or d["name"] in args.devices],
                "history": hist,
                "note": i18n.t(site.lang, "er.daemon_down", sock=site.socket) + "; "
                + (i18n.t(site.lang, "st.recorded", path=st["recorded"]["path"],
                          when=fmt_ts(st["recorded"]["when"])) if st["recorded"]["when"]
                   else i18n.t(site.lang, "st.no_record", path=st["recorded"]["path"]))}
        rc = 2
    except DaemonError as exc:
        return daemon_error(site, exc)
    if args.json:
        print_json(data)
    else:
        sys.stdout.write(render_faults(data, site.lang, site.color))
    if rc is None:
        rc = 1 if any(d.get("faults") for d in data.get("active") or []) else 0
    return rc


def doorlog(args) -> int:
    """`edgegw doorlog CONTROLLER`: latest access events, cursor, epoch, gaps.
    Through the daemon when it runs; otherwise read-only from the state folder."""
    from .control import DaemonDenied, DaemonDown, DaemonError, daemon_error, err, load_site, print_json
    from .doors import doorlog_view, render_doorlog
    site = load_site(args)
    if isinstance(site, int):
        return site
    rc = 0
    try:
        with site.client() as c:
            view = c.request("doorlog", {"controller": args.controller})
    except DaemonDenied as exc:
        return daemon_error(site, exc)
    except DaemonDown:
        try:
            view = doorlog_view(site.cfg, args.controller)
        except KeyError as exc:
            err(str(exc).strip("'\""))
            return 2
        rc = 2  # daemon unreachable: what is shown is the last recorded state
    except DaemonError as exc:
        return daemon_error(site, exc)
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
