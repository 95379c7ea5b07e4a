"""[doors]: checked here, interpreted by gateway/doors (docs/doors.md)."""
from __future__ import annotations

import zoneinfo

from gateway.site.cardfile import check_file

from .checker import BAD, BaseChecker, q
from .types import DEFAULTS, DOOR_KEY_NAME


class DoorSection(BaseChecker):
    def doors(self, kp, v):
        data = self.table(kp, v)
        if data is None:
            return {}
        years = lambda k, x: self.integer(k, x, 1, 10)  # noqa: E731
        spec = {
            "pseudonym_key_file": self.door_key_file,
            "publish_raw_card_numbers": self.boolean,
            "registry_csv": self.registry_csv,
            "history_days": lambda k, x: self.number(k, x, 1, 3650),
            "clock_skew_warn_s": lambda k, x: self.number(k, x, 1, 86400),
            "owner_years": years, "family_years": years,
            "tenant_years": years, "merchant_years": years,
            "parking_months": lambda k, x: self.integer(k, x, 1, 24),
            "expiry_reminder_days": lambda k, x: self.integer(k, x, 1, 365),
            "reminder_hour": lambda k, x: self.integer(k, x, 0, 23),
            "timezone": self.timezone,
        }
        return self.fields(data, kp, spec)

    def door_key_file(self, kp, v):
        s = self.string(kp, v)
        if s is BAD:
            return BAD
        p = self.resolve(s)
        if not p.exists():
            self.add(kp, f"{p} does not exist (leave pseudonym_key_file out and the gateway "
                         f"creates a key in state_dir)")
            return BAD
        if not p.is_file():
            self.add(kp, f"{p} is not a file")
            return BAD
        return p

    def door_key_mode(self, doc: dict, doors: dict) -> None:
        # Whoever can read the key can turn published pseudonyms back into
        # card numbers (2^32 tries), so it must be the service's alone. The
        # key the gateway generated itself (state_dir) is checked as well.
        p = doors.get("pseudonym_key_file")
        if p is None:
            raw = doc.get("gateway", {}).get("state_dir") if isinstance(doc.get("gateway"), dict) else None
            p = self.resolve(raw if isinstance(raw, str) else DEFAULTS["gateway"]["state_dir"]) / DOOR_KEY_NAME
            if not p.is_file():
                return
        try:
            mode = p.stat().st_mode
        except OSError:
            return
        if mode & 0o077:
            self.add("doors.pseudonym_key_file",
                     f"{p} is readable or writable by group or others (run: chmod 600 {p})")

    def registry_csv(self, kp, v):
        p = self.existing_file(kp, v)
        if p is BAD:
            return BAD
        # read row by row, bounded (docs/doors.md 4.1); one line per problem
        problems = check_file(p)
        for problem in problems:
            self.add(kp, f"{p}: {problem}")
        return BAD if problems else p

    def timezone(self, kp, v):
        s = self.string(kp, v)
        if s is BAD:
            return BAD
        try:
            zoneinfo.ZoneInfo(s)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            self.add(kp, f"{q(s)} is not a time zone (e.g. \"Asia/Shanghai\", \"UTC\")")
            return BAD
        return s
