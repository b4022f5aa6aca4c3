"""Conversion: decoded OTLP spans and log records → usage records (pure functions, no I/O)."""
