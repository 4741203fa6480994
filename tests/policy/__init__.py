"""Tests for rail.policy."""
