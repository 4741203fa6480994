"""Tests for rail.dkim."""
