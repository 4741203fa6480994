"""Rail: a self-hosted transactional email relay on Twisted."""
