from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.export.metrics import GatewayMetrics, PoolLabels
from collector.fleet.slo import Slo
from collector.store.rows import RequestRecord

REF = PoolLabels("ref", "cpu", "arith@ref", "r1")
REF_SERIES = {"pool": "ref", "hardware": "cpu", "model": "arith@ref", "revision": "r1"}
COMPLETION = {**REF_SERIES, "gen_ai_operation_name": "text_completion"}


def record(**fields: Any) -> RequestRecord:
    base: dict[str, Any] = {
        "id": "req-1", "pool": "ref", "source": "traffic", "started_at": datetime(2026, 1, 1, tzinfo=UTC),
        "status": "ok", "operation": "text_completion",
    }  # fmt: skip
    return RequestRecord(**{**base, **fields})


FAST = record(
    id="req-1", ttft_s=0.03, tpot_s=0.012, e2e_s=0.25, prompt_tokens=10, cached_tokens=4, completion_tokens=5,
    cost_usd=0.002,
)  # fmt: skip
SLOW = record(
    id="req-2", ttft_s=0.07, tpot_s=0.03, e2e_s=1.5, prompt_tokens=20, cached_tokens=16, completion_tokens=50,
    cost_usd=0.003,
)  # fmt: skip
FAILED = record(id="req-3", status="error", error="upstream 503", e2e_s=0.005)


def samples(metrics: GatewayMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition, parsed back: (name, labels) -> value."""
    body, _ = metrics.exposition()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def value(parsed: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return parsed.get((name, frozenset(labels.items())))


def test_histograms_counters_and_ratio_by_hand() -> None:
    metrics = GatewayMetrics()
    for r in (FAST, SLOW, FAILED):
        metrics.observe(r, REF)
    got = samples(metrics)

    # TTFT 0.03 lands in le=0.04 (not 0.02), 0.07 in le=0.08 (not 0.06); the failed request has none
    ttft = "gen_ai_server_time_to_first_token_seconds"
    buckets = {le: value(got, f"{ttft}_bucket", **COMPLETION, le=le) for le in ("0.02", "0.04", "0.06", "0.08", "+Inf")}
    assert buckets == {"0.02": 0, "0.04": 1, "0.06": 1, "0.08": 2, "+Inf": 2}
    assert value(got, f"{ttft}_count", **COMPLETION) == 2
    assert value(got, f"{ttft}_sum", **COMPLETION) == pytest.approx(0.10)

    # TPOT 0.012 -> le=0.025, 0.03 -> le=0.05
    tpot = "gen_ai_server_time_per_output_token_seconds"
    buckets = {le: value(got, f"{tpot}_bucket", **COMPLETION, le=le) for le in ("0.01", "0.025", "0.05")}
    assert buckets == {"0.01": 0, "0.025": 1, "0.05": 2}
    assert value(got, f"{tpot}_sum", **COMPLETION) == pytest.approx(0.042)

    # duration: 0.25 -> le=0.32, 1.5 -> le=2.56 for successes; the failure (0.005 -> le=0.01) in its own series
    duration = "gen_ai_server_request_duration_seconds"
    ok = {**COMPLETION, "error_type": ""}
    buckets = {le: value(got, f"{duration}_bucket", **ok, le=le) for le in ("0.16", "0.32", "1.28", "2.56")}
    assert buckets == {"0.16": 0, "0.32": 1, "1.28": 1, "2.56": 2}
    assert value(got, f"{duration}_sum", **ok) == pytest.approx(1.75)
    failed = {**COMPLETION, "error_type": "error"}
    assert value(got, f"{duration}_bucket", **failed, le="0.01") == 1
    assert value(got, f"{duration}_count", **failed) == 1

    # tokens: input 10 -> le=16, 20 -> le=64; output 5 -> le=16, 50 -> le=64
    usage = "gen_ai_client_token_usage"
    for token_type, total in (("input", 30), ("output", 55)):
        series = {**COMPLETION, "gen_ai_token_type": token_type}
        buckets = {le: value(got, f"{usage}_bucket", **series, le=le) for le in ("4.0", "16.0", "64.0")}
        assert buckets == {"4.0": 0, "16.0": 1, "64.0": 2}
        assert value(got, f"{usage}_sum", **series) == total

    assert value(got, "inferwatch_requests_total", **REF_SERIES, status="ok", source="traffic") == 2
    assert value(got, "inferwatch_requests_total", **REF_SERIES, status="error", source="traffic") == 1
    assert value(got, "inferwatch_cost_usd_total", **REF_SERIES) == pytest.approx(0.005)
    assert value(got, "inferwatch_prompt_tokens_total", **REF_SERIES) == 30
    assert value(got, "inferwatch_cached_prompt_tokens_total", **REF_SERIES) == 20
    # (4 + 16) / (10 + 20): over all requests so far, not the mean of per-request ratios (0.4 and 0.8)
    assert value(got, "inferwatch_cache_hit_ratio", **REF_SERIES, source="requests") == pytest.approx(2 / 3)


def test_error_without_timings_counts_only_the_request_and_its_duration() -> None:
    metrics = GatewayMetrics()
    metrics.observe(FAILED, REF)
    got = samples(metrics)
    names = {name for name, _ in got if not name.endswith("_created")}
    duration = "gen_ai_server_request_duration_seconds"
    assert names == {"inferwatch_requests_total", "inferwatch_requests_good_total", f"{duration}_bucket",
                     f"{duration}_count", f"{duration}_sum"}  # fmt: skip
    assert value(got, "inferwatch_requests_total", **REF_SERIES, status="error", source="traffic") == 1
    assert value(got, "inferwatch_requests_good_total", **REF_SERIES, source="traffic") == 0  # a miss
    assert value(got, f"{duration}_sum", **COMPLETION, error_type="error") == pytest.approx(0.005)


def test_good_requests_and_the_engines_split_by_hand() -> None:
    # SLO ttft 50 ms, tpot 20 ms, e2el 1 s: FAST is within it; SLOW's TTFT 70 ms is not; FAILED is a miss; a
    # coalesced stream (5 token events in 1 read) is judged on the engine's TPOT: 10 ms good, 50 ms a miss
    metrics = GatewayMetrics(slo=Slo(50, 20, 1000))
    coalesced = {"ttft_s": 0.03, "tpot_s": 0.0, "e2e_s": 0.3, "token_events": 5, "chunk_arrivals": 1}
    fast_engine = record(id="c1", engine_tpot_s=0.01, engine_queue_s=0.002, engine_prefill_s=0.02, **coalesced)
    slow_engine = record(id="c2", engine_tpot_s=0.05, engine_queue_s=0.3, engine_prefill_s=0.02, **coalesced)
    for r in (FAST, SLOW, FAILED, fast_engine, slow_engine):
        metrics.observe(r, REF)
    got = samples(metrics)
    assert value(got, "inferwatch_requests_good_total", **REF_SERIES, source="traffic") == 2  # FAST, c1
    # the engine's own timings: queue 0.002 -> le=0.005, 0.3 -> le=0.5; TPOT 0.01 -> le=0.01, 0.05 -> le=0.05
    queue = "inferwatch_engine_queue_seconds"
    assert {le: value(got, f"{queue}_bucket", **REF_SERIES, le=le) for le in ("0.005", "0.25", "0.5")} == {
        "0.005": 1, "0.25": 1, "0.5": 2}  # fmt: skip
    tpot = "inferwatch_engine_time_per_output_token_seconds"
    assert {le: value(got, f"{tpot}_bucket", **REF_SERIES, le=le) for le in ("0.01", "0.025", "0.05")} == {
        "0.01": 1, "0.025": 1, "0.05": 2}  # fmt: skip
    assert value(got, "inferwatch_engine_prefill_seconds_sum", **REF_SERIES) == pytest.approx(0.04)
    # no SLO: the counter is there, at 0
    plain = GatewayMetrics()
    plain.observe(FAST, REF)
    assert value(samples(plain), "inferwatch_requests_good_total", **REF_SERIES, source="traffic") == 0


def test_latency_of_a_cancelled_request_is_not_a_success_latency() -> None:
    metrics = GatewayMetrics()
    metrics.observe(record(status="cancelled", ttft_s=0.03, e2e_s=0.5, prompt_tokens=7), REF)
    got = samples(metrics)
    assert value(got, "gen_ai_server_time_to_first_token_seconds_count", **COMPLETION) is None
    assert value(got, "gen_ai_server_request_duration_seconds_count", **COMPLETION, error_type="cancelled") == 1
    usage = {**COMPLETION, "gen_ai_token_type": "input"}
    assert value(got, "gen_ai_client_token_usage_sum", **usage) == 7  # tokens were spent all the same


def test_unknown_labels_server_ratio_and_in_flight() -> None:
    metrics = GatewayMetrics()
    bare = PoolLabels("ext", None, None, "")
    bare_series = {"pool": "ext", "hardware": "unknown", "model": "unknown", "revision": "unknown"}
    metrics.set_server_cache_hit_ratio(bare, 0.42)
    metrics.inc_in_flight(bare)
    metrics.inc_in_flight(bare)
    metrics.dec_in_flight(bare)
    # no cached-token report: the requests ratio stays absent rather than a made-up 0
    metrics.observe(record(pool="ext", operation=None, e2e_s=0.1, prompt_tokens=10), bare)
    got = samples(metrics)
    assert value(got, "inferwatch_cache_hit_ratio", **bare_series, source="server") == 0.42
    assert value(got, "inferwatch_cache_hit_ratio", **bare_series, source="requests") is None
    assert value(got, "inferwatch_requests_in_flight", **bare_series) == 1
    assert value(got, "inferwatch_prompt_tokens_total", **bare_series) == 10
    op_unknown = {**bare_series, "gen_ai_operation_name": "unknown", "error_type": ""}
    assert value(got, "gen_ai_server_request_duration_seconds_count", **op_unknown) == 1


def test_each_instance_has_its_own_registry() -> None:
    first, second = GatewayMetrics(), GatewayMetrics()
    first.observe(FAST, REF)
    assert value(samples(second), "inferwatch_requests_total", **REF_SERIES, status="ok", source="traffic") is None


@pytest.mark.parametrize("ratio", [-0.1, 1.5, float("nan")])
def test_server_ratio_outside_unit_interval_is_rejected(ratio: float) -> None:
    with pytest.raises(ValueError, match="within"):
        GatewayMetrics().set_server_cache_hit_ratio(REF, ratio)


@pytest.mark.parametrize("field", [{"status": "weird"}, {"source": "somewhere"}, {"operation": "embeddings"}])
def test_values_outside_the_closed_sets_are_rejected(field: dict[str, str]) -> None:
    # a free-form label value would be unbounded cardinality
    with pytest.raises(ValueError):
        GatewayMetrics().observe(record(**field), REF)


def test_promtool_accepts_the_exposition() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install the Debian prometheus package (scripts/install-system.sh)"
    metrics = GatewayMetrics()
    for r in (FAST, SLOW, FAILED):
        metrics.observe(r, REF)
    metrics.set_server_cache_hit_ratio(REF, 0.5)
    metrics.inc_in_flight(REF)
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    done = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
