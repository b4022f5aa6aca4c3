"""The HTTP API next to OTLP/HTTP: health, metrics (and, later, the usage query endpoints)."""
