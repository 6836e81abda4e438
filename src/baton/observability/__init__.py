"""Structured logs (and, later, metrics and traces) usable from any layer."""
