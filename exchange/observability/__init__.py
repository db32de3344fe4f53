"""Seeing the gateway run: Prometheus metrics, structured logs and OpenTelemetry traces."""
