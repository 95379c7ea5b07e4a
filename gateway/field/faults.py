"""`edgegw faults [DEVICE...]`: what stands now, then the history.

Asks the daemon for what stands now and reads the fault history the daemon
keeps in the state dir; with the daemon stopped it shows what was last
recorded and says so."""

import sys
from pathlib import Path

from . import i18n
from .client import (
    ask_daemon,
    err,
    load_site,
    print_json,
)
from .history import HISTORY_NAME, History
from .status import recorded_status
from .views import fmt_ts, render_faults


def faults(args) -> int:
    site = load_site(args)
    if isinstance(site, int):
        return site
    names = [d.name for d in site.cfg.devices]
    for d in args.devices:
        if d not in names:
            err(i18n.t(site.lang, "fl.unknown_device", name=d, known=", ".join(names) or "-"))
            return 2
    data, rc = ask_daemon(site, "faults", {"devices": list(args.devices), "history": args.history})
    if rc is not None:
        return rc
    if data is None:
        st = recorded_status(site.cfg, site.models, f"no answer on {site.socket}")
        hist = History(Path(site.state_dir) / HISTORY_NAME, max_days=site.cfg.gateway.fault_history_days) \
            .read(args.history, list(args.devices)) \
            if args.history else []
        data = {"ts": st["ts"], "daemon": st["daemon"], "recorded": st["recorded"],
                "active": [d for d in st["devices"] if not args.devices or d["name"] in args.devices],
                "history": hist,
                "note": i18n.t(site.lang, "er.daemon_down", sock=site.socket) + "; "
                + (i18n.t(site.lang, "st.recorded", path=st["recorded"]["path"],
                          when=fmt_ts(st["recorded"]["when"])) if st["recorded"]["when"]
                   else i18n.t(site.lang, "st.no_record", path=st["recorded"]["path"]))}
        rc = 2
    if args.json:
        print_json(data)
    else:
        sys.stdout.write(render_faults(data, site.lang, site.color))
    if rc is None:
        rc = 1 if any(d.get("faults") for d in data.get("active") or []) else 0
    return rc
