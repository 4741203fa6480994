"""Tests for rail.store."""
