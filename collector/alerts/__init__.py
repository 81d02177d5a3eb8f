"""Alerts over the store: rules (rules.py), their sources in the store (sources.py), the pending/firing/resolved
state machine (evaluate.py), notifications and their payloads (payload.py), Standard Webhooks signatures
(signing.py), the store-backed outbox and attempts (outbox.py), one HTTP attempt and its retry (delivery.py),
the outbox delivered one task per attempt (deliverer.py), and the job that runs them in the collector or once
from the CLI (job.py). See docs/ALERTS.md."""
