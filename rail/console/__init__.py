"""The operators' web console at ``/console/`` (docs/console.md)."""
