"""The signed return path (VERP) and the bounce and complaint reports that come back to it."""
