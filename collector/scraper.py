"""Server metrics: each pool's vLLM state, scraped from Prometheus expositions into `pool_samples`.

Sources. Pools that `inferwatch engine up` deployed are read from Ray's metrics export (EngineState.metrics_url),
where vLLM's metrics are spelled `ray_vllm_*` (vLLM's Ray stat logger replaces `:` by `_`, Ray adds `ray_`);
external pools (`endpoint:`) from their own vLLM server, `<endpoint>/metrics`, spelled `vllm:*`.

Pools. A sample belongs to the pool whose served model id is its `model_name` label. Other labels split a pool
into series: `engine` (vLLM engine index) and, in the Ray export, `ReplicaId` (Serve replica), `WorkerId` (Ray
worker process), `NodeAddress`, `SessionName`, `Component`, `Version`, `otel_scope_*`. A pool's series are
aggregated: counters, running and waiting requests are summed; KV-cache usage is averaged (`kv_cache_usage`: the
share of the pool's KV capacity in use, its replicas being alike) and its maximum kept too (`kv_cache_usage_max`:
the replica nearest to preempting, which a mean over many replicas hides).

What the Ray export leaves out (seen on Ray 2.60 with vLLM 0.32):
- a counter is exported only after its first non-zero increment (vLLM's RayCounterWrapper.inc skips 0), so in a
  Ray export a missing counter of a pool that is there reads 0;
- a gauge is dropped once it has not been refreshed for two export intervals, and vLLM refreshes gauges only
  while the engine steps: an idle pool has no kv_cache_usage / requests_* rows (no data, which is not 0).
  Gauges and counters lag the engine by up to one export interval (metrics_report_interval_ms, 10 s by default).

Rows: metric is one of METRICS; `scrape_up` is 1 for every pool of a URL that answered with an exposition, 0 when
it did not (refused, timed out, HTTP error, not an exposition), the reason being logged with the URL.

Faults (collector/health.py, part "scraper"): samples the sink refuses, the loop ending before it is stopped, or
no scrape finishing for `stale_after_s` (a loop that hangs); each logged once, the recovery too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType

import httpx
from prometheus_client.parser import text_string_to_metric_families

from collector.health import Faults
from collector.store.protocols import RowSink
from engine.state import EngineState

log = logging.getLogger(__name__)

PART = "scraper"  # its part in /healthz's faults
TABLE = "pool_samples"
POOL_LABEL = "model_name"  # the served model id, e.g. arith@ref

# canonical metric -> the names vLLM has given it, newest first; counters without their `_total`.
#   0.8   V1 added the counters vllm:gpu_prefix_cache_queries / _hits (PR #12592); V0's vllm:gpu_prefix_cache_hit_rate
#         gauge was deprecated for them (PR #14136) and hidden in 0.9 (PR #15458): it is not read here.
#   0.9   vllm:gpu_cache_usage_perc -> vllm:kv_cache_usage_perc, vllm:gpu_prefix_cache_queries / _hits ->
#         vllm:prefix_cache_queries / _hits (PR #18354; "Deprecated in 0.9 - Renamed as ..." in
#         vllm/v1/metrics/loggers.py). 0.9 and 0.10 emit old and new names side by side; 0.32 only the new ones.
#   V0 declared the preemption counter as vllm:num_preemptions_total, V1 as vllm:num_preemptions: prometheus_client
#   exposes both as vllm:num_preemptions_total.
GAUGES: dict[str, tuple[str, ...]] = {
    "kv_cache_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),  # 0..1
    "requests_running": ("vllm:num_requests_running",),
    "requests_waiting": ("vllm:num_requests_waiting",),
}
COUNTERS: dict[str, tuple[str, ...]] = {
    "preemptions_total": ("vllm:num_preemptions",),
    "prefix_cache_queries_total": ("vllm:prefix_cache_queries", "vllm:gpu_prefix_cache_queries"),  # tokens
    "prefix_cache_hits_total": ("vllm:prefix_cache_hits", "vllm:gpu_prefix_cache_hits"),  # tokens
    "prompt_tokens_total": ("vllm:prompt_tokens",),
    "generation_tokens_total": ("vllm:generation_tokens",),
}
KV_MAX = "kv_cache_usage_max"
HIT_RATIO = "prefix_cache_hit_ratio"  # between two scrapes, see prefix_cache_hit_ratio()
SCRAPE_UP = "scrape_up"
METRICS: tuple[str, ...] = (*GAUGES, KV_MAX, *COUNTERS, HIT_RATIO, SCRAPE_UP)


def _spellings(name: str, counter: bool) -> list[str]:
    """How a vLLM metric name appears as a sample name, most preferred first."""
    names = [name, "ray_" + re.sub(r"[^a-zA-Z0-9_]", "_", name)]
    return [*(f"{n}_total" for n in names), *names] if counter else names


def _sample_names() -> dict[str, tuple[str, int]]:
    """Sample name -> (canonical metric, rank); a lower rank is a newer name."""
    table: dict[str, tuple[str, int]] = {}
    for metrics, counter in ((GAUGES, False), (COUNTERS, True)):
        for metric, names in metrics.items():
            spelled = [s for name in names for s in _spellings(name, counter)]
            table.update({s: (metric, rank) for rank, s in enumerate(spelled)})
    return table


SAMPLE_NAMES = _sample_names()


@dataclass(frozen=True)
class PoolSample:
    pool: str
    metric: str  # one of METRICS
    value: float


_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def _looks_like_a_sample(line: str) -> bool:
    if "{" in line and "}" not in line:
        return False
    value = line.rsplit("}", 1)[-1].split()
    try:
        float(value[0])
    except (IndexError, ValueError):
        return False
    return True


def relevant_lines(text: str) -> str:
    """The sample lines of the metrics we read, and any line that is not exposition at all (for the parser to
    refuse). Ray's export of four pools is ~1.7 MB; prometheus_client's parser takes ~0.4 s of the collector's
    event loop over all of it, ~1 ms over what is kept. Comments (HELP, TYPE) are dropped: sample names are
    read as they are, without the families' types."""
    kept = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in SAMPLE_NAMES or not _METRIC_NAME.fullmatch(name) or not _looks_like_a_sample(line):
            kept.append(line)
    return "\n".join(kept) + "\n"


def parse_server_metrics(text: str, pool_of: Mapping[str, str]) -> list[PoolSample]:
    """The known vLLM metrics of the pools in `pool_of` (served model id -> pool), aggregated per pool.

    Samples of other models, without a model_name label, of unknown names (`_created` among them) or with a
    non-finite value are left out. Where one series (same labels) carries an old and a new name of a metric, the
    new one is read, so servers that emit both are not counted twice. Raises ValueError for a text that is not
    a Prometheus text exposition.
    """
    best: dict[tuple[str, str, frozenset[tuple[str, str]]], tuple[int, float]] = {}
    from_ray: set[str] = set()
    for family in text_string_to_metric_families(relevant_lines(text)):
        for sample in family.samples:
            known = SAMPLE_NAMES.get(sample.name)
            pool = pool_of.get(sample.labels.get(POOL_LABEL, ""))
            if known is None or pool is None or not math.isfinite(sample.value):
                continue
            metric, rank = known
            key = (pool, metric, frozenset(sample.labels.items()))
            if key not in best or rank < best[key][0]:
                best[key] = (rank, float(sample.value))
            if sample.name.startswith("ray_"):
                from_ray.add(pool)
    series: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (pool, metric, _), (_, value) in best.items():
        series[pool, metric].append(value)
    samples = []
    for pool in sorted({pool for pool, _ in series}):
        for metric in (*GAUGES, *COUNTERS):
            values = series.get((pool, metric))
            if not values:
                if metric in COUNTERS and pool in from_ray:  # never incremented, so not exported
                    samples.append(PoolSample(pool, metric, 0.0))
            elif metric == "kv_cache_usage":
                samples.append(PoolSample(pool, metric, sum(values) / len(values)))
                samples.append(PoolSample(pool, KV_MAX, max(values)))
            else:
                samples.append(PoolSample(pool, metric, sum(values)))
    return samples


@dataclass(frozen=True)
class PrefixCacheCounters:
    queries: float  # prompt tokens looked up in the prefix cache
    hits: float  # of those, tokens found cached


def prefix_cache_counters(samples: Iterable[PoolSample]) -> dict[str, PrefixCacheCounters]:
    """Per pool that has both prefix-cache counters in `samples`."""
    values = {(s.pool, s.metric): s.value for s in samples}
    return {
        pool: PrefixCacheCounters(queries, values[pool, "prefix_cache_hits_total"])
        for (pool, metric), queries in values.items()
        if metric == "prefix_cache_queries_total" and (pool, "prefix_cache_hits_total") in values
    }


def prefix_cache_hit_ratio(before: PrefixCacheCounters, after: PrefixCacheCounters) -> float | None:
    """The share of the prompt tokens looked up between two scrapes that the prefix cache held; None when none were.

    A counter that went down means the server restarted in between and counts again from 0: both counters restart
    together, so the new values are the increase (what was counted before the restart, after `before`, is lost).
    A restart of one replica among several is seen only when it makes the pool's sum go down.
    """
    restarted = after.queries < before.queries or after.hits < before.hits
    queries = after.queries if restarted else after.queries - before.queries
    hits = after.hits if restarted else after.hits - before.hits
    return hits / queries if queries > 0 else None


@dataclass(frozen=True)
class Target:
    url: str  # a Prometheus text exposition
    pool_of: Mapping[str, str]  # served model id (label model_name) -> pool

    @property
    def pools(self) -> list[str]:
        return sorted(set(self.pool_of.values()))


def targets_from_engine(state: EngineState) -> list[Target]:
    """Deployed pools are read from the engine's Ray metrics export, external pools from their server's /metrics."""
    by_url: dict[str, dict[str, str]] = defaultdict(dict)
    unknown = []
    for pool in state.pools:
        if not pool.deployed:
            url = pool.base_url.removesuffix("/v1") + "/metrics"
        elif state.metrics_url:
            url = state.metrics_url
        else:
            unknown.append(pool.name)
            continue
        by_url[url][pool.model_id] = pool.name
    if unknown:
        log.warning(
            "no server metrics for pool(s) %s: they run on the Ray cluster at %s, whose metrics export is not known",
            ", ".join(unknown), state.ray_address,
        )  # fmt: skip
    return [Target(url, pools) for url, pools in by_url.items()]


class ScrapeError(RuntimeError):
    """A target gave no exposition; the message says why."""


class Scraper:
    """Polls every target each `interval_s`, writes `pool_samples` rows to `sink`, keeps the latest hit ratios.

    A failing target never stops the others or the loop: its pools get scrape_up 0 and the next poll tries again.
    The reason is logged as a warning when it starts or changes, at debug level while it repeats.
    """

    def __init__(
        self,
        targets: Sequence[Target],
        sink: RowSink,
        *,
        interval_s: float = 5.0,
        timeout_s: float = 4.0,
        client: httpx.AsyncClient | None = None,
        faults: Faults | None = None,
    ) -> None:
        if interval_s <= 0 or timeout_s <= 0:
            raise ValueError("interval_s and timeout_s must be > 0")
        self.targets = list(targets)
        self.interval_s = interval_s
        self._sink = sink
        self._timeout = httpx.Timeout(timeout_s)
        self._client = client or httpx.AsyncClient()
        self._owns_client = client is None
        self._counters: dict[str, PrefixCacheCounters] = {}
        self._ratios: dict[str, float] = {}
        self._failing: dict[str, str] = {}  # url -> reason of its latest failure, while it fails
        # a scrape that takes longer than this since the last one ended is a hung loop
        self.stale_after_s = max(3 * interval_s, interval_s + 3 * timeout_s)
        self._store_error: str | None = None  # why the sink refused the latest scrape's rows
        self._ended: str | None = None  # why run() ended before it was stopped
        self._beat: tuple[float, datetime] | None = None  # (monotonic, UTC) when run() last finished a scrape
        self.faults = Faults() if faults is None else faults
        self.faults.probe(PART, self.fault, log)

    def hit_ratios(self) -> dict[str, float]:
        """Per pool, the server's prefix-cache hit ratio over the latest scrape interval in which it looked up
        prompt tokens (kept while the pool is idle); pools without one yet are absent."""
        return dict(self._ratios)

    async def scrape_once(self) -> list[PoolSample]:
        """Scrape every target once, write the samples (scrape_up and hit ratios included) and return them."""
        sampled_at = datetime.now(UTC)
        parts = await asyncio.gather(*(self._scrape(target) for target in self.targets))
        samples = [sample for part in parts for sample in part]
        samples += self._update_hit_ratios(samples)
        rows = [{"pool": s.pool, "sampled_at": sampled_at, "metric": s.metric, "value": s.value} for s in samples]
        if rows:
            self._sink.append(TABLE, rows)
        return samples

    async def run(self, stop: asyncio.Event) -> None:
        """Scrape every `interval_s` (start to start) until `stop` is set."""
        try:
            await self._loop(stop)
        except BaseException as exc:
            if not stop.is_set():
                cancelled = isinstance(exc, asyncio.CancelledError)
                self._ended = "was cancelled" if cancelled else f"{type(exc).__name__}: {exc}"
                self.faults.report(PART, self.fault(), log)
            raise
        finally:
            self._beat = None

    async def _loop(self, stop: asyncio.Event) -> None:
        next_at = time.monotonic()
        self._beat = (next_at, datetime.now(UTC))
        while not stop.is_set():
            try:
                await self.scrape_once()
                error = None
            except Exception as exc:  # scrapes do not raise; a sink that refuses rows must not end the loop either
                error = f"{type(exc).__name__}: {exc}"
                log.debug("server metrics: could not store the samples of a scrape", exc_info=True)
            if error != self._store_error:
                self._store_error = error
                self.faults.report(PART, self.fault(), log)
            self._beat = (time.monotonic(), datetime.now(UTC))
            next_at = max(next_at + self.interval_s, time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=next_at - time.monotonic())

    def fault(self, now: float | None = None) -> str | None:
        """Why the scraper does not work now (a monotonic `now`), or None; /healthz shows it."""
        if self._ended is not None:
            return f"the scrape loop stopped ({self._ended}); restart the collector"
        beat = self._beat
        if beat is not None and (time.monotonic() if now is None else now) - beat[0] > self.stale_after_s:
            return (f"no scrape has finished since {beat[1]:%Y-%m-%d %H:%M:%S} UTC (over {self.stale_after_s:g} s): "
                    "the scrape loop hangs")  # fmt: skip
        if self._store_error is not None:
            return f"the samples of the latest scrape could not be stored ({self._store_error})"
        return None

    async def _scrape(self, target: Target) -> list[PoolSample]:
        try:
            samples = await self._fetch(target)
        except ScrapeError as exc:
            self._note(target, str(exc))
            return [PoolSample(pool, SCRAPE_UP, 0.0) for pool in target.pools]
        self._note(target, None)
        return [*samples, *(PoolSample(pool, SCRAPE_UP, 1.0) for pool in target.pools)]

    async def _fetch(self, target: Target) -> list[PoolSample]:
        try:
            # uncompressed: on loopback gzip only costs CPU, on both sides (Ray's export is ~1.7 MB)
            headers = {"Accept": "text/plain", "Accept-Encoding": "identity"}
            response = await self._client.get(target.url, headers=headers, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise ScrapeError(f"{type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise ScrapeError(f"HTTP {response.status_code} {response.reason_phrase}")
        try:
            # in a worker thread: parsing a large export must not hold up the gateway's streams
            return await asyncio.to_thread(parse_server_metrics, response.text, target.pool_of)
        except ValueError as exc:
            raise ScrapeError(f"not a Prometheus text exposition ({exc})") from None

    def _note(self, target: Target, reason: str | None) -> None:
        before = self._failing.get(target.url)
        if reason is None:
            if before is not None:
                del self._failing[target.url]
                log.info("server metrics from %s are back", target.url)
            return
        self._failing[target.url] = reason
        level = logging.DEBUG if reason == before else logging.WARNING
        pools = ", ".join(target.pools)
        log.log(level, "server metrics from %s failed: %s (pools %s: scrape_up 0)", target.url, reason, pools)

    def _update_hit_ratios(self, samples: list[PoolSample]) -> list[PoolSample]:
        ratios = []
        for pool, after in prefix_cache_counters(samples).items():
            before = self._counters.get(pool)
            self._counters[pool] = after
            ratio = prefix_cache_hit_ratio(before, after) if before is not None else None
            if ratio is not None:
                self._ratios[pool] = ratio
                ratios.append(PoolSample(pool, HIT_RATIO, ratio))
        return ratios

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Scraper:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
