"""Gateway, metrics scraper, cost model, DuckDB store, Prometheus/OTel export, alerts, load generator."""
