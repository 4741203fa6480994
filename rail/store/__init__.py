"""The durable queue: accepted messages and their per-recipient state."""
