"""MeterCore on CPython with the fake HAL: counting, faults, valve, registers, persistence."""

import pytest

from miu import core as core_mod
from miu import regs
from miu.regs import (
    CMD_CLOSE_VALVE, CMD_FAULT_CARD, CMD_OPEN_VALVE, IR_BALANCE, IR_BATTERY, IR_DAYS_NO_PULSE,
    IR_ERROR, IR_FLOW, IR_PULSE_COUNT, IR_STATUS, IR_VALVE, IR_VOLUME, ST_ERR1, ST_ERR3, ST_ERR4,
    ST_ERR5, ST_ERR6, ST_ERR7, ST_FAULT_SHUT, ST_LOW_BALANCE, ST_LOW_BATTERY,
)
from miu.sim import SimHal, SimMeter

from .helpers import i32, reg, u32

DAY = 86_400_000
HOUR = 3_600_000


def status(m: SimMeter) -> int:
    return reg(m, IR_STATUS)


# ---- blank unit ------------------------------------------------------------

def test_blank_unit_reads_defaults():
    m = SimMeter()
    assert m.read_inputs(0, 20) == [0, 0, 0, 0, 3600, 1, ST_LOW_BALANCE, 0, 0, 0, 0, 0, 0, 0,
                                    1001, 100, 0, 0, 0, 0]
    assert [m.core.read_holding(a) for a in range(100, 109)] == [0, 1000, 30, 90, 6000, 5000,
                                                                  3300, 0, 0]
    # A blank unit has no gas: its valve is driven shut once at power-up.
    assert m.hal.motor_log == [-1]
    assert m.core.restored is False


def test_unmapped_addresses_are_none():
    m = SimMeter()
    for a in (-1, 20, 21, 99, 1000):
        assert m.core.read_input(a) is None
    for a in (-1, 20, 99, 109, 200):
        assert m.core.read_holding(a) is None
    # FC03 on 0..19 mirrors the input registers.
    for a in range(20):
        assert m.core.read_holding(a) == m.core.read_input(a)


# ---- pulses ------------------------------------------------------------------

def test_flow_counts_volume_pulses_and_balance(meter):
    meter.run_flow(6.0, 120_000)   # 6 m3/h = 10 L every 6 s
    assert u32(meter, IR_VOLUME) == 200
    assert u32(meter, IR_PULSE_COUNT) == 20
    assert i32(meter, IR_BALANCE) == 19_800
    assert reg(meter, IR_FLOW) == 6000
    assert status(meter) == 0


def test_pulse_litres_is_in_centilitres(meter):
    assert meter.core.write_holding(101, 250) == 0   # 2.50 L per pulse
    meter.run_flow(0.9, 100_000)                     # 0.25 L/s: 10 pulses
    assert u32(meter, IR_PULSE_COUNT) == 10
    assert u32(meter, IR_VOLUME) == 25
    assert reg(meter, IR_FLOW) == 900


def test_burst_between_ticks_counts_every_pulse(meter):
    # The interrupt counts while the main loop is busy: 1000 revolutions,
    # both reeds, and a single tick afterwards.
    core, hal = meter.core, meter.hal
    for _ in range(1000):
        core.on_pulse(0)
        hal.advance(60)
        core.on_pulse(1)
        hal.advance(60)
    meter.tick()
    assert u32(meter, IR_PULSE_COUNT) == 1000
    assert u32(meter, IR_VOLUME) == 10_000


def test_bounce_inside_debounce_counts_once(meter):
    core, hal = meter.core, meter.hal
    for _ in range(6):                  # contact bounce: closures 5 ms apart
        core.on_pulse(0)
        hal.advance(5)
    meter.tick()
    assert u32(meter, IR_PULSE_COUNT) == 1
    hal.advance(core.debounce_ms)       # exactly the debounce time later: a new pulse
    core.on_pulse(0)
    meter.tick()
    assert u32(meter, IR_PULSE_COUNT) == 2


def test_debounce_is_configurable():
    m = SimMeter(debounce_ms=200)
    for _ in range(3):
        m.core.on_pulse(0)
        m.hal.advance(150)
    m.tick()
    assert m.core.read_input(IR_PULSE_COUNT + 1) == 2   # at 0 and 300 ms


def test_one_revolution_counts_once_on_two_reeds(meter):
    core, hal = meter.core, meter.hal
    for _ in range(5):
        core.on_pulse(0)
        meter.advance(3000)
        core.on_pulse(1)
        meter.advance(3000)
    assert u32(meter, IR_PULSE_COUNT) == 5


def test_clock_wrap_does_not_lose_or_double_pulses():
    m = SimMeter(SimHal(start_ms=(1 << 30) - 30_000))
    m.credit(20_000)
    m.command(CMD_OPEN_VALVE)
    m.run_flow(6.0, 60_000)             # wraps the tick counter halfway through
    assert m.core.read_input(IR_PULSE_COUNT + 1) == 10
    assert m.core.read_input(IR_FLOW) == 6000


def test_isr_counter_wrap(meter):
    core = meter.core
    core._cnt[0] = core._seen[0] = core_mod._CNT_MASK - 1
    core._cnt[1] = core._seen[1] = core_mod._CNT_MASK
    meter.run_flow(6.0, 30_000)
    assert u32(meter, IR_PULSE_COUNT) == 5


def test_single_reed_meter_counts_and_never_blames_reed_2():
    m = SimMeter(two_reeds=False)
    m.credit(20_000)
    m.command(CMD_OPEN_VALVE)
    m.run_flow(6.0, 120_000, reeds=(True, False))
    assert m.core.read_input(IR_PULSE_COUNT + 1) == 20
    assert m.core.status & (ST_ERR6 | ST_ERR7) == 0


def test_days_without_pulse(meter):
    meter.core.write_holding(102, 0)
    meter.core.write_holding(103, 0)
    meter.advance(3 * DAY + HOUR, step_ms=HOUR)
    assert reg(meter, IR_DAYS_NO_PULSE) == 3
    meter.run_flow(6.0, 7_000)
    assert reg(meter, IR_DAYS_NO_PULSE) == 0


def test_flow_decays_to_zero_when_gas_stops(meter):
    meter.run_flow(6.0, 60_000)
    assert reg(meter, IR_FLOW) == 6000
    meter.advance(60_000)
    assert 0 < reg(meter, IR_FLOW) < 6000    # at most one pulse per minute now: 0.6 m3/h
    meter.advance(HOUR)
    assert reg(meter, IR_FLOW) == 0


# ---- faults -----------------------------------------------------------------

def test_err1_magnet_needs_a_second_then_latches_and_shuts(meter):
    meter.hal.magnet = True
    meter.advance(500, step_ms=100)
    assert status(meter) == 0                  # vibration-length contact: ignored
    meter.advance(600, step_ms=100)
    assert status(meter) == ST_ERR1 | ST_FAULT_SHUT
    assert reg(meter, IR_ERROR) == 1
    assert reg(meter, IR_VALVE) == 1
    assert meter.hal.motor_log[-1] == -1
    meter.hal.magnet = False
    meter.advance(10_000)
    assert status(meter) & ST_ERR1             # latched after the magnet is gone


def test_fault_card_while_magnet_present_clears_then_fault_returns(meter):
    meter.hal.magnet = True
    meter.advance(2_000, step_ms=100)
    assert meter.command(CMD_FAULT_CARD) == 0
    assert status(meter) == 0 and reg(meter, IR_VALVE) == 0   # cleared, valve reopened
    meter.advance(1_100, step_ms=100)
    assert status(meter) == ST_ERR1 | ST_FAULT_SHUT          # the next detection
    meter.hal.magnet = False
    meter.advance(100)
    assert meter.command(CMD_FAULT_CARD) == 0
    meter.advance(10_000)
    assert status(meter) == 0 and reg(meter, IR_VALVE) == 0


def test_err3_no_signal_while_gas_should_flow(meter):
    assert meter.core.write_holding(102, 1) == 0
    meter.advance(23 * HOUR, step_ms=HOUR)
    assert status(meter) == 0
    meter.advance(2 * HOUR, step_ms=HOUR)
    assert status(meter) == ST_ERR3 | ST_FAULT_SHUT
    assert reg(meter, IR_ERROR) == 3
    # The repair card clears it and restarts the count: back a day later.
    assert meter.command(CMD_FAULT_CARD) == 0
    assert status(meter) == 0 and reg(meter, IR_VALVE) == 0
    meter.advance(23 * HOUR, step_ms=HOUR)
    assert status(meter) == 0
    meter.advance(2 * HOUR, step_ms=HOUR)
    assert status(meter) & ST_ERR3


def test_err3_not_while_valve_closed_or_no_balance(meter):
    meter.core.write_holding(102, 1)
    meter.core.write_holding(103, 0)
    assert meter.command(CMD_CLOSE_VALVE) == 0
    meter.advance(3 * DAY, step_ms=HOUR)
    assert status(meter) == 0
    # Reopened, the count starts from zero.
    assert meter.command(CMD_OPEN_VALVE) == 0
    meter.advance(20 * HOUR, step_ms=HOUR)
    assert status(meter) == 0


def test_err3_reset_by_a_pulse(meter):
    meter.core.write_holding(102, 1)
    meter.advance(20 * HOUR, step_ms=HOUR)
    meter.run_flow(6.0, 7_000)
    meter.advance(20 * HOUR, step_ms=HOUR)
    assert status(meter) == 0


def test_err4_dead_meter_counts_even_with_valve_closed(meter):
    meter.core.write_holding(102, 0)
    meter.core.write_holding(103, 2)
    meter.command(CMD_CLOSE_VALVE)
    meter.advance(2 * DAY - HOUR, step_ms=HOUR)
    assert status(meter) == 0
    meter.advance(2 * HOUR, step_ms=HOUR)
    # The valve was already shut by the command, so not "shut by a fault".
    assert status(meter) == ST_ERR4
    assert reg(meter, IR_ERROR) == 4
    assert meter.command(CMD_FAULT_CARD) == 0
    assert status(meter) == 0
    assert reg(meter, IR_VALVE) == 1            # the card does not undo a manual close


def test_err3_and_err4_zero_days_disables(meter):
    meter.core.write_holdings(102, [0, 0])
    meter.advance(400 * DAY, step_ms=DAY // 4)
    assert status(meter) == 0


def test_err5_overflow_needs_two_windows_and_shuts(meter):
    meter.run_flow(5.0, 60_000)
    assert status(meter) == 0
    meter.run_flow(9.0, 10_000)                 # one window over the limit
    assert status(meter) == 0
    meter.run_flow(9.0, 30_000)
    assert status(meter) == ST_ERR5 | ST_FAULT_SHUT
    assert reg(meter, IR_ERROR) == 5
    assert reg(meter, IR_VALVE) == 1
    # Gas stops with the valve: the count stands still.
    before = u32(meter, IR_PULSE_COUNT)
    meter.run_flow(9.0, 60_000)
    assert u32(meter, IR_PULSE_COUNT) == before
    # Fault card with the demand still too high: ERR-5 comes back.
    assert meter.command(CMD_FAULT_CARD) == 0
    assert status(meter) == 0
    meter.run_flow(9.0, 60_000)
    assert status(meter) & ST_ERR5


def test_err5_single_bounce_does_not_trip(meter):
    meter.run_flow(5.5, 30_000)
    meter.hal.advance(70)
    meter.core.on_pulse(0)       # one extra closure that passed the debounce
    meter.run_flow(5.5, 60_000)
    assert status(meter) & ST_ERR5 == 0


def test_err5_zero_disables(meter):
    meter.core.write_holding(104, 0)
    meter.run_flow(20.0, 60_000)
    assert status(meter) == 0


def test_err6_reed1_broken_gas_still_billed(meter):
    meter.run_flow(6.0, 12_000, reeds=(False, True))
    assert status(meter) == 0                 # lead of 2: not yet
    meter.run_flow(6.0, 6_000, reeds=(False, True))
    assert status(meter) == ST_ERR6 | ST_FAULT_SHUT
    assert reg(meter, IR_ERROR) == 6
    assert u32(meter, IR_VOLUME) == 30        # every revolution counted from reed 2


def test_err7_reed2_broken(meter):
    meter.run_flow(6.0, 18_000, reeds=(True, False))
    assert status(meter) == ST_ERR7 | ST_FAULT_SHUT
    assert reg(meter, IR_ERROR) == 7
    assert u32(meter, IR_VOLUME) == 30
    # Repaired, the card clears it for good.
    assert meter.command(CMD_FAULT_CARD) == 0
    meter.run_flow(6.0, 120_000)
    assert status(meter) == 0


def test_err7_returns_after_card_if_still_broken(meter):
    meter.run_flow(6.0, 18_000, reeds=(True, False))
    meter.command(CMD_FAULT_CARD)
    meter.run_flow(6.0, 12_000, reeds=(True, False))
    assert status(meter) == 0                 # the window restarted at the card
    meter.run_flow(6.0, 6_000, reeds=(True, False))
    assert status(meter) & ST_ERR7


def test_error_code_priority(meter):
    meter.core.write_holding(102, 1)
    meter.advance(25 * HOUR, step_ms=HOUR)        # ERR-3
    meter.hal.magnet = True
    meter.advance(2_000)
    assert status(meter) & (ST_ERR1 | ST_ERR3) == ST_ERR1 | ST_ERR3
    assert reg(meter, IR_ERROR) == 1


def test_fault_card_clears_all_errs_but_not_warnings():
    m = SimMeter()
    m.credit(5_010)
    m.command(CMD_OPEN_VALVE)
    m.hal.battery = 3000
    m.run_flow(6.0, 18_000, reeds=(True, False))  # ERR-7, low balance
    m.advance(10_000)                              # low battery confirmed
    assert m.core.status == ST_ERR7 | ST_LOW_BALANCE | ST_LOW_BATTERY | ST_FAULT_SHUT
    assert m.command(CMD_FAULT_CARD) == 0
    assert m.core.status == ST_LOW_BALANCE | ST_LOW_BATTERY


def test_low_battery_confirmed_with_hysteresis(meter):
    meter.hal.battery = 3200
    meter.advance(3_000)
    assert status(meter) == 0
    meter.advance(3_000)
    assert status(meter) == ST_LOW_BATTERY
    assert reg(meter, IR_BATTERY) == 3200
    meter.hal.battery = 3350                   # above the threshold, inside the hysteresis
    meter.advance(10_000)
    assert status(meter) == ST_LOW_BATTERY
    meter.hal.battery = 3500
    meter.advance(6_000)
    assert status(meter) == 0
    # Low battery warns only: the valve stays open.
    assert reg(meter, IR_VALVE) == 0


def test_battery_sag_while_motor_runs_is_ignored(meter):
    meter.command(CMD_CLOSE_VALVE)
    meter.hal.battery = 2500                   # the motor pulls the cell down
    meter.advance(3_000, step_ms=100)
    meter.hal.battery = 3600
    meter.advance(10_000)
    assert status(meter) & ST_LOW_BATTERY == 0


def test_low_balance_below_5_m3():
    m = SimMeter()
    m.credit(5_010)
    m.command(CMD_OPEN_VALVE)
    assert m.core.status == 0                  # 5.010 m3
    m.run_flow(6.0, 7_000)
    assert m.core.status == 0                  # exactly 5.000 m3 is not below
    m.run_flow(6.0, 6_000)
    assert m.core.status == ST_LOW_BALANCE


def test_balance_reaching_zero_shuts_valve_until_open_command():
    m = SimMeter()
    m.credit(50)
    m.command(CMD_OPEN_VALVE)
    m.run_flow(6.0, 60_000)
    assert i32(m, IR_BALANCE) == 0
    assert u32(m, IR_VOLUME) == 50
    assert m.core.status == ST_LOW_BALANCE | ST_FAULT_SHUT
    assert m.core.read_input(IR_ERROR) == 0
    assert m.command(CMD_OPEN_VALVE) == regs.EX_ILLEGAL_VALUE   # no gas to open for
    assert m.credit(1000) == 0
    assert m.core.read_input(IR_VALVE) == 1    # a remote credit does not open gas by itself
    assert m.command(CMD_OPEN_VALVE) == 0
    assert m.core.status == ST_LOW_BALANCE
    assert m.core.read_input(IR_VALVE) == 0


def test_fault_card_reopens_only_with_balance():
    m = SimMeter()
    m.credit(30)
    m.command(CMD_OPEN_VALVE)
    m.run_flow(6.0, 18_000, reeds=(True, False))   # ERR-7 and the balance runs out
    assert m.core.balance_l <= 0
    m.command(CMD_FAULT_CARD)
    assert m.core.read_input(IR_VALVE) == 1
    assert m.core.status & ST_FAULT_SHUT


# ---- valve and commands ------------------------------------------------------

def test_valve_motor_pulse_length(meter):
    hal = meter.hal
    hal.motor_log.clear()
    meter.command(CMD_CLOSE_VALVE)
    assert hal.motor == -1
    meter.advance(2_900, step_ms=100)
    assert hal.motor == -1
    meter.advance(200, step_ms=100)
    assert hal.motor_log == [-1, 0]
    assert reg(meter, IR_VALVE) == 1 and status(meter) == 0   # closed by command: no bit 8
    meter.command(CMD_OPEN_VALVE)
    meter.advance(3_100, step_ms=100)
    assert hal.motor_log == [-1, 0, 1, 0]


def test_open_refused_while_a_fault_is_latched(meter):
    meter.hal.magnet = True
    meter.advance(2_000)
    meter.hal.magnet = False
    assert meter.command(CMD_OPEN_VALVE) == regs.EX_ILLEGAL_VALUE
    assert meter.command(CMD_CLOSE_VALVE) == 0
    assert meter.command(0x1234) == regs.EX_ILLEGAL_VALUE
    assert meter.core.read_holding(100) == 0


# ---- parameters and credit ---------------------------------------------------

@pytest.mark.parametrize("addr,value", [
    (101, 0), (102, 3651), (103, 3651), (106, 12001), (100, 0), (100, 0xA5C4),
])
def test_parameter_out_of_range(meter, addr, value):
    before = meter.core.read_holding(addr)
    assert meter.core.write_holding(addr, value) == regs.EX_ILLEGAL_VALUE
    assert meter.core.read_holding(addr) == before


@pytest.mark.parametrize("addr", [0, 5, 19, 20, 99, 109, 65535])
def test_write_outside_parameters(meter, addr):
    assert meter.core.write_holding(addr, 1) == regs.EX_ILLEGAL_ADDRESS


def test_parameters_persist(meter):
    assert meter.core.write_holdings(101, [500, 7, 60, 8000, 2000, 3400]) == 0
    meter.reboot()
    assert [meter.core.read_holding(a) for a in range(101, 107)] == [500, 7, 60, 8000, 2000, 3400]


def test_multi_write_is_all_or_nothing(meter):
    assert meter.core.write_holdings(101, [500, 7, 4000]) == regs.EX_ILLEGAL_VALUE
    assert [meter.core.read_holding(a) for a in (101, 102)] == [1000, 30]


def test_credit_adds_litres_and_reads_zero(meter):
    assert meter.core.write_holdings(107, [0x0001, 0x86A0]) == 0    # 100000 L
    assert i32(meter, IR_BALANCE) == 120_000
    assert meter.core.read_holding(107) == 0 and meter.core.read_holding(108) == 0
    meter.reboot()
    assert i32(meter, IR_BALANCE) == 120_000


def test_credit_halves_are_refused(meter):
    assert meter.core.write_holding(107, 1) == regs.EX_ILLEGAL_ADDRESS
    assert meter.core.write_holding(108, 1) == regs.EX_ILLEGAL_ADDRESS
    assert meter.core.write_holdings(106, [3300, 0]) == regs.EX_ILLEGAL_ADDRESS
    assert i32(meter, IR_BALANCE) == 20_000


def test_credit_overflow_refused(meter):
    assert meter.core.write_holdings(107, [0x7FFF, 0xFFFF]) == regs.EX_ILLEGAL_VALUE
    assert i32(meter, IR_BALANCE) == 20_000


def test_credit_and_open_in_one_write():
    m = SimMeter()
    # 100 = open command, 101..106 parameters, 107..108 credit: the command runs last.
    values = [CMD_OPEN_VALVE, 1000, 30, 90, 6000, 5000, 3300, 0, 10_000]
    assert m.core.write_holdings(100, values) == 0
    assert m.core.valve_open and m.core.balance_l == 10_000


def test_credit_not_stored_is_rolled_back(meter):
    meter.flash.fail_next_writes(3)
    assert meter.credit(1000) == regs.EX_DEVICE_FAILURE
    assert i32(meter, IR_BALANCE) == 20_000
    assert meter.credit(1000) == 0
    assert i32(meter, IR_BALANCE) == 21_000


# ---- persistence and power cuts ---------------------------------------------

def test_state_survives_reboot(meter):
    meter.run_flow(6.0, 120_000)
    meter.advance(61_000)                      # time-based save of the last pulses
    meter.hal.magnet = True
    meter.advance(2_000)
    snapshot = meter.read_inputs(0, 16)
    motor_log = list(meter.hal.motor_log)
    meter.reboot()
    assert meter.core.restored
    after = meter.read_inputs(0, 16)
    # Flow and battery are measured, not stored.
    for i in (IR_BATTERY, IR_FLOW):
        snapshot[i] = after[i] = 0
    assert after == snapshot
    assert after[IR_STATUS] & ST_ERR1           # a battery pull does not clear tampering
    assert meter.hal.motor_log == motor_log + [-1]   # shut valve re-asserted at power-up


def test_open_valve_is_not_driven_at_power_up(meter):
    meter.hal.motor_log.clear()
    meter.reboot()
    assert meter.core.valve_open
    assert meter.hal.motor_log == []


def test_power_cut_loses_at_most_persist_pulses(meter):
    n = meter.core.persist_pulses
    for extra in range(0, 2 * n + 3):
        m = SimMeter()
        m.credit(20_000)
        m.command(CMD_OPEN_VALVE)
        m.run_flow(6.0, 6_000 * extra + 100)
        counted = m.core.read_input(IR_PULSE_COUNT + 1)
        assert counted == extra
        m.reboot()                              # RAM lost, no write in progress
        kept = m.core.read_input(IR_PULSE_COUNT + 1)
        assert kept is not None and extra - kept < n
        assert m.core.volume_l == kept * 10
        assert m.core.balance_l == 20_000 - kept * 10


def test_power_cut_after_quiet_period_loses_nothing(meter):
    meter.run_flow(6.0, 18_000)                 # 3 pulses, below the pulse threshold
    meter.advance(61_000)                       # the time threshold saves them
    meter.reboot()
    assert u32(meter, IR_PULSE_COUNT) == 3


@pytest.mark.parametrize("keep", [0, 1, 2, 6, 7, 10, 30, 50, 54])
def test_torn_write_falls_back_to_last_good_slot(meter, keep):
    from miu.sim import PowerCut

    n = meter.core.persist_pulses
    meter.run_flow(6.0, 6_000 * (n + 3))        # saved at n, 3 unsaved
    meter.flash.tear_next_write(keep)
    with pytest.raises(PowerCut):
        meter.run_flow(6.0, 6_000 * n)          # the save at 2n is torn
    meter.reboot()
    assert meter.core.restored
    assert u32(meter, IR_PULSE_COUNT) == n       # lost exactly the torn record's n pulses
    assert u32(meter, IR_VOLUME) == 10 * n
    assert i32(meter, IR_BALANCE) == 20_000 - 10 * n
    assert reg(meter, IR_VALVE) == 0


def test_flash_failure_is_retried_later(meter):
    meter.flash.fail_next_writes(3)             # one save, all its attempts
    meter.run_flow(6.0, 6_000 * 10 + 100)
    assert meter.core.save_failures == 1
    meter.advance(11_000)                       # after the back-off
    meter.reboot()
    assert u32(meter, IR_PULSE_COUNT) == 10


def test_idle_checkpoint_keeps_no_pulse_timers(meter):
    meter.core.write_holding(102, 2)
    meter.advance(30 * HOUR, step_ms=HOUR // 2)
    meter.reboot()                               # a battery pull must not reset ERR-3
    meter.advance(19 * HOUR, step_ms=HOUR // 2)
    assert status(meter) & ST_ERR3


def test_wear_levelling_spreads_writes(meter):
    meter.run_flow(6.0, 6_000 * 800)
    counts = list(meter.flash.slot_writes.values())
    assert len(counts) == 8
    assert max(counts) - min(counts) <= 1


def test_unknown_layout_starts_blank():
    from miu.flash import FlashStore

    m = SimMeter()
    m.credit(1000)
    store = FlashStore(m.flash)
    store.load()
    payload = bytearray(m.core._pack())
    payload[0] = 2                               # a later firmware's layout
    assert store.save(payload)
    m.reboot()
    assert not m.core.restored
    assert m.core.balance_l == 0
