"""Tests for rail.smtp."""
