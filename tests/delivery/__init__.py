"""Tests for rail.delivery."""
