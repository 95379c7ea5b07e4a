"""Once, at start: the registry an earlier version kept in cards.json (one
TinyDB document that had to be read whole, 1 GB of memory for a 72 MB file)
moves into cards.db, read entry by entry so that memory stays flat however
big the file grew.

The file is ``{"cards": {"<n>": {"key": "entries", "value": [...]},
"<m>": {"key": "meta", "value": {...}}}}``. After a complete move it is
deleted (it holds card numbers, and the registry now lives in cards.db); if
part of it could not be read, what could be is kept and the file is moved
aside as cards.json.corrupt-<UTC> for the operator."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator

from gateway.site.cardfile import RegistryError
from gateway.site.state import quarantine_path

from .jsonstream import Reader
from .registry import CardRegistry

log = logging.getLogger(__name__)

OLD_FILE = "cards.json"
META_KEYS = ("mqtt_sha256", "mqtt_applied", "reminded_on")
CHUNK_CHARS = 1 << 20


def _chunks(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        while chunk := f.read(CHUNK_CHARS):
            yield chunk


def _documents(path: Path, meta: dict) -> Iterator[dict]:
    """The stored entries, one at a time; ``meta`` is filled on the way."""
    r = Reader(_chunks(path))
    for table in r.members():
        if table != "cards" or r.peek() != "{":
            r.value()
            continue
        for _doc_id in r.members():
            if r.peek() != "{":
                r.value()
                continue
            kind = None
            for field in r.members():
                if field == "key":
                    kind = r.value()
                elif field == "value" and kind == "entries" and r.peek() == "[":
                    yield from r.array()
                elif field == "value" and kind == "meta":
                    value = r.value()
                    if isinstance(value, dict):
                        meta.update({k: value[k] for k in META_KEYS if value.get(k) is not None})
                else:
                    r.value()
    r.end()


def migrate_json(state_dir: Path, registry: CardRegistry) -> tuple[int, int] | None:
    """Move cards.json into the registry; (added, skipped), None if there was none."""
    path = Path(state_dir) / OLD_FILE
    if not path.exists():
        return None
    meta: dict = {}
    broken = None
    entries = _documents(path, meta)

    def safely() -> Iterator[dict]:
        nonlocal broken
        try:
            yield from entries
        except RegistryError as exc:
            broken = exc.problems[0]
    added, skipped = registry.migrate(safely(), meta)
    if broken is None:
        os.unlink(path)
        log.info("doors: card registry moved from %s to %s: %d entries, %d skipped (not valid entries)",
                 path.name, registry.path.name, added, skipped)
    else:
        aside = quarantine_path(str(path))
        log.error("doors: %s could only be read in part (%s): %d entries moved to %s, the file is kept as %s",
                  path.name, broken, added, registry.path.name, aside)
    return added, skipped
