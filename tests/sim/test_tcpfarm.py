"""The load-test TCP farm answers like a Modbus TCP meter: a real pymodbus
client reads the model's registers from it, gets exception 02 outside the
map, no answer from an absent unit; it records when each unit was asked and
applies scheduled fault flips."""
from __future__ import annotations

import asyncio
import time

from pymodbus import FramerType
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from protocols.modbus import types
from protocols.models import load_models
from simulators.tcpfarm import Farm


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_reads_exceptions_silence_times_and_flips():
    async def main():
        farm = Farm("turbine-evc", ports=2, units=3, refresh_s=0.2)
        farm.flips = [(time.monotonic() + 0.3, "1:2", True)]
        await farm.start()
        beh = asyncio.create_task(farm.run_behaviour())
        model = load_models()["turbine-evc"]
        status = model.field("status_word")
        code = model.field("model_code")
        client = AsyncModbusTcpClient("127.0.0.1", port=farm.ports[1], framer=FramerType.SOCKET,
                                      timeout=0.3, retries=0)
        try:
            assert await client.connect()
            rr = await client.read_holding_registers(0, count=28, device_id=2)
            assert not rr.isError() and len(rr.registers) == 28
            assert types.decode(code, rr.registers[16:17]) == 3001
            assert types.decode(status, rr.registers[15:16]) & 2 == 0
            bad = await client.read_holding_registers(20, count=20, device_id=2)
            assert bad.isError() and bad.exception_code == 2
            try:
                rr = await client.read_holding_registers(0, count=1, device_id=9)
                silent = False
            except ModbusIOException:
                silent = True
            assert silent, "an absent unit must not answer"
            await asyncio.sleep(0.6)
            if not client.connected:           # pymodbus may drop a connection after a timeout
                assert await client.connect()
            rr = await client.read_holding_registers(0, count=28, device_id=2)
            assert types.decode(status, rr.registers[15:16]) & 2 == 2
        finally:
            client.close()
            beh.cancel()
            await farm.stop()
        rec = farm.record()
        assert len(rec["times"]["1:2"]) >= 3
        assert rec["times"]["0:1"] == []
        assert [(k, on) for k, on, _t in rec["flips"]] == [("1:2", True)]
    _run(main())
