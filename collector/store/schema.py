"""The store's tables (DESIGN.md "Store") and the migrations that create them, in order.

Each migration is applied once, inside a transaction, and recorded in `schema_migrations`; the schema
version of a store is the number of migrations applied. Never edit a released migration: append one.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: the tables of DESIGN.md "Store"
    """
    CREATE TABLE pools (
        pool VARCHAR NOT NULL, revision VARCHAR NOT NULL, hardware VARCHAR NOT NULL,
        accelerator VARCHAR NOT NULL, model VARCHAR NOT NULL, dtype VARCHAR,
        replicas INTEGER NOT NULL, price_per_hour DOUBLE NOT NULL, spec_json VARCHAR NOT NULL,
        recorded_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE requests (
        id VARCHAR NOT NULL, trace_id VARCHAR, pool VARCHAR NOT NULL, revision VARCHAR,
        hardware VARCHAR, model VARCHAR, source VARCHAR NOT NULL, started_at TIMESTAMPTZ NOT NULL,
        ttft_s DOUBLE, tpot_s DOUBLE, itl_p50_s DOUBLE, itl_max_s DOUBLE, e2e_s DOUBLE,
        prompt_tokens INTEGER, cached_tokens INTEGER, completion_tokens INTEGER,
        finish_reason VARCHAR, status VARCHAR NOT NULL, error VARCHAR, cost_usd DOUBLE
    );
    CREATE TABLE pool_samples (
        pool VARCHAR NOT NULL, sampled_at TIMESTAMPTZ NOT NULL, metric VARCHAR NOT NULL,
        value DOUBLE NOT NULL
    );
    CREATE TABLE probes (
        run_id VARCHAR NOT NULL, pool VARCHAR NOT NULL, reference_pool VARCHAR NOT NULL,
        probe_id VARCHAR NOT NULL, mode VARCHAR NOT NULL, seed BIGINT, tokens_json VARCHAR NOT NULL,
        top_logprobs_json VARCHAR, recorded_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE drift (
        run_id VARCHAR NOT NULL, pool VARCHAR NOT NULL, metric VARCHAR NOT NULL, value DOUBLE,
        band_low DOUBLE, band_high DOUBLE, p_value DOUBLE, verdict VARCHAR NOT NULL,
        evidence_json VARCHAR, recorded_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE eval_items (
        run_id VARCHAR NOT NULL, pool VARCHAR NOT NULL, suite VARCHAR NOT NULL, item_id VARCHAR NOT NULL,
        correct BOOLEAN, score DOUBLE, output VARCHAR, error VARCHAR, recorded_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE gates (
        gate_id VARCHAR NOT NULL, baseline VARCHAR NOT NULL, candidate VARCHAR NOT NULL,
        verdict VARCHAR NOT NULL, score DOUBLE, exit_code INTEGER NOT NULL, detail_json VARCHAR NOT NULL,
        decided_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE alerts (
        fingerprint VARCHAR NOT NULL, rule VARCHAR NOT NULL, status VARCHAR NOT NULL,
        receiver VARCHAR, attempt INTEGER, http_status INTEGER, error VARCHAR,
        payload_json VARCHAR, recorded_at TIMESTAMPTZ NOT NULL
    );
    """,
    # 2: which load/canary/eval run a request belongs to, which OpenAI operation it was, and the class of
    # its error (collector/vocabulary.py ErrorType) beside the message
    """
    ALTER TABLE requests ADD COLUMN run_id VARCHAR;
    ALTER TABLE requests ADD COLUMN operation VARCHAR;
    ALTER TABLE requests ADD COLUMN error_type VARCHAR;
    """,
    # 3: evals (evals/): how many requests each item took, which suite file version and origin (inferwatch or an
    # lm-eval import) a run had, and the per-pool summary of every run with its verdict against the reference
    """
    ALTER TABLE eval_items ADD COLUMN attempts INTEGER;
    CREATE TABLE eval_runs (
        run_id VARCHAR NOT NULL, suite VARCHAR NOT NULL, pool VARCHAR NOT NULL, reference_pool VARCHAR NOT NULL,
        origin VARCHAR NOT NULL, items INTEGER NOT NULL, scored INTEGER NOT NULL, errors INTEGER NOT NULL,
        correct INTEGER NOT NULL, accuracy DOUBLE, ci_low DOUBLE, ci_high DOUBLE, paired INTEGER,
        reference_only INTEGER, pool_only INTEGER, delta DOUBLE, delta_low DOUBLE, delta_high DOUBLE,
        p_value DOUBLE, verdict VARCHAR NOT NULL, reason VARCHAR NOT NULL, items_needed INTEGER,
        retries INTEGER, recorded_at TIMESTAMPTZ NOT NULL
    );
    """,
    # 4: alerts (collector/alerts/, docs/ALERTS.md). `alerts` rows are either an alert's state change (receiver
    # NULL) or one delivery attempt of an outbox notification (notification_id, receiver, attempt, and when a
    # retry is due); the outbox holds every notification to deliver, body as sent, so a restart resumes it
    """
    ALTER TABLE alerts ADD COLUMN notification_id VARCHAR;
    ALTER TABLE alerts ADD COLUMN next_attempt_at TIMESTAMPTZ;
    CREATE TABLE alert_outbox (
        notification_id VARCHAR NOT NULL, receiver VARCHAR NOT NULL, group_key VARCHAR NOT NULL,
        status VARCHAR NOT NULL, rules VARCHAR NOT NULL, alerts INTEGER NOT NULL, body VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
    );
    """,
    # 5: rollouts (gate/rollout/): one row per step of a rollout (start, shift, load, canary, eval, judge,
    # promote / abort), with what the step did or why it failed
    """
    CREATE TABLE rollouts (
        rollout_id VARCHAR NOT NULL, step VARCHAR NOT NULL, status VARCHAR NOT NULL, baseline VARCHAR NOT NULL,
        candidate VARCHAR NOT NULL, weight DOUBLE, detail_json VARCHAR NOT NULL, recorded_at TIMESTAMPTZ NOT NULL
    );
    """,
    # 6: the data path (collector/journal/, docs/DESIGN.md "Store"): which journal segments of which gateway are
    # in the store (committed in the same transaction as their rows, so a replay inserts nothing twice), rows
    # that could not be stored with why (quarantine), and leases (one alert evaluator among N gateways)
    """
    CREATE TABLE journal_segments (
        writer VARCHAR NOT NULL, segment VARCHAR NOT NULL, rows INTEGER NOT NULL, torn INTEGER NOT NULL,
        quarantined INTEGER NOT NULL, committed_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE quarantine (
        writer VARCHAR NOT NULL, segment VARCHAR, table_name VARCHAR NOT NULL, reason VARCHAR NOT NULL,
        row_json VARCHAR NOT NULL, recorded_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE leases (
        name VARCHAR NOT NULL, holder VARCHAR NOT NULL, expires_at TIMESTAMPTZ NOT NULL,
        acquired_at TIMESTAMPTZ NOT NULL
    );
    """,
    # 7: security (docs/SECURITY.md): the tenant a client API key maps to, in every request row; and the
    # order of an alert's state changes by a sequence number, not by the wall clock (a clock step neither
    # re-notifies nor expires)
    """
    ALTER TABLE requests ADD COLUMN tenant VARCHAR;
    ALTER TABLE alerts ADD COLUMN seq BIGINT;
    """,
    # 8: latency you can trust (docs/METRICS.md): the engine's own per-request timings beside the client-side
    # ones (vLLM --enable-per-request-metrics: queue, prefill, decode, mean inter-token latency), how many distinct
    # arrivals the token events had (a coalesced stream has fewer arrivals than events), and which work item a
    # request was (the same items on two pools compare like for like)
    """
    ALTER TABLE requests ADD COLUMN item_id VARCHAR;
    ALTER TABLE requests ADD COLUMN engine_queue_s DOUBLE;
    ALTER TABLE requests ADD COLUMN engine_prefill_s DOUBLE;
    ALTER TABLE requests ADD COLUMN engine_decode_s DOUBLE;
    ALTER TABLE requests ADD COLUMN engine_tpot_s DOUBLE;
    ALTER TABLE requests ADD COLUMN token_events INTEGER;
    ALTER TABLE requests ADD COLUMN chunk_arrivals INTEGER;
    """,
    # 9: the gateway's own time per request (docs/METRICS.md gateway_s) and each pool's stream batching interval
    # (Ray Serve LLM sends a stream's tokens in batches of this many ms; NULL: unknown, e.g. an endpoint pool)
    """
    ALTER TABLE requests ADD COLUMN gateway_s DOUBLE;
    ALTER TABLE pools ADD COLUMN stream_batch_ms DOUBLE;
    """,
)

# the bookkeeping table (no PRIMARY KEY: DuckLake has none; versions are written once, inside the transaction)
MIGRATIONS_TABLE = "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER NOT NULL, applied_at TIMESTAMPTZ)"

SCHEMA_VERSION = len(MIGRATIONS)
