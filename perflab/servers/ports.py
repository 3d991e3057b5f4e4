"""Free-port lookup on loopback: kept here for the lab's imports; the helpers live in `perflab.net`."""

from perflab.net import free_port, port_open

__all__ = ["free_port", "port_open"]
