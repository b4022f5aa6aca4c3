"""Subprocess drivers: one per instrumentation library (see common.py)."""
