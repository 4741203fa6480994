"""Rail's SMTP server layer on twisted.mail: strict framing, ordered replies, sessions."""
