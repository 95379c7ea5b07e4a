"""edgegw: edge gateway for gas meters and access controllers."""

__version__ = "0.1.0"
