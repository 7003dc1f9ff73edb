"""Docker libnetwork remote network driver that attaches containers to Open vSwitch."""

__version__ = "0.1.0"
