"""Tests for rail.jobs."""
