"""Emulator accuracy probe (used by bench/run): a master and a slave that
answer instantly exchange 28-register reads through the wire emulator.

    python bench/wireacc.py MASTER_PTY SLAVE_PTY EXCHANGES

Runs at SCHED_FIFO when allowed, like the emulator, so that on a busy shared
machine the figure is the emulator's and the kernel's, not this probe's
wait for a core. Prints one JSON line: exchanges, elapsed_s, sched.
"""
from __future__ import annotations

import json
import os
import select
import sys
import time
import tty

REQ = bytes([1, 3, 0, 0, 0, 28, 0x44, 0x03])
RESP = bytes([1, 3, 56]) + bytes(56) + b"\x00\x00"


def readn(fd: int, k: int) -> None:
    got = 0
    while got < k:
        r, _, _ = select.select([fd], [], [], 2.0)
        if not r:
            raise SystemExit("no data through the emulator")
        got += len(os.read(fd, k - got))


def main() -> int:
    master, slave, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sched = "normal"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        sched = "fifo"
    except (OSError, AttributeError):
        pass
    m = os.open(master, os.O_RDWR | os.O_NOCTTY)
    s = os.open(slave, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(m)
    tty.setraw(s)
    t0 = time.monotonic()
    for _ in range(n):
        os.write(m, REQ)
        readn(s, len(REQ))
        os.write(s, RESP)
        readn(m, len(RESP))
    elapsed = time.monotonic() - t0
    os.close(m)
    os.close(s)
    print(json.dumps({"exchanges": n, "elapsed_s": elapsed, "sched": sched}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
