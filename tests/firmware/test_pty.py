"""The firmware's RTU slave behind real pseudo-terminals, polled by pymodbus.

`python -m miu.ptyserve` (the reusable runner) serves a MeterCore on a SimHal
driven by real time: once on a pty it creates itself (os.openpty), once on one
end of a socat pty pair through pyserial. The client is pymodbus's
AsyncModbusSerialClient, RTU framing, 9600 baud.
"""

import asyncio
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusSerialClient

from miu import regs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
UNIT = 7


def _readline(proc: subprocess.Popen, stream, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    buf = b""
    fd = stream.fileno()
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            ch = os.read(fd, 1)
            if not ch:
                break
            if ch == b"\n":
                return buf.decode()
            buf += ch
        elif proc.poll() is not None:
            break
    raise AssertionError(f"no line within {timeout}s (got {buf!r}, exit {proc.poll()})")


def start_server(*args: str) -> tuple[subprocess.Popen, str | None]:
    env = dict(os.environ, PYTHONPATH=str(FIRMWARE))
    proc = subprocess.Popen([sys.executable, "-m", "miu.ptyserve", "--unit", str(UNIT), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    first = _readline(proc, proc.stdout, 10)
    path = first.split(" ", 1)[1] if first.startswith("PTY ") else None
    assert first.startswith(("PTY ", "PORT ")), first
    assert _readline(proc, proc.stdout, 10) == f"READY unit={UNIT}"
    return proc, path


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def read_inputs(client, start=0, count=16):
    rr = await client.read_input_registers(start, count=count, device_id=UNIT)
    assert not rr.isError(), rr
    return rr.registers


async def session(port: str) -> None:
    client = AsyncModbusSerialClient(port, baudrate=9600, timeout=1, retries=2)
    assert await client.connect()
    try:
        t0 = time.monotonic()
        r = await read_inputs(client)
        assert r[regs.IR_MODEL] == 1001 and r[regs.IR_FW_VERSION] == 100

        # The magnet held on for the first 2 s latches ERR-1 and shuts the valve.
        while not r[regs.IR_STATUS] & regs.ST_ERR1:
            assert time.monotonic() - t0 < 8, r
            await asyncio.sleep(0.2)
            r = await read_inputs(client)
        assert r[regs.IR_STATUS] & regs.ST_FAULT_SHUT
        assert r[regs.IR_ERROR] == 1
        assert r[regs.IR_VALVE] == regs.VALVE_CLOSED

        # A holding-only master sees the same through FC03.
        hr = await client.read_holding_registers(0, count=16, device_id=UNIT)
        assert not hr.isError()
        assert hr.registers[regs.IR_STATUS] == r[regs.IR_STATUS]
        assert hr.registers[regs.IR_MODEL] == 1001

        # Opening is refused while the fault is latched.
        refused = await client.write_register(regs.HR_COMMAND, regs.CMD_OPEN_VALVE, device_id=UNIT)
        assert refused.isError() and refused.exception_code == 3

        # After the magnet is gone, the fault card clears it and reopens the valve.
        await asyncio.sleep(max(0.0, 2.5 - (time.monotonic() - t0)))
        w = await client.write_register(regs.HR_COMMAND, regs.CMD_FAULT_CARD, device_id=UNIT)
        assert not w.isError(), w
        r = await read_inputs(client)
        assert r[regs.IR_STATUS] == 0
        assert r[regs.IR_ERROR] == 0
        assert r[regs.IR_VALVE] == regs.VALVE_OPEN

        # Totals move: 1 L per pulse at 5 m3/h is 1.4 L/s.
        w = await client.write_register(regs.HR_PULSE_LITRES, 100, device_id=UNIT)
        assert not w.isError()
        v0 = (r[0] << 16) | r[1]
        await asyncio.sleep(2.5)
        r = await read_inputs(client)
        v1 = (r[0] << 16) | r[1]
        assert v1 >= v0 + 2, (v0, v1)

        # Credit by FC16, read back from the balance.
        b0 = (r[2] << 16) | r[3]
        w = await client.write_registers(regs.HR_CREDIT, [0, 1000], device_id=UNIT)
        assert not w.isError()
        r = await read_inputs(client, 2, 2)
        assert ((r[0] << 16) | r[1]) - b0 >= 1000 - 10

        # Exceptions come back as such.
        bad = await client.read_input_registers(50, count=1, device_id=UNIT)
        assert bad.isError() and bad.exception_code == 2

        # Device identification, basic objects.
        di = await client.read_device_information(device_id=UNIT)
        assert not di.isError()
        assert di.information[0] == b"edgegw"
        assert di.information[1] == b"MIU-1001"
        assert di.information[2] == b"1.00"
    finally:
        client.close()


def test_pymodbus_against_firmware_on_its_own_pty():
    proc, path = start_server("--balance", "20000", "--open", "--flow", "5", "--magnet-seconds", "2")
    try:
        assert path and path.startswith("/dev/")
        asyncio.run(asyncio.wait_for(session(path), 60))
    finally:
        stop(proc)
        err = proc.stderr.read().decode() if proc.stderr else ""
        assert "Traceback" not in err, err


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed")
def test_pymodbus_against_firmware_on_a_socat_pair(tmp_path):
    socat = subprocess.Popen(["socat", "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc = None
    try:
        ends = []
        while len(ends) < 2:
            line = _readline(socat, socat.stderr, 10)
            m = re.search(r"PTY is (\S+)", line)
            if m:
                ends.append(m.group(1))
        state = tmp_path / "miu.dat"
        proc, _ = start_server("--port", ends[0], "--balance", "20000", "--open",
                               "--flow", "5", "--magnet-seconds", "2", "--state", str(state))
        asyncio.run(asyncio.wait_for(session(ends[1]), 60))
        stop(proc)
        # The flash image survives the runner: counts restart where they were.
        proc, _ = start_server("--port", ends[0], "--state", str(state))

        async def totals() -> list[int]:
            client = AsyncModbusSerialClient(ends[1], baudrate=9600, timeout=1, retries=2)
            assert await client.connect()
            try:
                return await read_inputs(client, 0, 4)
            finally:
                client.close()

        r = asyncio.run(totals())
        assert (r[0] << 16) | r[1] > 0
        assert (r[2] << 16) | r[3] > 20_000
    finally:
        if proc is not None:
            stop(proc)
        socat.terminate()
        socat.wait(5)
