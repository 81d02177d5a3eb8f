"""Canary probes against pools, drift statistics and A/A calibration."""
