"""What field diagnostics and custom pollers (a door controller's log) may do
on a bus, inside its task's turn: one probe, a read with retries, a write, and
closing a poll. Part of poll/bus.py's Bus; apart only to keep that module
to the one loop that owns the port."""
from __future__ import annotations

from pymodbus.exceptions import ModbusException, ModbusIOException

from protocols.modbus.plan import Read

from .runtime import DeviceRuntime


class BusAccess:
    """Mixed into Bus: uses its client, stats, cfg, _request, _finish, _beat,
    _connect and _close."""

    async def probe(self, unit: int, function: str, address: int, count: int) -> list[int] | str:
        """One attempt, no retries, inside this task's turn (Bus.call): a
        scan must not spend two timeouts on every empty address."""
        if self.client is None:
            return "bus_down"
        return await self._request(unit, Read(function, address, count, ()))

    async def open(self) -> bool:
        """Connect without run(): the CLI's own session when no daemon runs."""
        return await self._connect()

    def close(self) -> None:
        self._close()

    # -- for custom pollers, which run inside this task's turn ---------------

    async def read(self, unit: int, function: str, address: int, count: int) -> list[int] | str:
        """One read with this bus's retries; registers or a failure type."""
        if self.client is None:
            return "bus_down"
        req = Read(function, address, count, ())
        for _ in range(1 + self.cfg.retries):
            outcome = await self._request(unit, req)
            if not isinstance(outcome, str) or outcome.startswith("exception") or outcome == "bus_down":
                break
        return outcome

    async def write(self, unit: int, address: int, values: list[int]) -> str | None:
        """Write holding registers (FC16); None on success, else a failure type."""
        if self.client is None:
            return "bus_down"
        self.stats.requests += 1
        self._beat(self.cfg.timeout_s)
        try:
            rr = await self.client.write_registers(address, values, device_id=unit)
        except ModbusIOException:
            self.stats.timeouts += 1
            return "timeout"
        except (ModbusException, OSError):
            self._close()
            return "bus_down"
        if rr.isError():
            self.stats.exceptions += 1
            return f"exception_{getattr(rr, 'exception_code', 0)}"
        self.stats.ok += 1
        return None

    async def finish(self, d: DeviceRuntime, results, reason: str | None) -> None:
        """Close a custom poll: counters, availability, schedule, sink."""
        await self._finish(d, results, reason)
