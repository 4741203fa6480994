"""Shared test fixtures that run real servers on loopback."""
