"""robotrl: learning robot control from pixels."""

__version__ = "0.1.0"
