"""ACME (RFC 8555): Rail's server certificate from a public CA, issued and renewed."""
