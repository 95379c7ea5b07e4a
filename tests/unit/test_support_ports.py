"""The test rig's free_port(): seen once under load, a simulator could not
listen on the port it was given ("Could not start listen"): the port came
from bind(0), so from the kernel's ephemeral range, and the test's own MQTT
client, connecting meanwhile, was handed the same port as its local end."""
from __future__ import annotations

import socket

import pytest

from tests.support import ephemeral_range, free_port


def test_free_ports_are_outside_the_ephemeral_range_and_not_handed_out_twice():
    lo, hi = ephemeral_range()
    if lo <= 21000 and hi >= 64535:
        pytest.skip(f"the ephemeral range {lo}-{hi} leaves no room outside it")
    ports = [free_port() for _ in range(300)]
    assert all(not lo <= p <= hi for p in ports), [p for p in ports if lo <= p <= hi][:5]
    assert len(set(ports)) == len(ports)
    with socket.socket() as s:            # and really free
        s.bind(("127.0.0.1", ports[-1]))
