"""A store with known rows for the dashboard tests, and what the dashboard must show for them, by hand.

Requests are placed relative to `now` so that the dashboard's default window (the last hour) holds the
current ones and the hour before it the previous ones:

pool ref (revision r1, cpu, 3.6 $/h x 1 replica), last hour: 4 ok requests, TTFT 0.1 0.2 0.3 0.4 s, TPOT
0.01 0.02 0.03 0.04 s, 100 prompt tokens (50 50 0 0 cached) and 10 output tokens each, and 1 error.
    req/s 5 / 3600 = 0.00139; TTFT p50 0.25 s, p99 0.3 + 0.97 x 0.1 = 0.397 s (DuckDB quantile_cont);
    TPOT p50 25.0 ms, p99 39.7 ms; error rate 1/5 = 20.0 %; cost 3.6 x 1 x 1 h = 3.6 $ over 440 tokens:
    8181.8 $/1M tokens; cache hit 100 / 400 = 25.0 %; goodput (data/slo.yaml: every ok request within it, the
    error a miss) 4 / 5 = 80.0 %.
  the hour before: 2 ok requests, TTFT 0.1 0.2 s (p50 150 ms, p99 199 ms), TPOT 0.01 0.02 s (p50 15.0 ms,
  p99 19.9 ms), no cache hits, no errors: 2 / 3600 req/s, 3.6 $ over 220 tokens = 16363.6 $/1M tokens.
    changes: req/s +3/3600 = +0.000833, TTFT p50 +100 ms, p99 +198 ms, TPOT p50 +10.0 ms, p99 +19.8 ms,
    error rate +20.0 pts, $/1M tokens -8181.8, cache hit +25.0 pts, goodput 80 % - 100 % = -20.0 pts.
pool bf16 (revision r2, cpu, 0.36 $/h x 2 replicas), last hour only: 1 ok request, TTFT 0.5 s, TPOT 0.05 s,
    100 + 10 tokens: 0.72 $ / 110 tokens = 6545.5 $/1M tokens; no previous window, no changes.
The four current ref requests start within one minute (one 60 s bucket of the last hour's series): that
bucket costs 3.6 x 60 / 3600 = 0.06 $ over 440 tokens = 136.4 $/1M tokens.

Canary run c1 against ref: bf16 ok everywhere; boost drifts on greedy_divergence and greedy_hard_mismatch,
is ok on tf_mean_kl and has no data for sampled_answer_shift. Probe p1: ref answers "35" (tokens 7 9 2:
'3' '5' EOS), boost at concurrency 4 "3#" (7 48 2): first divergence at token 1, where ref's top-5 holds no
'#' (48): a hard mismatch.
Eval run e1 of arith-v1 against ref: ref 90/100 (Wilson 95 %: 82.6 %-94.5 %), noisy 80/100 (71.1 %-86.7 %),
paired difference -10.0 pts [-17.0, -3.0], p 0.002, regressed.
Gate g1: bf16 against ref, fail, score 75, exit 1. Alert InferwatchTTFTHigh firing for bf16; notification n1
tried twice: 503 then delivered with 200.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

MODEL = str(Path(__file__).resolve().parents[2] / "data" / "models" / "arith")


class Sink(Protocol):
    def append(self, table: str, rows: list[dict[str, Any]]) -> int: ...


def minute_start(now: datetime, seconds_ago: float) -> datetime:
    """The start of the minute `seconds_ago` before `now` (a 60 s bucket of the dashboard's series)."""
    t = now - timedelta(seconds=seconds_ago)
    return t.replace(second=0, microsecond=0)


def _pool(pool: str, revision: str, price: float, replicas: int, at: datetime) -> dict[str, Any]:
    return {
        "pool": pool,
        "revision": revision,
        "hardware": "cpu",
        "accelerator": "cpu",
        "model": f"arith@{pool}",
        "dtype": "float32",
        "replicas": replicas,
        "price_per_hour": price,
        "spec_json": json.dumps({"name": pool, "model": MODEL}),
        "recorded_at": at,
    }


def _request(rid: str, pool: str, revision: str, at: datetime, status: str = "ok", **values: Any) -> dict[str, Any]:
    return {
        "id": rid,
        "pool": pool,
        "revision": revision,
        "hardware": "cpu",
        "source": "load",
        "started_at": at,
        "status": status,
        **values,
    }


def _ok(rid: str, pool: str, revision: str, at: datetime, ttft: float, tpot: float, cached: int) -> dict[str, Any]:
    return _request(
        rid,
        pool,
        revision,
        at,
        ttft_s=ttft,
        tpot_s=tpot,
        e2e_s=ttft + 9 * tpot,
        prompt_tokens=100,
        cached_tokens=cached,
        completion_tokens=10,
    )


def requests(now: datetime) -> list[dict[str, Any]]:
    bucket = minute_start(now, 900)
    before = now - timedelta(seconds=3600 + 900)
    s = timedelta(seconds=1)
    return [
        _ok("r1", "ref", "r1", bucket + 1 * s, 0.1, 0.01, 50),
        _ok("r2", "ref", "r1", bucket + 2 * s, 0.4, 0.04, 50),
        _ok("r3", "ref", "r1", bucket + 3 * s, 0.2, 0.02, 0),
        _ok("r4", "ref", "r1", bucket + 4 * s, 0.3, 0.03, 0),
        _request(
            "r5",
            "ref",
            "r1",
            bucket + 5 * s,
            "error",
            error="pool ref: HTTP 500",
            error_type="upstream_5xx",
            e2e_s=0.05,
        ),
        _ok("p1", "ref", "r1", before, 0.1, 0.01, 0),
        _ok("p2", "ref", "r1", before + s, 0.2, 0.02, 0),
        _ok("b1", "bf16", "r2", bucket + 6 * s, 0.5, 0.05, 0),
    ]


def _drift(pool: str, metric: str, value: float | None, verdict: str, at: datetime) -> dict[str, Any]:
    evidence = {"mode": "greedy", "critical": False, "probe": "p1", "evidence": f"{pool} {metric}: {verdict}"}
    return {
        "run_id": "c1",
        "pool": pool,
        "metric": metric,
        "value": value,
        "band_low": 0.0,
        "band_high": 0.0,
        "p_value": 0.01 if verdict == "drift" else 0.9,
        "verdict": verdict,
        "evidence_json": json.dumps(evidence),
        "recorded_at": at,
    }


def _probe(pool: str, mode: str, text: str, tokens: list[int], top: list[dict[str, float]], at: datetime) -> Any:
    return {
        "run_id": "c1",
        "pool": pool,
        "reference_pool": "ref",
        "probe_id": "p1",
        "mode": mode,
        "seed": None,
        "tokens_json": json.dumps({"text": text, "tokens": [f"token_id:{t}" for t in tokens]}),
        "top_logprobs_json": json.dumps(top),
        "recorded_at": at,
    }


def _top(*pairs: tuple[int, float]) -> dict[str, float]:
    return {f"token_id:{t}": lp for t, lp in pairs}


REF_TOP = [
    _top((7, -0.01), (8, -5.0)),
    _top((9, -0.02), (8, -4.1), (10, -5.2), (4, -6.0), (5, -6.5), (6, -7.0)),
    _top((2, -0.001), (4, -8.0)),
]
BOOST_TOP = [_top((7, -0.01), (8, -5.0)), _top((9, -0.03), (8, -4.0), (48, -9.5)), _top((2, -0.002))]


def canary(now: datetime) -> list[tuple[str, list[dict[str, Any]]]]:
    at = now - timedelta(seconds=600)
    drift = [_drift("bf16", m, 0.0, "ok", at) for m in ("greedy_divergence", "greedy_hard_mismatch", "tf_mean_kl")]
    drift += [
        _drift("boost", "greedy_divergence", 0.5, "drift", at),
        _drift("boost", "greedy_hard_mismatch", 0.5, "drift", at),
        _drift("boost", "tf_mean_kl", 0.001, "ok", at),
        _drift("boost", "sampled_answer_shift", None, "nodata", at),
    ]
    probes = [
        _probe("ref", "greedy@1", "35", [7, 9, 2], REF_TOP, at),
        _probe("ref", "greedy@4", "35", [7, 9, 2], REF_TOP, at),
        _probe("boost", "greedy@1", "35", [7, 9, 2], BOOST_TOP, at),
        _probe("boost", "greedy@4", "3#", [7, 48, 2], BOOST_TOP, at),
        _probe("bf16", "greedy@1", "35", [7, 9, 2], REF_TOP, at),
    ]
    return [("drift", drift), ("probes", probes)]


def _eval(
    pool: str,
    correct: int,
    ci: tuple[float, float],
    delta: tuple[float, float, float] | None,
    p: float | None,
    verdict: str,
    at: datetime,
) -> dict[str, Any]:
    d = delta or (None, None, None)
    return {
        "run_id": "e1",
        "suite": "arith-v1",
        "pool": pool,
        "reference_pool": "ref",
        "origin": "inferwatch",
        "items": 100,
        "scored": 100,
        "errors": 0,
        "correct": correct,
        "accuracy": correct / 100,
        "ci_low": ci[0],
        "ci_high": ci[1],
        "paired": 100 if delta else None,
        "reference_only": 12 if delta else None,
        "pool_only": 2 if delta else None,
        "delta": d[0],
        "delta_low": d[1],
        "delta_high": d[2],
        "p_value": p,
        "verdict": verdict,
        "reason": f"{pool}: {verdict}",
        "items_needed": None,
        "retries": 0,
        "recorded_at": at,
    }


def evals(now: datetime) -> list[dict[str, Any]]:
    at = now - timedelta(seconds=500)
    return [
        _eval("ref", 90, (0.82563, 0.94477), None, None, "reference", at),
        _eval("noisy", 80, (0.71117, 0.86663), (-0.10, -0.17, -0.03), 0.002, "regressed", at),
    ]


def gates(now: datetime) -> list[dict[str, Any]]:
    metric = {
        "metric": "ttft",
        "group": "latency",
        "classification": "high",
        "critical": True,
        "reason": "ttft +134.3%, beyond the critical 50.0%",
        "baseline": 0.25,
        "candidate": 0.5852,
        "effect": 1.343,
        "effect_low": 1.1,
        "effect_high": 1.6,
        "p_value": 0.0001,
        "evidence": {},
    }
    detail = {
        "window": {"start": "2026-11-22T00:00:00+00:00", "end": "2026-11-22T01:00:00+00:00"},
        "reason": "critical: ttft +134.3%, beyond the critical 50.0%",
        "groups": {"latency": 0.0},
        "sources": {"baseline_requests": 6, "candidate_requests": 1},
        "metrics": [metric],
    }
    return [
        {
            "gate_id": "g1",
            "baseline": "ref",
            "candidate": "bf16",
            "verdict": "fail",
            "score": 75.0,
            "exit_code": 1,
            "detail_json": json.dumps(detail),
            "decided_at": now - timedelta(seconds=400),
        }
    ]


def alerts(now: datetime) -> list[tuple[str, list[dict[str, Any]]]]:
    at = now - timedelta(seconds=300)
    payload = {
        "labels": {"alertname": "InferwatchTTFTHigh", "pool": "bf16", "severity": "warning"},
        "annotations": {"summary": "TTFT p99 of pool bf16 is 2.5s"},
        "value": 2.5,
        "active_since": at.isoformat(),
        "ends_at": None,
        "notified_at": None,
        "reason": "p99 2.5 > 2",
    }
    state = {
        "fingerprint": "f1",
        "rule": "InferwatchTTFTHigh",
        "status": "firing",
        "payload_json": json.dumps(payload),
        "recorded_at": at,
    }
    body = json.dumps({"version": "4", "status": "firing", "alerts": [{"labels": payload["labels"]}]})
    outbox = {
        "notification_id": "n1",
        "receiver": "oncall",
        "group_key": "g",
        "status": "firing",
        "rules": "InferwatchTTFTHigh",
        "alerts": 1,
        "body": body,
        "created_at": at,
    }
    tries = [
        {
            "fingerprint": "g",
            "rule": "InferwatchTTFTHigh",
            "status": status,
            "receiver": "oncall",
            "attempt": n,
            "http_status": code,
            "error": error,
            "recorded_at": at + timedelta(seconds=n),
            "notification_id": "n1",
            "next_attempt_at": None,
        }
        for n, status, code, error in ((1, "retrying", 503, "HTTP 503"), (2, "delivered", 200, None))
    ]
    return [("alerts", [state, *tries]), ("alert_outbox", [outbox])]


def seed(store: Sink, now: datetime) -> None:
    at = now - timedelta(days=1)
    store.append("pools", [_pool("ref", "r1", 3.6, 1, at), _pool("bf16", "r2", 0.36, 2, at)])
    store.append("requests", requests(now))
    for table, rows in [*canary(now), ("eval_runs", evals(now)), ("gates", gates(now)), *alerts(now)]:
        store.append(table, rows)
