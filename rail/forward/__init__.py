"""Forwarding routes: inbound mail re-sent to outside mailboxes, with SRS and ARC."""
