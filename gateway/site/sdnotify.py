"""systemd's service notification protocol over the standard library, and a
progress tracker that decides when the watchdog may be fed.

Protocol (sd_notify(3)): one AF_UNIX datagram of newline-separated
``KEY=value`` lines to the socket named by ``$NOTIFY_SOCKET``; a name that
starts with ``@`` is in the abstract namespace. Without ``$NOTIFY_SOCKET``
(started by hand, in tests, under another supervisor) every call is a no-op.

The socket is non-blocking: a notification must never stall the event loop.
If systemd's queue is full the datagram is dropped and ``send`` returns
False; for ``WATCHDOG=1`` that is harmless (the next ping comes at half the
interval), and READY/STOPPING are sent once each at moments when the
manager is not flooded.

Watchdog (sd_watchdog_enabled(3)): ``$WATCHDOG_USEC`` is the unit's
``WatchdogSec=``; ``$WATCHDOG_PID``, when set, names the process it is
meant for. :func:`watchdog_interval` gives the ping period, half the
timeout, as systemd recommends.

A ping that only proves the event loop runs would keep a gateway alive
whose bus task is stuck in a read forever. :class:`Watchdog` therefore
tracks named participants (each bus task, the publisher), each with its own
deadline; the daemon pings only while :meth:`Watchdog.healthy` is true, so
one stuck participant stops the pings and systemd restarts the service.

How participants should beat (the deadline is "time until the next beat"):

- a bus task beats before every request with ``within`` = the bus's
  ``timeout_s`` plus a margin (the request cannot legitimately take longer:
  retries are separate requests and beat again), and before every idle
  sleep with ``within`` = the sleep plus the margin (a bus polled once a day
  is idle, not stuck);
- the publisher beats on every loop turn and every broker acknowledgement,
  with a deadline of a few keep-alive periods, whether or not the broker is
  reachable: a broker outage is not a hang, a dead publisher task is.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

__all__ = ["MAX_STATUS_CHARS", "Notifier", "Watchdog", "feed_watchdog", "watchdog_interval"]

log = logging.getLogger(__name__)

# systemd shows STATUS= in `systemctl status` on one line; longer text only
# wraps the terminal. The bound also keeps every datagram far below the
# socket's maximum message size.
MAX_STATUS_CHARS = 200


class Notifier:
    """Sends notifications to ``$NOTIFY_SOCKET``; does nothing without it.

    ``env`` is read once, at construction: the daemon builds one Notifier at
    start. Every method returns True when the datagram was handed to the
    kernel and False when there is no socket or the send failed; no method
    raises for a missing, vanished or full socket.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self._sock: socket.socket | None = None
        self.dropped = 0  # datagrams that could not be sent (full queue, socket gone)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=value`` assignments as one datagram."""
        if self.address is None or not assignments:
            return False
        data = "\n".join(assignments).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX,
                                           socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
            self._sock.sendto(data, self.address)
            return True
        except OSError as exc:
            self.dropped += 1
            # A manager that re-created its socket (daemon-reexec) is reached
            # again by a fresh socket on the next call.
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                self.close()
            return False

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *(() if status is None else (_status_line(status),)))

    def status(self, text: str) -> bool:
        return self.send(_status_line(text))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *(() if status is None else (_status_line(status),)))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _address(name: str) -> str | bytes | None:
    # Only unix sockets: a path or an abstract name. Anything else (empty,
    # relative, vsock: of newer systemd versions) is not for us.
    if name.startswith("/"):
        return name
    if name.startswith("@") and len(name) > 1:
        return b"\0" + name[1:].encode()
    return None


def _status_line(text: str) -> str:
    # STATUS is one line: a newline would start a new assignment.
    line = " ".join(str(text).split())
    if len(line) > MAX_STATUS_CHARS:
        line = line[:MAX_STATUS_CHARS - 1] + "…"
    return "STATUS=" + line


def watchdog_interval(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds between two WATCHDOG=1 pings (half of ``WatchdogSec=``), or
    None when the service manager expects no pings from this process."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner:
        try:
            if int(owner) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    return usec / 2e6


class Watchdog:
    """Progress of named participants, each with its own deadline.

    Pure bookkeeping on a monotonic clock (injectable for tests); no I/O,
    no threads. Safe to call from the event loop only (like the rest of the
    daemon's state): a worker thread reports through the loop.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._deadline_s: dict[str, float] = {}
        self._due: dict[str, float] = {}

    def register(self, name: str, deadline_s: float, now: float | None = None) -> None:
        """Add a participant that must beat at least every ``deadline_s``
        seconds; registering counts as its first beat."""
        if not deadline_s > 0:
            raise ValueError(f"deadline of {name!r} must be > 0, not {deadline_s!r}")
        self._deadline_s[name] = float(deadline_s)
        self._due[name] = self._now(now) + float(deadline_s)

    def unregister(self, name: str) -> None:
        """A participant that ended on purpose (shutdown, bus removed)."""
        self._deadline_s.pop(name, None)
        self._due.pop(name, None)

    def beat(self, name: str, within: float | None = None, now: float | None = None) -> bool:
        """``name`` made progress; its next beat is due within ``within``
        seconds (default: its registered deadline).

        Returns False, and changes nothing, for a name that is not
        registered: a task still winding down after it was unregistered
        must not crash on its last beat. (A misspelt name is caught anyway:
        the registered participant never beats and turns overdue.)"""
        default = self._deadline_s.get(name)
        if default is None:
            return False
        self._due[name] = self._now(now) + (default if within is None else max(0.0, float(within)))
        return True

    def overdue(self, now: float | None = None) -> list[str]:
        """Participants whose next beat is late, most overdue first."""
        t = self._now(now)
        late = [(due, name) for name, due in self._due.items() if t > due]
        return [name for _due, name in sorted(late)]

    def healthy(self, now: float | None = None) -> bool:
        """True while every participant beat within its deadline (and
        vacuously true with none registered)."""
        t = self._now(now)
        return all(t <= due for due in self._due.values())

    @property
    def participants(self) -> list[str]:
        return sorted(self._due)

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now


async def feed_watchdog(notifier: Notifier, watchdog: Watchdog, interval: float) -> None:
    """Send WATCHDOG=1 every ``interval`` seconds while ``watchdog`` is
    healthy; runs until cancelled. The first late participant is logged
    once per episode, so the journal says why systemd killed the service."""
    late_before: list[str] = []
    while True:
        await asyncio.sleep(interval)
        late = watchdog.overdue()
        if not late:
            notifier.watchdog()
            if late_before:
                log.warning("watchdog: progress again, pings resumed")
        elif late != late_before:
            log.error("watchdog: no progress from %s; not pinging systemd, which restarts "
                      "the service if this lasts", ", ".join(late))
        late_before = late


class Supervision:
    """What the daemon tells systemd, in one place: READY once it runs, a
    STATUS line when the summary changes, WATCHDOG pings while every
    participant makes progress, STOPPING when it stops. Without
    $NOTIFY_SOCKET every call is a no-op, so the daemon calls it the same way
    under systemd, by hand and in tests."""

    def __init__(self, participants: Mapping[str, float], env: Mapping[str, str] | None = None) -> None:
        self.notifier = Notifier(env)
        self.watchdog = Watchdog()
        for name, deadline_s in participants.items():
            self.watchdog.register(name, deadline_s)
        self.interval = watchdog_interval(env)
        self._status: str | None = None

    def tasks(self) -> list:
        """Coroutines the daemon runs beside its own tasks."""
        if self.interval is None or not self.notifier.enabled:
            return []
        return [feed_watchdog(self.notifier, self.watchdog, self.interval)]

    def ready(self, status: str) -> None:
        self._status = status
        self.notifier.ready(status)

    def status(self, text: str) -> None:
        if text != self._status:
            self._status = text
            self.notifier.status(text)

    def stopping(self) -> None:
        self.notifier.stopping("stopping: finishing in-flight messages")
