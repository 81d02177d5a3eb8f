"""The rollout judge (Kayenta-style: config, data, classify, judge, report) and the rollout that acts on it
(rollout/: plan, lease, steps, run)."""
