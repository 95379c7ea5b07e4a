"""sd_notify against a real AF_UNIX datagram socket standing in for systemd,
and the watchdog progress tracker on an explicit clock."""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
import struct
import tempfile
import threading
import uuid

import pytest

from gateway.site.sdnotify import (
    MAX_STATUS_CHARS,
    Notifier,
    Watchdog,
    feed_watchdog,
    watchdog_interval,
)


@pytest.fixture
def manager():
    """A datagram socket in a short path (sun_path holds 108 bytes), with
    SO_PASSCRED like systemd's, so the sender's pid can be checked."""
    d = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")
    path = os.path.join(d, "notify")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    s.bind(path)
    s.settimeout(2)
    yield s, path
    s.close()
    shutil.rmtree(d, ignore_errors=True)


def recv(s: socket.socket) -> tuple[str, int | None]:
    """One datagram and the pid the kernel vouches for."""
    data, anc, _flags, _addr = s.recvmsg(4096, socket.CMSG_SPACE(12))
    pid = None
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid, _uid, _gid = struct.unpack("iII", payload[:12])
    return data.decode(), pid


def drain(s: socket.socket) -> list[bytes]:
    """Every datagram waiting now, without waiting for more."""
    got = []
    s.setblocking(False)
    try:
        while True:
            got.append(s.recv(4096))
    except BlockingIOError:
        return got
    finally:
        s.settimeout(2)


# -- Notifier ------------------------------------------------------------------


def test_without_notify_socket_every_call_is_a_quiet_no_op():
    n = Notifier(env={})
    assert not n.enabled
    assert (n.ready("x"), n.status("x"), n.watchdog(), n.stopping()) == (False,) * 4
    assert n.dropped == 0


@pytest.mark.parametrize("value", ["", "relative/path", "@", "vsock:2:1234"])
def test_a_notify_socket_that_is_not_a_unix_socket_is_ignored(value):
    assert not Notifier(env={"NOTIFY_SOCKET": value}).enabled


def test_ready_status_watchdog_stopping_arrive_as_systemd_reads_them(manager):
    s, path = manager
    n = Notifier(env={"NOTIFY_SOCKET": path})
    assert n.ready("4 of 5 devices available, backlog 0")
    assert recv(s) == ("READY=1\nSTATUS=4 of 5 devices available, backlog 0", os.getpid())
    assert n.status("3 of 5 devices available, backlog 12")
    assert recv(s)[0] == "STATUS=3 of 5 devices available, backlog 12"
    assert n.watchdog()
    assert recv(s)[0] == "WATCHDOG=1"
    assert n.stopping()
    assert recv(s)[0] == "STOPPING=1"
    assert n.dropped == 0
    n.close()


def test_pings_from_a_worker_thread_carry_the_main_pid(manager):
    # NotifyAccess=main accepts only the main pid; a thread of it is the same
    # process, so an executor thread may ping.
    s, path = manager
    n = Notifier(env={"NOTIFY_SOCKET": path})
    t = threading.Thread(target=n.watchdog)
    t.start()
    t.join()
    assert recv(s) == ("WATCHDOG=1", os.getpid())


def test_status_is_one_bounded_line(manager):
    s, path = manager
    n = Notifier(env={"NOTIFY_SOCKET": path})
    n.status("first line\nREADY=1\r\n  second\tline")
    assert recv(s)[0] == "STATUS=first line READY=1 second line"
    n.status("x" * 5000)
    text = recv(s)[0]
    assert text.startswith("STATUS=xxx") and "\n" not in text
    assert len(text) == len("STATUS=") + MAX_STATUS_CHARS


def test_abstract_socket_names_start_with_at():
    name = f"edgegw-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(b"\0" + name.encode())
        s.settimeout(2)
        n = Notifier(env={"NOTIFY_SOCKET": "@" + name})
        assert n.ready()
        assert s.recv(4096) == b"READY=1"
        n.close()


def test_a_vanished_socket_is_reported_not_raised_and_a_new_one_is_reached(manager):
    s, path = manager
    n = Notifier(env={"NOTIFY_SOCKET": path})
    assert n.watchdog()
    recv(s)
    s.close()
    os.unlink(path)
    assert n.watchdog() is False
    assert n.dropped == 1
    # The manager re-created its socket (daemon-reexec): the next ping gets through.
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as again:
        again.bind(path)
        again.settimeout(2)
        assert n.watchdog()
        assert again.recv(4096) == b"WATCHDOG=1"
    n.close()


def test_a_full_manager_queue_drops_instead_of_blocking(manager):
    s, path = manager
    n = Notifier(env={"NOTIFY_SOCKET": path})
    # The receiver queue is small (net.unix.max_dgram_qlen, 10 by default
    # to 512 on some systems); a blocking socket would hang here for good.
    result = {}

    def flood() -> None:
        sent = 0
        for _ in range(100_000):
            if not n.watchdog():
                break
            sent += 1
        result["sent"] = sent

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "send blocked on a full queue"
    sent = result["sent"]
    assert 1 <= sent < 100_000 and n.dropped == 1
    for _ in range(sent):
        assert recv(s)[0] == "WATCHDOG=1"
    assert drain(s) == []
    # After the manager caught up, the same socket works again.
    assert n.watchdog()
    assert recv(s)[0] == "WATCHDOG=1"
    n.close()


# -- watchdog_interval -----------------------------------------------------------


@pytest.mark.parametrize("env, expected", [
    ({"WATCHDOG_USEC": "90000000"}, 45.0),
    ({"WATCHDOG_USEC": "90000000", "WATCHDOG_PID": "4242"}, 45.0),
    ({"WATCHDOG_USEC": "90000000", "WATCHDOG_PID": "4243"}, None),   # meant for another process
    ({"WATCHDOG_USEC": "90000000", "WATCHDOG_PID": "x"}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "-5"}, None),
    ({"WATCHDOG_USEC": "90s"}, None),
    ({"WATCHDOG_USEC": ""}, None),
    ({}, None),
    ({"WATCHDOG_PID": "4242"}, None),
])
def test_watchdog_interval_is_half_the_timeout_for_this_process_only(env, expected):
    assert watchdog_interval(env, pid=4242) == expected


def test_watchdog_interval_defaults_to_this_process():
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}) == 1.0


# -- Watchdog ----------------------------------------------------------------------


def test_healthy_only_while_every_participant_beats_within_its_deadline():
    w = Watchdog(clock=lambda: pytest.fail("explicit times only"))
    w.register("bus:rs485-1", 5, now=0)
    w.register("publisher", 30, now=0)
    assert w.healthy(now=5) and w.overdue(now=5) == []
    assert not w.healthy(now=5.01)
    assert w.overdue(now=5.01) == ["bus:rs485-1"]
    assert w.beat("bus:rs485-1", now=5.01)
    assert w.healthy(now=10)
    assert w.overdue(now=31) == ["bus:rs485-1", "publisher"]   # most overdue first


def test_a_beat_can_announce_a_longer_or_shorter_wait():
    w = Watchdog()
    w.register("bus:slow", 5, now=0)
    # Idle until the next poll in an hour: that is not a hang.
    w.beat("bus:slow", within=3600 + 5, now=1)
    assert w.healthy(now=3000)
    # A request with a 0.5 s timeout: it must be back well before the default.
    w.beat("bus:slow", within=0.5 + 2, now=3000)
    assert not w.healthy(now=3003)
    # Without `within` the registered deadline applies again.
    w.beat("bus:slow", now=3003)
    assert w.healthy(now=3008) and not w.healthy(now=3008.5)


def test_stuck_participant_stays_unhealthy_while_others_beat():
    w = Watchdog()
    w.register("bus:a", 2, now=0)
    w.register("bus:b", 2, now=0)
    for t in range(1, 20):
        w.beat("bus:a", now=t)
        assert w.healthy(now=t) == (t <= 2)
    assert w.overdue(now=19) == ["bus:b"]


def test_unregister_and_unknown_names():
    w = Watchdog()
    assert w.healthy(now=0) and w.participants == []
    w.register("bus:a", 1, now=0)
    w.unregister("bus:a")
    w.unregister("bus:a")          # twice is fine
    assert w.beat("bus:a", now=5) is False
    assert w.healthy(now=100)
    with pytest.raises(ValueError):
        w.register("bus:b", 0)
    with pytest.raises(ValueError):
        w.register("bus:b", float("nan"))


def test_the_default_clock_is_monotonic_time():
    w = Watchdog()
    w.register("p", 60)
    assert w.beat("p")
    assert w.healthy() and w.overdue() == []


# -- feed_watchdog: the ping loop over a real socket --------------------------------------


def test_pings_stop_while_a_participant_hangs_and_resume_after(manager):
    s, path = manager
    n = Notifier(env={"NOTIFY_SOCKET": path})
    now = [0.0]
    w = Watchdog(clock=lambda: now[0])
    w.register("bus:a", 1.0)
    w.register("publisher", 1.0)

    async def scenario() -> list[int]:
        counts = []
        task = asyncio.create_task(feed_watchdog(n, w, 0.04))

        async def pings_in(seconds: float) -> int:
            await asyncio.sleep(seconds)
            got = drain(s)
            assert set(got) <= {b"WATCHDOG=1"}
            return len(got)

        # Healthy: both beat ("time" stands still at 0).
        counts.append(await pings_in(0.2))
        # bus:a is stuck in a read: the publisher still beats, time moves on.
        now[0] = 5.0
        w.beat("publisher")
        counts.append(await pings_in(0.2))
        # bus:a answers again.
        w.beat("bus:a")
        counts.append(await pings_in(0.2))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return counts

    healthy, stuck, resumed = asyncio.run(scenario())
    assert healthy >= 3, healthy
    assert stuck == 0
    assert resumed >= 3, resumed

