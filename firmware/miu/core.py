"""The meter's logic: pulses to volume, faults, valve, registers, persistence.

Pure: every hardware access goes through the HAL passed in (see miu.hal), so
the same code runs on the board, on CPython in the tests and inside the
gateway's residential meter simulator.

Threading model on the board: `on_pulse` runs in a hard interrupt and only
touches preallocated integer slots (no allocation, no locking needed: the
interrupt is the only writer of `_cnt` and `_edge`, the main loop only reads
them). Everything else runs in the main loop: `tick`, the register accessors
and `on_magnet`.

Long durations (days without a pulse, time since the last save) are kept as
accumulated milliseconds / seconds, never as a tick stamp, because ticks wrap
every 2**30 ms (12.4 days) and ticks_diff is only valid within half of that.
"""

import struct

from miu.compat import TYPE_CHECKING, const
from miu.regs import (
    CMD_CLOSE_VALVE, CMD_FAULT_CARD, CMD_OPEN_VALVE,
    DEFAULT_DEAD_METER_DAYS, DEFAULT_LOW_BALANCE, DEFAULT_LOW_BATTERY, DEFAULT_MAX_FLOW,
    DEFAULT_NO_SIGNAL_DAYS, DEFAULT_PULSE_LITRES,
    EX_DEVICE_FAILURE, EX_ILLEGAL_ADDRESS, EX_ILLEGAL_VALUE,
    FIRMWARE_VERSION, HR_COMMAND, HR_CREDIT, HR_DEAD_METER_DAYS, HR_FIRST, HR_LAST,
    HR_LOW_BALANCE, HR_LOW_BATTERY, HR_MAX_FLOW, HR_MIRROR_COUNT, HR_NO_SIGNAL_DAYS,
    HR_PULSE_LITRES, IR_BALANCE, IR_BATTERY, IR_COUNT, IR_DAYS_NO_PULSE, IR_ERROR,
    IR_FAKE_CARD, IR_FLOW, IR_FW_VERSION, IR_MODEL, IR_PULSE_COUNT, IR_STATUS, IR_VALVE,
    IR_VOLUME, IR_WRONG_CARD, MAX_DAYS, MAX_LOW_BATTERY, MODEL_CODE,
    ST_ERR1, ST_ERR3, ST_ERR4, ST_ERR5, ST_ERR6, ST_ERR7, ST_ERR_MASK, ST_FAULT_SHUT,
    ST_LOW_BALANCE, ST_LOW_BATTERY, VALVE_CLOSED, VALVE_OPEN,
)

if TYPE_CHECKING:
    from miu.flash import FlashStore
    from miu.hal import Hal

# Tunables that are not registers (the register map is fixed by the model
# file). MeterCore's keyword arguments override the first five.
DEBOUNCE_MS = const(50)          # reed contacts bounce for a few ms; pulses are seconds apart
PERSIST_PULSES = const(10)       # save after this many unsaved pulses ...
PERSIST_MS = const(60_000)       # ... or this long after the first unsaved pulse
REED_WINDOW = const(3)           # one reed this many pulses ahead of the other = the other failed
VALVE_PULSE_MS = const(3_000)    # H-bridge drive time for a full valve travel
CHECKPOINT_MS = const(3_600_000)  # idle save of the no-pulse timers, so a power cut cannot reset ERR-3/4
SAVE_RETRY_MS = const(10_000)    # back-off after a save that failed all its attempts
MAGNET_CONFIRM_MS = const(1_000)  # the tamper input must stay closed this long (vibration)
FLOW_WINDOW_MS = const(10_000)   # flow = pulses over at least this long
FLOW_ZERO_MS = const(3_600_000)  # no pulse for an hour: flow 0
OVERFLOW_CONFIRM = const(2)      # consecutive windows above the maximum before ERR-5
BATT_PERIOD_MS = const(1_000)
BATT_CONFIRM = const(5)          # consecutive samples to change the low-battery state
BATT_HYST_MV = const(100)
BATT_SETTLE_MS = const(1_000)    # the motor sags the battery; sample after it settles

_CNT_MASK = const(0xFFFFFF)       # ISR counters wrap here: small ints, no allocation
_LEAD_CAP = const(1_000)
_EDGE_REFRESH_MS = const(0x10000000)  # a quarter of the tick circle (3.1 days)
_MAX_S = const(0x3FFFFFFF)       # 34 years in s; stays a small int on the board
_DAY_S = const(86_400)
_U32 = 0xFFFFFFFF                # not const(): above the board's small-int range
_VOL_WRAP_CL = 0x100000000 * 100  # volume register wraps at 2**32 litres
_BAL_MAX_L = 0x7FFFFFFF
_LAYOUT = const(1)
_REC = "<BIBqIBBIIIHHHHHH"       # see _pack
_F_VALVE_OPEN = const(1)
_F_FAULT_SHUT = const(2)


class MeterCore:
    def __init__(self, hal: "Hal", flash_store: "FlashStore",
                 debounce_ms: int = DEBOUNCE_MS, persist_pulses: int = PERSIST_PULSES,
                 persist_ms: int = PERSIST_MS, reed_window: int = REED_WINDOW,
                 valve_pulse_ms: int = VALVE_PULSE_MS, two_reeds: bool = True) -> None:
        self._hal = hal
        self._store = flash_store
        self.debounce_ms = debounce_ms
        self.persist_pulses = persist_pulses
        self.persist_ms = persist_ms
        self.reed_window = reed_window
        self.valve_pulse_ms = valve_pulse_ms
        self.two_reeds = two_reeds
        now = hal.ticks_ms()

        # Written by the interrupt only.
        self._cnt = [0, 0]
        self._edge = [hal.ticks_add(now, -debounce_ms), hal.ticks_add(now, -debounce_ms)]
        # Read side of the interrupt counters.
        self._seen = [0, 0]
        self._lead = [0, 0]          # pulses of each reed not matched by the other

        # Persisted state (defaults = a blank unit: nothing counted, no gas, valve shut).
        self._vol_cl = 0             # centilitres, wraps at 2**32 litres
        self._bal_cl = 0             # centilitres, may go below 0 while the valve closes
        self._pulses = 0             # counted pulses (uint32)
        self._faults = 0             # latched ST_ERR* bits
        self._valve_open = False
        self._fault_shut = False
        self._quiet_s = 0            # since the last pulse (register 11)
        self._nosig_s = 0            # ERR-3 timer: no pulse while gas should flow
        self._dead_s = 0             # ERR-4 timer: no pulse at all
        self._p_pulse_cl = DEFAULT_PULSE_LITRES
        self._p_nosig_days = DEFAULT_NO_SIGNAL_DAYS
        self._p_dead_days = DEFAULT_DEAD_METER_DAYS
        self._p_max_flow = DEFAULT_MAX_FLOW
        self._p_low_bal = DEFAULT_LOW_BALANCE
        self._p_low_batt = DEFAULT_LOW_BATTERY

        # Volatile state.
        self._last_tick = now
        self._ms_acc = 0
        self._magnet = False
        self._mag_ms = 0
        self._flow = 0               # 0.001 m3/h
        self._fw_on = False          # a flow window is open
        self._fw_ms = 0
        self._fw_pulses = 0
        self._since_pulse_ms = 0
        self._edge_age_ms = 0
        self._over_n = 0
        self._motor = 0
        self._motor_ms = 0
        self._idle_ms = BATT_SETTLE_MS  # since the motor stopped
        self._batt_mv = hal.battery_mv()
        self._batt_low = False
        self._batt_n = 0
        self._batt_ms = BATT_PERIOD_MS
        self._unsaved = 0
        self._dirty_ms = 0
        self._since_save_ms = 0
        self._urgent = False
        self._retry_ms = 0
        self._rec = bytearray(struct.calcsize(_REC))
        self.restored = self._restore()
        self.save_failures = 0
        if not self._valve_open:
            # The motor has no end switch: re-assert a shut valve at power-up.
            # An open valve is never driven at power-up (a reset must not open gas).
            self._start_motor(-1)

    # ---- interrupt side ------------------------------------------------

    def on_pulse(self, switch: int) -> None:
        """A reed switch closed (switch 0 = reed 1, 1 = reed 2). ISR-safe: no allocation."""
        if switch != 0 and switch != 1:
            return
        t = self._hal.ticks_ms()
        d = self._hal.ticks_diff(t, self._edge[switch])
        if 0 <= d < self.debounce_ms:
            return
        self._edge[switch] = t
        self._cnt[switch] = (self._cnt[switch] + 1) & _CNT_MASK

    def on_magnet(self, active: bool) -> None:
        """State of the anti-magnetic reed switch (True = closed = magnet present)."""
        self._magnet = bool(active)

    # ---- main loop -----------------------------------------------------

    def tick(self, now_ms: int) -> None:
        """Run detection, valve and persistence. Call every loop pass (at least once per 6 days)."""
        dt = self._hal.ticks_diff(now_ms, self._last_tick)
        if dt < 0:
            dt = 0
        self._last_tick = now_ms
        self._advance(dt)
        self._take_pulses(dt)
        self._battery(dt)
        self._detect()
        self._valve(dt)
        self._persist(dt)

    def _gas_should_flow(self) -> bool:
        return self._valve_open and self._bal_cl > 0

    def _advance(self, dt: int) -> None:
        acc = self._ms_acc + dt
        if acc >= 1000:
            s = acc // 1000
            acc -= s * 1000
            self._quiet_s = min(self._quiet_s + s, _MAX_S)
            self._dead_s = min(self._dead_s + s, _MAX_S)
            if self._gas_should_flow():
                self._nosig_s = min(self._nosig_s + s, _MAX_S)
        self._ms_acc = acc
        if not self._gas_should_flow():
            self._nosig_s = 0
        self._since_save_ms = min(self._since_save_ms + dt, _MAX_S)
        if self._unsaved:
            self._dirty_ms = min(self._dirty_ms + dt, _MAX_S)
        if self._retry_ms > 0:
            self._retry_ms -= dt
        if self._magnet:
            self._mag_ms = min(self._mag_ms + dt, _MAX_S)
        else:
            self._mag_ms = 0

    def _take_pulses(self, dt: int) -> None:
        d0 = (self._cnt[0] - self._seen[0]) & _CNT_MASK
        d1 = (self._cnt[1] - self._seen[1]) & _CNT_MASK
        self._seen[0] = (self._seen[0] + d0) & _CNT_MASK
        self._seen[1] = (self._seen[1] + d1) & _CNT_MASK
        if not self.two_reeds:
            d1 = 0
        # Both reeds see every revolution, half a cycle apart. A revolution is
        # counted by whichever reed gets there first, so either reed alone
        # still bills all the gas; the lead of one reed over the other is the
        # failure evidence for ERR-6 / ERR-7.
        a0 = self._lead[0] + d0
        a1 = self._lead[1] + d1
        new = max(a0, a1) - max(self._lead[0], self._lead[1])
        k = min(a0, a1)
        self._lead[0] = min(a0 - k, _LEAD_CAP)
        self._lead[1] = min(a1 - k, _LEAD_CAP)

        self._since_pulse_ms = min(self._since_pulse_ms + dt, _MAX_S)
        if d0 or d1:
            self._edge_age_ms = 0
        else:
            self._edge_age_ms += dt
            if self._edge_age_ms >= _EDGE_REFRESH_MS:
                # A silent reed's last edge would drift past half the tick
                # circle and ticks_diff would wrap; move it to "long ago".
                t = self._hal.ticks_add(self._hal.ticks_ms(), -self.debounce_ms)
                self._edge[0] = t
                self._edge[1] = t
                self._edge_age_ms = 0
        if self._fw_on:
            self._fw_ms += dt
        if new <= 0:
            self._decay_flow()
            return
        pl = self._p_pulse_cl
        self._vol_cl = (self._vol_cl + new * pl) % _VOL_WRAP_CL
        self._bal_cl -= new * pl
        self._pulses = (self._pulses + new) & _U32
        self._quiet_s = 0
        self._nosig_s = 0
        self._dead_s = 0
        self._since_pulse_ms = 0
        if self._unsaved == 0:
            self._dirty_ms = 0
        self._unsaved += new
        if not self._fw_on:
            # The first pulse after a pause opens a window; its own volume
            # belongs to the unknown time before it.
            self._fw_on = True
            self._fw_ms = 0
            self._fw_pulses = 0
            return
        self._fw_pulses += new
        if self._fw_ms >= FLOW_WINDOW_MS:
            # litres/ms -> 0.001 m3/h: cl/100 * 3600000 / ms / 1000 * 1000
            self._flow = min(self._fw_pulses * pl * 36_000 // self._fw_ms, 0xFFFF)
            if self._p_max_flow and self._flow > self._p_max_flow:
                self._over_n += 1
            else:
                self._over_n = 0
            self._fw_ms = 0
            self._fw_pulses = 0

    def _decay_flow(self) -> None:
        if not self._fw_on:
            return
        since = self._since_pulse_ms
        if since >= FLOW_ZERO_MS:
            self._flow = 0
            self._fw_on = False
            self._over_n = 0
            return
        if since > 0:
            # No pulse for `since` ms: the flow is at most one pulse over that time.
            bound = self._p_pulse_cl * 36_000 // since
            if bound < self._flow:
                self._flow = bound

    def _battery(self, dt: int) -> None:
        if self._motor:
            self._idle_ms = 0
            return
        self._idle_ms = min(self._idle_ms + dt, _MAX_S)
        self._batt_ms += dt
        if self._idle_ms < BATT_SETTLE_MS or self._batt_ms < BATT_PERIOD_MS:
            return
        self._batt_ms = 0
        mv = self._hal.battery_mv()
        self._batt_mv = mv
        thr = self._p_low_batt
        if self._batt_low:
            change = thr == 0 or mv >= thr + BATT_HYST_MV
        else:
            change = thr != 0 and mv < thr
        if not change:
            self._batt_n = 0
            return
        self._batt_n += 1
        if self._batt_n >= BATT_CONFIRM:
            self._batt_low = not self._batt_low
            self._batt_n = 0

    def _detect(self) -> None:
        f = 0
        if self._mag_ms >= MAGNET_CONFIRM_MS:
            f |= ST_ERR1
        if self._p_nosig_days and self._nosig_s >= self._p_nosig_days * _DAY_S:
            f |= ST_ERR3
        if self._p_dead_days and self._dead_s >= self._p_dead_days * _DAY_S:
            f |= ST_ERR4
        if self._over_n >= OVERFLOW_CONFIRM:
            f |= ST_ERR5
        if self._lead[1] >= self.reed_window:
            f |= ST_ERR6          # reed 2 counts, reed 1 does not
        if self._lead[0] >= self.reed_window and self.two_reeds:
            f |= ST_ERR7          # reed 1 counts, reed 2 does not
        if f & ~self._faults:
            self._faults |= f
            self._urgent = True

    def _valve(self, dt: int) -> None:
        if self._motor:
            self._motor_ms += dt
            if self._motor_ms >= self.valve_pulse_ms:
                self._hal.valve_motor(0)
                self._motor = 0
        if self._valve_open and (self._faults & ST_ERR_MASK or self._bal_cl <= 0):
            self._valve_open = False
            self._fault_shut = True
            self._start_motor(-1)
            self._urgent = True

    def _start_motor(self, direction: int) -> None:
        self._motor = direction
        self._motor_ms = 0
        self._idle_ms = 0
        self._hal.valve_motor(direction)

    def _persist(self, dt: int) -> None:
        due = (self._urgent
               or self._unsaved >= self.persist_pulses
               or (self._unsaved > 0 and self._dirty_ms >= self.persist_ms)
               or self._since_save_ms >= CHECKPOINT_MS)
        if due and self._retry_ms <= 0:
            if not self._save():
                self._retry_ms = SAVE_RETRY_MS

    # ---- persistence ---------------------------------------------------

    def _pack(self) -> bytearray:
        flags = (_F_VALVE_OPEN if self._valve_open else 0) | (_F_FAULT_SHUT if self._fault_shut else 0)
        struct.pack_into(
            _REC, self._rec, 0, _LAYOUT,
            (self._vol_cl // 100) & _U32, self._vol_cl % 100, self._bal_cl, self._pulses,
            self._faults & ST_ERR_MASK, flags,
            min(self._quiet_s, _U32), min(self._nosig_s, _U32), min(self._dead_s, _U32),
            self._p_pulse_cl, self._p_nosig_days, self._p_dead_days,
            self._p_max_flow, self._p_low_bal, self._p_low_batt)
        return self._rec

    def _save(self) -> bool:
        ok = self._store.save(self._pack())
        if ok:
            self._unsaved = 0
            self._dirty_ms = 0
            self._since_save_ms = 0
            self._urgent = False
        else:
            self.save_failures += 1
        return ok

    def _restore(self) -> bool:
        raw = self._store.load()
        if raw is None or len(raw) != len(self._rec) or raw[0] != _LAYOUT:
            return False
        (_, vol_l, vol_rem, bal, pulses, faults, flags, quiet, nosig, dead,
         p_pl, p_ns, p_dd, p_mf, p_lb, p_lv) = struct.unpack(_REC, raw)
        self._vol_cl = vol_l * 100 + vol_rem % 100
        self._bal_cl = bal
        self._pulses = pulses
        self._faults = faults & ST_ERR_MASK
        self._valve_open = bool(flags & _F_VALVE_OPEN)
        self._fault_shut = bool(flags & _F_FAULT_SHUT)
        self._quiet_s = quiet
        self._nosig_s = nosig
        self._dead_s = dead
        self._p_pulse_cl = p_pl if p_pl else DEFAULT_PULSE_LITRES
        self._p_nosig_days = p_ns if p_ns <= MAX_DAYS else DEFAULT_NO_SIGNAL_DAYS
        self._p_dead_days = p_dd if p_dd <= MAX_DAYS else DEFAULT_DEAD_METER_DAYS
        self._p_max_flow = p_mf
        self._p_low_bal = p_lb
        self._p_low_batt = p_lv if p_lv <= MAX_LOW_BATTERY else DEFAULT_LOW_BATTERY
        return True

    # ---- registers -----------------------------------------------------

    @property
    def status(self) -> int:
        s = self._faults & ST_ERR_MASK
        if self._bal_cl // 100 < self._p_low_bal:
            s |= ST_LOW_BALANCE
        if self._batt_low:
            s |= ST_LOW_BATTERY
        if self._fault_shut:
            s |= ST_FAULT_SHUT
        return s

    @property
    def error_code(self) -> int:
        # Display priority: tampering, then the safety fault (over-flow), then
        # broken sensors, then the no-signal faults.
        f = self._faults
        if f & ST_ERR1:
            return 1
        if f & ST_ERR5:
            return 5
        if f & ST_ERR6:
            return 6
        if f & ST_ERR7:
            return 7
        if f & ST_ERR4:
            return 4
        if f & ST_ERR3:
            return 3
        return 0

    @property
    def valve_open(self) -> bool:
        return self._valve_open

    @property
    def volume_l(self) -> int:
        return (self._vol_cl // 100) & _U32

    @property
    def balance_l(self) -> int:
        b = self._bal_cl
        return b // 100 if b >= 0 else -((-b) // 100)

    @property
    def flow(self) -> int:
        return self._flow

    def read_input(self, addr: int) -> int | None:
        """Input register value (uint16), or None for an address outside the map."""
        if addr == IR_VOLUME:
            return self.volume_l >> 16
        if addr == IR_VOLUME + 1:
            return self.volume_l & 0xFFFF
        if addr == IR_BALANCE:
            return (self.balance_l & _U32) >> 16
        if addr == IR_BALANCE + 1:
            return self.balance_l & 0xFFFF
        if addr == IR_BATTERY:
            return min(max(self._batt_mv, 0), 0xFFFF)
        if addr == IR_VALVE:
            return VALVE_OPEN if self._valve_open else VALVE_CLOSED
        if addr == IR_STATUS:
            return self.status
        if addr == IR_ERROR:
            return self.error_code
        if addr == IR_WRONG_CARD or addr == IR_FAKE_CARD:
            return 0
        if addr == IR_FLOW:
            return self._flow
        if addr == IR_DAYS_NO_PULSE:
            return min(self._quiet_s // _DAY_S, 0xFFFF)
        if addr == IR_PULSE_COUNT:
            return self._pulses >> 16
        if addr == IR_PULSE_COUNT + 1:
            return self._pulses & 0xFFFF
        if addr == IR_MODEL:
            return MODEL_CODE
        if addr == IR_FW_VERSION:
            return FIRMWARE_VERSION
        if 0 <= addr < IR_COUNT:
            return 0
        return None

    def read_holding(self, addr: int) -> int | None:
        """Holding register value, or None for an address outside the map."""
        if 0 <= addr < HR_MIRROR_COUNT:
            return self.read_input(addr)
        if addr == HR_PULSE_LITRES:
            return self._p_pulse_cl
        if addr == HR_NO_SIGNAL_DAYS:
            return self._p_nosig_days
        if addr == HR_DEAD_METER_DAYS:
            return self._p_dead_days
        if addr == HR_MAX_FLOW:
            return self._p_max_flow
        if addr == HR_LOW_BALANCE:
            return self._p_low_bal
        if addr == HR_LOW_BATTERY:
            return self._p_low_batt
        if addr == HR_COMMAND or addr == HR_CREDIT or addr == HR_CREDIT + 1:
            return 0
        return None

    def write_holding(self, addr: int, value: int) -> int:
        """Write one holding register (FC06). 0 = done, else a Modbus exception code."""
        return self.write_holdings(addr, (value,))

    def write_holdings(self, addr: int, values: "list[int] | tuple[int, ...]") -> int:
        """Write consecutive holding registers (FC16) all or nothing.

        0 = done; 2 = an address outside 100..108, or half of the credit
        register; 3 = a value out of range, an unknown command, a credit that
        would overflow the balance, or an open command refused (a latched fault
        or no balance); 4 = the change could not be stored (a credit and
        parameters are rolled back; a valve command has already acted).
        Parameters apply first, then the credit, then the command.
        """
        n = len(values)
        end = addr + n - 1
        if n == 0:
            return EX_ILLEGAL_VALUE
        if addr < HR_FIRST or end > HR_LAST:
            return EX_ILLEGAL_ADDRESS
        has_hi = addr <= HR_CREDIT <= end
        has_lo = addr <= HR_CREDIT + 1 <= end
        if has_hi != has_lo:
            # A credit is money: only a single write of both halves counts.
            return EX_ILLEGAL_ADDRESS
        cmd = -1
        credit = 0
        for i in range(n):
            a = addr + i
            v = values[i]
            if v < 0 or v > 0xFFFF:
                return EX_ILLEGAL_VALUE
            if a == HR_COMMAND:
                if v != CMD_FAULT_CARD and v != CMD_OPEN_VALVE and v != CMD_CLOSE_VALVE:
                    return EX_ILLEGAL_VALUE
                cmd = v
            elif a == HR_PULSE_LITRES:
                if v == 0:
                    return EX_ILLEGAL_VALUE
            elif a == HR_NO_SIGNAL_DAYS or a == HR_DEAD_METER_DAYS:
                if v > MAX_DAYS:
                    return EX_ILLEGAL_VALUE
            elif a == HR_LOW_BATTERY:
                if v > MAX_LOW_BATTERY:
                    return EX_ILLEGAL_VALUE
            elif a == HR_CREDIT:
                credit = (v << 16) | values[i + 1]
        if credit and self.balance_l + credit > _BAL_MAX_L:
            return EX_ILLEGAL_VALUE
        if cmd == CMD_OPEN_VALVE and not self._valve_open:
            if self._faults & ST_ERR_MASK or self._bal_cl + credit * 100 <= 0:
                return EX_ILLEGAL_VALUE

        old = (self._p_pulse_cl, self._p_nosig_days, self._p_dead_days,
               self._p_max_flow, self._p_low_bal, self._p_low_batt, self._bal_cl)
        for i in range(n):
            a = addr + i
            v = values[i]
            if a == HR_PULSE_LITRES:
                self._p_pulse_cl = v
            elif a == HR_NO_SIGNAL_DAYS:
                self._p_nosig_days = v
            elif a == HR_DEAD_METER_DAYS:
                self._p_dead_days = v
            elif a == HR_MAX_FLOW:
                self._p_max_flow = v
            elif a == HR_LOW_BALANCE:
                self._p_low_bal = v
            elif a == HR_LOW_BATTERY:
                self._p_low_batt = v
        self._bal_cl += credit * 100
        if cmd >= 0:
            self._command(cmd)
        if self._save():
            return 0
        (self._p_pulse_cl, self._p_nosig_days, self._p_dead_days,
         self._p_max_flow, self._p_low_bal, self._p_low_batt, self._bal_cl) = old
        self._urgent = True
        return EX_DEVICE_FAILURE

    def _command(self, cmd: int) -> None:
        if cmd == CMD_FAULT_CARD:
            # Clears ERR-1..ERR-7 (service manual section C) and restarts their
            # detectors, so a cause still present raises the fault again on
            # its next detection, not at once from stale evidence.
            self._faults = 0
            self._mag_ms = 0
            self._nosig_s = 0
            self._dead_s = 0
            self._over_n = 0
            self._lead[0] = 0
            self._lead[1] = 0
            if self._fault_shut and self._bal_cl > 0:
                self._open()
        elif cmd == CMD_OPEN_VALVE:
            if not self._valve_open:
                self._open()
        elif cmd == CMD_CLOSE_VALVE:
            self._fault_shut = False
            if self._valve_open:
                self._valve_open = False
                self._start_motor(-1)
        self._urgent = True

    def _open(self) -> None:
        self._valve_open = True
        self._fault_shut = False
        self._nosig_s = 0
        self._start_motor(1)
