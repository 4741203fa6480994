"""Tests of rail.forward."""
