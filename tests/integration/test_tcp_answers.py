"""Hostile Modbus/TCP answers into the gateway's Bus._request (real pymodbus
TCP client, a raw slave on 127.0.0.1): the checks of issue 12 hold on TCP
too. An answer is a value only if its function code, unit id, transaction
id and byte count answer the request; anything else is a counted mismatch,
and nothing escapes into the event loop."""
from __future__ import annotations

import asyncio

import pytest

from gateway.poll.bus import Bus
from gateway.site.config import BusCfg
from protocols.modbus.plan import Read

pytestmark = pytest.mark.integration

READ = Read("holding", 0, 2, ())


def mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    return tid.to_bytes(2, "big") + b"\0\0" + (len(pdu) + 1).to_bytes(2, "big") + bytes([unit]) + pdu


GOOD = bytes([3, 4, 0, 1, 0, 2])
CASES = {
    "honest": ([lambda t: mbap(t, 1, GOOD)], [1, 2]),
    "honest, in two segments": ([lambda t: mbap(t, 1, GOOD)[:5], lambda t: mbap(t, 1, GOOD)[5:]], [1, 2]),
    "the same answer twice": ([lambda t: mbap(t, 1, GOOD) * 2], [1, 2]),
    "FC04 answering FC03": ([lambda t: mbap(t, 1, bytes([4, 4, 0, 1, 0, 2]))], "mismatch"),
    "another unit": ([lambda t: mbap(t, 2, GOOD)], "mismatch"),
    "another transaction": ([lambda t: mbap(t + 1, 1, GOOD)], "mismatch"),
    "a stray byte": ([lambda t: mbap(t, 1, bytes([3, 5, 0, 1, 0, 2, 9]))], "mismatch"),
    "a register too many": ([lambda t: mbap(t, 1, bytes([3, 6, 0, 1, 0, 2, 0, 3]))], "mismatch"),
    "a register short": ([lambda t: mbap(t, 1, bytes([3, 2, 0, 1]))], "mismatch"),
    "exception under FC04": ([lambda t: mbap(t, 1, bytes([0x84, 2]))], "mismatch"),
    "function byte 0x80": ([lambda t: mbap(t, 1, bytes([0x80, 1]))], "mismatch"),
    "exception 02": ([lambda t: mbap(t, 1, bytes([0x83, 2]))], "exception_2"),
    "junk": ([lambda t: b"\x07\x07\x07"], "crc"),
    "nothing": ([], "timeout"),
}


@pytest.fixture(scope="module")
def rig():
    loop = asyncio.new_event_loop()
    answers: list = []

    async def handle(r, w):
        while True:
            try:
                req = await r.readexactly(12)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            tid = int.from_bytes(req[:2], "big")
            for make in answers.pop(0):
                w.write(make(tid))
                await w.drain()
                await asyncio.sleep(0.005)

    server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    cfg = BusCfg(name="tcp", kind="tcp", port="127.0.0.1", tcp_port=port, baudrate=9600, parity="N",
                 stopbits=1, bytesize=8, timeout_s=0.15, retries=0, gap=0, max_registers=125,
                 backoff_max_s=1.0)

    def sink(_d, _r):
        pass
    bus = Bus(cfg, [], sink)
    escaped: list = []
    loop.set_exception_handler(lambda _l, ctx: escaped.append(ctx))
    assert loop.run_until_complete(bus.open())
    yield loop, bus, answers, escaped
    bus.close()
    server.close()
    loop.run_until_complete(server.wait_closed())
    loop.close()


@pytest.mark.parametrize("name", list(CASES))
def test_a_tcp_answer_is_a_value_only_if_it_answers(rig, name):
    loop, bus, answers, escaped = rig
    replies, expected = CASES[name]
    answers.append(replies)
    before = bus.stats.mismatch
    result = loop.run_until_complete(bus._request(1, READ))
    loop.run_until_complete(asyncio.sleep(0.02))
    assert result == expected
    assert escaped == []
    assert bus.client is not None and bus.client.connected, "the connection dropped"
    assert bus.stats.mismatch - before == (1 if expected == "mismatch" else 0)
