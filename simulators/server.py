"""Serve simulated devices with the real pymodbus server, on a serial port
(pseudo-terminal or RS-485 adapter) or on TCP.

pymodbus' SimDevice holds a register block; its action hook runs on every
request, and here it copies the simulated device's current registers into the
block, so pymodbus does the framing, CRC and exception responses exactly as it
would against a real master. Line faults (silence, garbled CRC) are applied
in the trace_packet hook, on the bytes that leave the server.
"""
from __future__ import annotations

import logging
import struct
from functools import partial

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.pdu import ExceptionResponse
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadInputRegistersRequest,
)
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from .device import FUNCTION_CODES, SimulatedDevice

log = logging.getLogger(__name__)


async def _action(dev: SimulatedDevice, function_code, start_address, address, count,
                  current_registers, set_values):
    function = FUNCTION_CODES.get(function_code)
    if function is None:
        return ExcCodes.ILLEGAL_FUNCTION
    if set_values is not None and function_code in (6, 16):
        err = dev.write(address, [int(v) for v in set_values])
        return ExcCodes(err) if err else None
    result = dev.read(function, address, count)
    if isinstance(result, int):
        return ExcCodes(result)
    base = address - start_address
    current_registers[base:base + count] = result
    return None


def _block(dev: SimulatedDevice, function: str) -> list[SimData]:
    spans = getattr(dev.behaviour, "spans", None) or dev.spans
    span = spans.get(function)
    if span is None:
        return [SimData(0, count=1, datatype=DataType.INVALID)]
    lo, hi = span
    return [SimData(lo, count=hi - lo, values=0, datatype=DataType.REGISTERS)]


def sim_device(dev: SimulatedDevice) -> SimDevice:
    # Separate blocks per function, as a real meter's holding and input
    # registers are different tables. Coils are unused but must exist.
    bits = [SimData(0, count=1, values=False, datatype=DataType.BITS)]
    return SimDevice(
        id=dev.unit,
        simdata=(bits, list(bits), _block(dev, "holding"), _block(dev, "input")),
        action=partial(_action, dev),
    )


class _QuantityChecked:
    """FC03/FC04 request whose quantity is checked when answering, not when
    decoding: pymodbus 3.16 refuses a quantity outside 1..125 while decoding
    and then answers `80 01` (function byte 0x80, illegal function). The
    spec (Modbus application protocol 1.1b3, 6.3/6.4) says exception 03 with
    the request's own function byte (`83 03`); a real meter answers that."""

    MAX_COUNT = 125

    def decode(self, data: bytes) -> None:
        self.address, self.count = struct.unpack(">HH", data[:4])

    async def datastore_update(self, context, device_id: int):
        if not 1 <= self.count <= self.MAX_COUNT:
            return ExceptionResponse(self.function_code, ExcCodes.ILLEGAL_VALUE)
        return await super().datastore_update(context, device_id)


class HoldingRead(_QuantityChecked, ReadHoldingRegistersRequest):
    pass


class InputRead(_QuantityChecked, ReadInputRegistersRequest):
    pass


REQUESTS = [HoldingRead, InputRead]


class LineShaper:
    """trace_packet hook: drop answers of silent units, garble some CRCs."""

    def __init__(self, devices: dict[int, SimulatedDevice], unit_at: int = 0) -> None:
        self.devices = devices
        # RTU frames start with the unit id; Modbus TCP frames with the
        # 6-byte MBAP header (transaction, protocol, length), then the unit.
        self.unit_at = unit_at
        self.garbled = 0
        self.dropped = 0

    def __call__(self, sending: bool, data: bytes) -> bytes:
        if not sending or len(data) <= self.unit_at:
            return data
        dev = self.devices.get(data[self.unit_at])
        if dev is None:
            # pymodbus answers unknown units with exception 04; a real RS-485
            # line is simply silent for a unit nobody has.
            return b""
        if dev.line.silent:
            self.dropped += 1
            return b""
        if dev.line.garble_rate and dev.rng.random() < dev.line.garble_rate:
            self.garbled += 1
            return data[:-1] + bytes([data[-1] ^ 0x5A])
        return data


class BusServer:
    """One simulated bus: several units behind one serial port or TCP port."""

    def __init__(self, devices: list[SimulatedDevice], *, port: str | None = None,
                 tcp: tuple[str, int] | None = None, baudrate: int = 9600,
                 parity: str = "E", stopbits: int = 1) -> None:
        self.devices = {d.unit: d for d in devices}
        self.shaper = LineShaper(self.devices, unit_at=6 if tcp else 0)
        sims = [sim_device(d) for d in devices]
        if tcp:
            self.server = ModbusTcpServer(sims, address=tcp, framer=FramerType.SOCKET,
                                          trace_packet=self.shaper, custom_pdu=REQUESTS)
        else:
            self.server = ModbusSerialServer(
                sims, port=port, framer=FramerType.RTU, baudrate=baudrate, parity=parity,
                stopbits=stopbits, trace_packet=self.shaper, reconnect_delay=0.5,
                custom_pdu=REQUESTS,
            )

    async def start(self) -> None:
        await self.server.serve_forever(background=True)

    async def stop(self) -> None:
        await self.server.shutdown()
