"""Structured logs, Prometheus metrics and OpenTelemetry traces, usable from any layer."""
