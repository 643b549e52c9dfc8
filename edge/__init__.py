"""rokt-edge: capture Rokt click ids first-party and deliver conversions to Rokt."""

__version__ = "0.1.0"
