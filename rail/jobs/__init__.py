"""One runner for every kind of durable job (deliveries, webhooks, events)."""
