import pytest

from miu import regs
from miu.sim import SimMeter


@pytest.fixture
def meter() -> SimMeter:
    """A unit with 20 m3 of credit and the valve open, after the opening motor run."""
    m = SimMeter()
    assert m.credit(20_000) == 0
    assert m.command(regs.CMD_OPEN_VALVE) == 0
    m.advance(5_000)
    return m

