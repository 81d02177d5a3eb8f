"""Eval suites, runners, per-item scoring and paired significance."""
