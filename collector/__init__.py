"""The collector: gateway, store, scraper, export, fleet reports, alerts, load generator and clients; the
collector process (service, daemon).
"""
