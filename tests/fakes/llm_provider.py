"""The fake LLM provider of the tests: spanmeter's own (src/spanmeter/demo/fake_provider.py), which
`spanmeter demo` and the examples use too."""

from spanmeter.demo.fake_provider import DEFAULT_USAGE, ERROR_MODELS, Exchange, FakeProvider, Usage

__all__ = ["DEFAULT_USAGE", "ERROR_MODELS", "Exchange", "FakeProvider", "Usage"]
