"""The state several Rail nodes share in PostgreSQL besides the queue: the CA, the registry
of certificates and the CRL, event subscriptions, webhook secrets and keys (docs/scaling.md)."""
