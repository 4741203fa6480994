"""Tests for rail.mail."""
