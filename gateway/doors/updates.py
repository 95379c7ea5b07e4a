"""Registry updates on <prefix>/<gw>/config/cards (docs/doors.md 4.3): the
bound on a message, its two forms (CSV text, JSON entries), read as they go,
and the one worker thread that applies them.

The event loop only measures the message and hands the bytes over; parsing,
checking and writing happen on the worker, which hands back an Outcome for
the loop to report. Until the worker commits, events are judged with the
registry as it was; a refused update is rolled back and never seen.
"""
from __future__ import annotations

import hashlib
import io
import logging
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator

from gateway.site.cardfile import (
    MAX_UPDATE_BYTES,
    MAX_UPDATE_ENTRIES,
    MIB,
    RegistryError,
    byte_chunks,
    check_entries,
    csv_rows,
    detect_encoding,
)

from .jsonstream import entry_rows
from .registry import CardRegistry

log = logging.getLogger(__name__)

MAX_PENDING = 3          # updates waiting for the worker; more are refused (the site may send again)
CHUNK_CHARS = 64 * 1024
_LEAD = re.compile(rb"[ \t\r\n]*(?:\xef\xbb\xbf|\x84\x31\x95\x33)?[ \t\r\n]*")   # white space, UTF-8/GB18030 BOM


@dataclass
class Outcome:
    status: str                       # applied | repeat | rejected | rejected_before | cleared
    entries: int = 0
    added: int = 0
    cards: int = 0
    problems: list[str] = field(default_factory=list)
    thread: str = ""                  # where the work ran (tests: never the event loop's)


def is_blank(payload: bytes) -> bool:
    return _LEAD.match(payload).end() == len(payload)


def too_big(size: int) -> str | None:
    if size > MAX_UPDATE_BYTES:
        return (f"the message is {size / MIB:.1f} MiB, above the limit of {MAX_UPDATE_BYTES // MIB} MiB "
                f"for one update: send the entries in several messages (entries are kept, so each "
                f"message need only carry what is new)")
    return None


def payload_rows(payload: bytes) -> Iterator[tuple[str, object]]:
    """(where, row) of an update, CSV or JSON, decoded UTF-8 or GB18030."""
    enc = detect_encoding(byte_chunks(payload))
    lead = _LEAD.match(payload).end()
    stream = io.TextIOWrapper(io.BytesIO(payload), encoding=enc, newline="")
    if payload[lead:lead + 1] in (b"{", b"["):
        yield from entry_rows(iter(lambda: stream.read(CHUNK_CHARS), ""))
    else:
        yield from csv_rows(stream)


def parse_update(payload: bytes) -> list[dict]:
    """A registry update as a list of entries (row checks only); RegistryError
    lists the problems. The daemon streams instead (CardRegistry.ingest)."""
    if (why := too_big(len(payload))) is not None:
        raise RegistryError([why])
    return check_entries(payload_rows(payload), limit=MAX_UPDATE_ENTRIES)


def apply(registry: CardRegistry, payload: bytes, refused: set[str] | None = None) -> Outcome:
    """Worker side: one update, whole or not at all. ``refused`` holds the
    digests of messages refused before: the retained message comes again at
    every reconnect, and is reported once."""
    here = threading.current_thread().name
    if is_blank(payload):
        return Outcome("cleared", thread=here)   # the retained message was cleared: it removes nothing
    if (why := too_big(len(payload))) is not None:
        return Outcome("rejected", problems=[why], thread=here)
    digest = hashlib.sha256(payload).hexdigest()
    if registry.meta().get("mqtt_sha256") == digest:
        return Outcome("repeat", thread=here)    # redelivered on reconnect: already applied
    if refused is not None and digest in refused:
        return Outcome("rejected_before", thread=here)
    try:
        entries, added = registry.ingest(payload_rows(payload), "mqtt", limit=MAX_UPDATE_ENTRIES,
                                         meta={"mqtt_sha256": digest})
    except RegistryError as exc:
        if refused is not None:
            refused.add(digest)
        return Outcome("rejected", problems=exc.problems, thread=here)
    return Outcome("applied", entries, added, registry.count_cards(), thread=here)


class Worker:
    """The one thread that writes the registry. ``submit`` is for the event
    loop: it never waits; the outcome comes back through ``deliver`` on the
    loop (call_soon_threadsafe)."""

    def __init__(self, registry: CardRegistry, deliver: Callable[[Outcome], None]) -> None:
        self.registry = registry
        self.deliver = deliver
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cards")
        self.pending = 0
        self.refused: set[str] = set()   # touched by the worker thread only

    def submit(self, payload: bytes, loop) -> str | None:
        """Queue an update; a reason when it is refused at once."""
        if (why := too_big(len(payload))) is not None:
            return why
        if self.pending >= MAX_PENDING:
            return (f"{MAX_PENDING} updates are still being applied; this one was not taken "
                    f"(publish it again later)")
        self.pending += 1
        fut = self.pool.submit(apply, self.registry, payload, self.refused)
        fut.add_done_callback(lambda f: self._hand_back(loop, f))
        return None

    def _hand_back(self, loop, fut: Future) -> None:
        try:
            loop.call_soon_threadsafe(self._done, fut)
        except RuntimeError:
            pass   # the loop is closed: the daemon is stopping; the commit (or not) stands

    def _done(self, fut: Future) -> None:
        self.pending -= 1
        try:
            outcome = fut.result()
        except Exception as exc:  # noqa: BLE001 - a bug in one update must not stop the next
            log.error("doors: card registry update failed: %s", type(exc).__name__)
            outcome = Outcome("rejected", problems=[f"internal error ({type(exc).__name__}); "
                                                    f"the registry is unchanged"])
        self.deliver(outcome)

    def run(self, fn, *args):
        """Run ``fn`` on the worker (await loop.run_in_executor's future)."""
        return self.pool.submit(fn, *args)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
