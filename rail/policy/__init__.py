"""Pure decisions: who may send what, and which limits apply (values in, verdicts out)."""
