"""TLS-RPT (RFC 8460): Rail's daily reports of TLS outcomes to recipient domains, and the
reports other senders send to Rail's own domains."""
