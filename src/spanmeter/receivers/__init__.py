"""Receivers: OTLP over gRPC and HTTP, sharing one decode and one ingest path."""
