"""Rail tests, run with trial."""
