"""Outbound delivery: routing, the SMTP client, retries, DSNs and the scheduler."""
