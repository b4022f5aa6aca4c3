"""`spanmeter demo`: the whole path from an instrumented app to per-customer cost, on one machine,
with nothing configured (run.py), and the fake LLM provider it calls (fake_provider.py)."""
