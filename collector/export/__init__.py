"""What the collector exports: Prometheus metrics of the gateway (metrics), the store's latest verdicts read at
scrape time (store_state) and OpenTelemetry spans (tracing)."""
