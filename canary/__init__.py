"""Canary probes against pools, drift statistics and the rollout judge."""
