"""Register map of the meter interface unit.

The same map as the gateway's residential meter model,
protocols/models/meihua-ic.toml; tests/firmware/test_regs_toml.py keeps the
two equal. 32-bit values span two registers, high word first (ABCD), as the
model file's default order says.

Units of the raw register values (the model file's scales):
litres for volume and balance (0.001 m3), mV for voltages (0.001 V),
0.001 m3/h for flows, 0.01 L for the litres per pulse, days for day counts.
"""

from miu.compat import const

# Input registers (FC04; FC03 on 0..19 answers the same values).
IR_VOLUME = const(0)           # uint32, litres
IR_BALANCE = const(2)          # int32, litres
IR_BATTERY = const(4)          # uint16, mV
IR_VALVE = const(5)            # uint16, VALVE_OPEN / VALVE_CLOSED
IR_STATUS = const(6)           # uint16, ST_* bits
IR_ERROR = const(7)            # uint16, number of the ERR-n on the display, 0 = none
IR_WRONG_CARD = const(8)       # uint16, always 0: this unit has no card reader
IR_FAKE_CARD = const(9)        # uint16, always 0: this unit has no card reader
IR_FLOW = const(10)            # uint16, 0.001 m3/h
IR_DAYS_NO_PULSE = const(11)   # uint16, days
IR_PULSE_COUNT = const(12)     # uint32, pulses
IR_MODEL = const(14)           # uint16, MODEL_CODE
IR_FW_VERSION = const(15)      # uint16, FIRMWARE_VERSION
IR_COUNT = const(20)           # 0..19 readable; 16..19 reserved, read 0

# Holding registers (FC03 / FC06 / FC16).
HR_MIRROR_COUNT = const(20)    # FC03 on 0..19 mirrors the input registers (read-only)
HR_COMMAND = const(100)        # write-only, reads 0: CMD_*
HR_PULSE_LITRES = const(101)   # uint16, 0.01 L per pulse
HR_NO_SIGNAL_DAYS = const(102)  # uint16, days, 0 = ERR-3 off
HR_DEAD_METER_DAYS = const(103)  # uint16, days, 0 = ERR-4 off
HR_MAX_FLOW = const(104)       # uint16, 0.001 m3/h, 0 = ERR-5 off
HR_LOW_BALANCE = const(105)    # uint16, litres (0.001 m3)
HR_LOW_BATTERY = const(106)    # uint16, mV, 0 = low-battery warning off
HR_CREDIT = const(107)         # uint32 (107 high, 108 low), litres; write-only, reads 0
HR_FIRST = const(100)
HR_LAST = const(108)

# Values of HR_COMMAND.
CMD_FAULT_CARD = const(0xA5C1)  # clears ERR-1..ERR-7 (service manual section C)
CMD_OPEN_VALVE = const(0xA5C2)
CMD_CLOSE_VALVE = const(0xA5C3)

# Bits of IR_STATUS.
ST_ERR1 = const(0x0001)         # magnetic tampering
ST_ERR3 = const(0x0002)         # no pulse while gas should flow
ST_ERR4 = const(0x0004)         # dead meter
ST_ERR5 = const(0x0008)         # flow above the maximum
ST_ERR6 = const(0x0010)         # reed switch 1 failed
ST_ERR7 = const(0x0020)         # reed switch 2 failed
ST_LOW_BALANCE = const(0x0040)
ST_LOW_BATTERY = const(0x0080)
ST_FAULT_SHUT = const(0x0100)   # valve shut by a fault (or by an empty balance)
ST_ERR_MASK = const(0x003F)     # the latched faults the fault card clears

# IR_VALVE values.
VALVE_OPEN = const(0)
VALVE_CLOSED = const(1)

MODEL_CODE = const(1001)
FIRMWARE_VERSION = const(100)   # 1.00

# Modbus exception codes returned by MeterCore.write_holding(s).
EX_ILLEGAL_FUNCTION = const(1)
EX_ILLEGAL_ADDRESS = const(2)
EX_ILLEGAL_VALUE = const(3)
EX_DEVICE_FAILURE = const(4)

# Defaults of the holding parameters (a blank unit, or after a layout change).
DEFAULT_PULSE_LITRES = const(1000)     # 10.00 L per pulse, a G4 diaphragm meter
DEFAULT_NO_SIGNAL_DAYS = const(30)
DEFAULT_DEAD_METER_DAYS = const(90)
DEFAULT_MAX_FLOW = const(6000)         # 6.000 m3/h, Qmax of a G4 meter
DEFAULT_LOW_BALANCE = const(5000)      # 5.000 m3, service manual A5
DEFAULT_LOW_BATTERY = const(3300)      # 3.300 V, a 3.6 V lithium cell near its end
MAX_DAYS = const(3650)                 # day parameters above ten years are refused
MAX_LOW_BATTERY = const(12000)         # the model's battery_V range is 0..12 V
