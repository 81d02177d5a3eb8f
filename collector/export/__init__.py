"""Prometheus metrics (metrics) and OpenTelemetry spans (tracing) of the gateway."""
