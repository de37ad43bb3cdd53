"""Thai Card Agent: reads Thai national ID cards for browser pages on localhost."""

__version__ = "0.1.0"
