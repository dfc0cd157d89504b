"""fairvalue: live fair values for collectibles markets, with a forward track record."""

__version__ = "0.1.0"
