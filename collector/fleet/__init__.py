"""Per-pool fleet figures over a window (report) and what serving costs (cost)."""
