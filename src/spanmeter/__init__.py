"""spanmeter: an OpenTelemetry-native usage collector."""

__version__ = "0.1.0"
