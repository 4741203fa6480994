"""DKIM keys per local domain, dual signing (ed25519 + rsa) and rotation."""
