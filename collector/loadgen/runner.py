"""Load generator: streamed completions at a request rate, against the pools or the gateways (base URLs: request
i goes to the i-th URL modulo their number, so N gateways get a share of 1/N each).

Requests follow an arrival schedule (collector/loadgen/arrivals.py), go to one or more model ids in smooth weighted
round-robin (each model gets the work items in the same order, so pools are compared on the same prompts),
wait for a concurrency slot, and are timed on the client as `vllm bench serve` times them
(collector/gateway/timing.py): every SSE chunk that carries a choice is stamped with perf_counter_ns once parsed,
including chunks whose text is empty (special tokens such as EOS decode to ""; with ignore_eos they can be
most of the stream, and leaving them out would end e2e early and bias TPOT). Token counts come from the
final usage chunk (stream_options.include_usage), cached prompt tokens from its
usage.prompt_tokens_details.cached_tokens (vLLM sends them there in streamed responses too).

Requests carry X-Inferwatch-Source: load, X-Inferwatch-Run and x-request-id, so the gateway stores them
under the run; the gateway's x-inferwatch-pool reply header names the pool, else it is the part of the model
id after '@'.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import numpy as np
from tqdm import tqdm

from collector.client.credentials import client_headers
from collector.gateway.sse import DONE, read_data
from collector.gateway.timing import NS, stream_timing
from collector.loadgen.arrivals import arrival_gaps, arrival_offsets, check_rate
from collector.loadgen.workloads import WorkItem
from collector.vocabulary import POOL_HEADER, REQUEST_ID_HEADER, RUN_HEADER, SOURCE_HEADER, Source, Status

_parse = json.JSONDecoder().decode  # json.loads minus its per-call checks: this runs once per token
ERROR_CHARS = 500  # of an upstream error body kept in a result


@dataclass(frozen=True)
class LoadConfig:
    base_url: str  # OpenAI base URL, e.g. http://127.0.0.1:8000/v1 (a bare host:port gets /v1)
    models: tuple[str, ...]
    weights: tuple[float, ...] | None = None  # one per model; None: plain round-robin
    num_requests: int | None = None  # None with no duration: each work item once
    duration_s: float | None = None  # stop sending after this long (in-flight requests finish)
    rate: float = math.inf  # requests/s; inf: all at once (bounded by max_concurrency)
    burstiness: float = 1.0  # 1: Poisson; gamma shape otherwise, as vllm bench serve --burstiness
    max_concurrency: int | None = None
    ignore_eos: bool = False  # generate exactly max_tokens, as vllm bench serve --ignore-eos
    temperature: float | None = None  # None: the server's default
    seed: int = 0
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    timeout_s: float = 600.0  # per request, connect to last byte
    progress: bool | None = None  # None: a progress bar when stderr is a terminal
    api_key: str | None = field(default=None, repr=False)  # a client API key: never in a repr or a log
    spread_over: tuple[str, ...] = ()  # more base URLs (other gateways): request i goes to base_urls[i % n]

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("models: give at least one model id")
        if self.weights is not None and (len(self.weights) != len(self.models) or not all(w > 0 for w in self.weights)):
            raise ValueError(f"weights: need one positive weight per model ({len(self.models)}), got {self.weights}")
        if self.num_requests is not None and self.num_requests < 1:
            raise ValueError(f"num_requests must be >= 1, got {self.num_requests}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ValueError(f"duration_s must be > 0, got {self.duration_s}")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        check_rate(self.rate, self.burstiness)
        if math.isinf(self.rate) and self.duration_s is not None and self.max_concurrency is None:
            raise ValueError("rate: an unbounded rate over a duration needs max_concurrency")
        for url in self.base_urls:
            if urlsplit(url).scheme not in ("http", "https"):
                raise ValueError(f"base_url must be an http(s) URL, got {url!r}")

    @property
    def base_urls(self) -> tuple[str, ...]:
        return (self.base_url, *self.spread_over)

    @property
    def completions_url(self) -> str:
        return completions_url(self.base_url)

    @property
    def completions_urls(self) -> tuple[str, ...]:
        return tuple(completions_url(url) for url in self.base_urls)


def completions_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    return (base if urlsplit(base).path else base + "/v1") + "/completions"


@dataclass(frozen=True)
class RequestResult:
    id: str
    model: str
    pool: str
    status: Status
    sent_s: float  # when it was sent, from the start of the run
    e2e_s: float  # to the last token (or to the failure)
    ttft_s: float | None = None
    tpot_s: float | None = None
    itl_s: tuple[float, ...] = ()  # gaps between the chunks that carried tokens
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    http_status: int | None = None
    error: str | None = None
    text: str = ""
    expected: str | None = None  # from the work item, for grading
    url: str = ""  # the completions URL it was sent to (which gateway)


@dataclass(frozen=True)
class LoadResult:
    run_id: str
    base_url: str
    duration_s: float  # from the first dispatch to the last response
    requests: tuple[RequestResult, ...]


def weighted_round_robin(models: Sequence[str], weights: Sequence[float] | None = None) -> Iterator[str]:
    """Smooth weighted round-robin (as nginx): exact shares over every cycle, evenly interleaved."""
    shares = list(weights) if weights is not None else [1.0] * len(models)
    total = sum(shares)
    current = [0.0] * len(models)
    while True:
        for i, share in enumerate(shares):
            current[i] += share
        best = max(range(len(models)), key=current.__getitem__)
        current[best] -= total
        yield models[best]


def pool_of(model: str) -> str:
    return model.split("@", 1)[1] if "@" in model else model


def error_message(body: bytes | str | dict[str, Any]) -> str:
    """The message of an OpenAI-style ({"error": {"message"}}) or FastAPI-style ({"detail"}) error body."""
    data: Any = body
    if not isinstance(body, dict):
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        try:
            data = json.loads(text)
        except ValueError:
            return text.strip()[:ERROR_CHARS] or "(empty body)"
    if isinstance(data, dict):
        error = data.get("error")
        found = error.get("message") if isinstance(error, dict) else error
        found = found or data.get("detail") or data.get("message")
        if found:
            return str(found)[:ERROR_CHARS]
    return json.dumps(data)[:ERROR_CHARS]


class _Runner:
    """One run's shared state: the session, the fixed headers, the progress bar."""

    def __init__(self, config: LoadConfig, session: aiohttp.ClientSession, bar: tqdm) -> None:
        self.config = config
        self.session = session
        self.bar = bar
        self.headers = {
            "Content-Type": "application/json",
            SOURCE_HEADER: Source.load.value,
            RUN_HEADER: config.run_id,
        }
        # the run's key, else the client API key of the environment (INFERWATCH_API_KEY), else none
        self.headers |= {"Authorization": f"Bearer {config.api_key}"} if config.api_key else client_headers("client")
        self.start = time.perf_counter_ns()

    def body(self, model: str, item: WorkItem) -> bytes:
        payload: dict[str, Any] = {
            "model": model,
            "prompt": item.prompt,
            "max_tokens": item.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.config.ignore_eos:
            payload["ignore_eos"] = True
        if self.config.temperature is not None:
            payload["temperature"] = self.config.temperature
        return json.dumps(payload).encode()

    async def send(self, request_id: str, model: str, item: WorkItem, url: str) -> RequestResult:
        body = self.body(model, item)
        headers = {**self.headers, REQUEST_ID_HEADER: request_id}
        stream = _Stream()
        pool, http_status = pool_of(model), None
        started = time.perf_counter_ns()
        try:
            async with self.session.post(url, data=body, headers=headers) as response:
                http_status = response.status
                pool = response.headers.get(POOL_HEADER) or pool
                if response.status != 200:
                    stream.error = f"HTTP {response.status}: {error_message(await response.read())}"
                else:
                    await stream.read(response.content)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:  # named with the URL: which gateway failed
            stream.error = f"{url}: {type(exc).__name__}" + (f": {exc}" if str(exc) else "")
        except ValueError as exc:  # an event that is not JSON
            stream.error = f"malformed stream: {exc}"
        ended = time.perf_counter_ns()
        if stream.error is None and not stream.done:
            stream.error = "the stream ended before [DONE]"
        elif stream.error is None and not stream.stamps:
            stream.error = "the stream ended without a token"
        usage, stamps = stream.usage, stream.stamps
        completion_tokens = usage.get("completion_tokens")
        timing = stream_timing(started, stamps, ended, completion_tokens or 0)
        details = usage.get("prompt_tokens_details") or {}
        self.bar.update(1)
        return RequestResult(
            id=request_id, model=model, pool=pool, status=Status.ok if stream.error is None else Status.error,
            sent_s=(started - self.start) * NS, e2e_s=timing.e2e_s, ttft_s=timing.ttft_s, tpot_s=timing.tpot_s,
            itl_s=tuple((b - a) * NS for a, b in itertools.pairwise(stamps)),
            prompt_tokens=usage.get("prompt_tokens"), cached_tokens=details.get("cached_tokens"),
            completion_tokens=completion_tokens, finish_reason=stream.finish, http_status=http_status,
            error=stream.error, text="".join(stream.texts), expected=item.expected, url=url,
        )  # fmt: skip


class _Stream:
    """What one SSE response said: a stamp and the text of every chunk that carried a choice, the usage."""

    def __init__(self) -> None:
        self.stamps: list[int] = []
        self.texts: list[str] = []
        self.usage: dict[str, Any] = {}
        self.finish: str | None = None
        self.error: str | None = None
        self.done = False

    async def read(self, content: aiohttp.StreamReader) -> None:
        """Reads whatever has arrived at once (fewer awaits than a readline per line)."""
        await read_data(content.iter_any(), self.event)

    def event(self, data: bytes) -> bool:
        """One `data:` payload; True once the stream is over ([DONE] or an error event)."""
        if data.strip() == DONE:
            self.done = True
            return True
        chunk = _parse(data.decode())
        if choices := chunk.get("choices"):
            # stamped once parsed, as vllm bench serve does: chunks that arrived in one read (the server
            # often flushes several tokens at once) are apart by the time it takes to parse them
            self.stamps.append(time.perf_counter_ns())
            self.texts.append(choices[0].get("text") or "")
            self.finish = choices[0].get("finish_reason") or self.finish
        if usage := chunk.get("usage"):
            self.usage = usage
        if "error" in chunk:
            self.error = f"stream error: {error_message(chunk)}"
            return True
        return False


def _schedule(config: LoadConfig, count: int | None) -> Iterable[float]:
    """Send times from the start: fitted to count/rate for a counted run (as vllm bench), open-ended else."""
    rng = np.random.default_rng(config.seed)
    if count is not None and config.duration_s is None:
        offsets: list[float] = arrival_offsets(count, config.rate, burstiness=config.burstiness, rng=rng).tolist()
        return offsets
    return itertools.accumulate(arrival_gaps(config.rate, burstiness=config.burstiness, rng=rng))


async def run_load_async(config: LoadConfig, items: Sequence[WorkItem]) -> LoadResult:
    """Send the work items (cycled) on the schedule; every failure becomes an error result, never a raise."""
    if not items:
        raise ValueError("items: the workload is empty")
    count = config.num_requests if config.num_requests or config.duration_s else len(items)
    slots = asyncio.Semaphore(config.max_concurrency) if config.max_concurrency else None
    connector = aiohttp.TCPConnector(
        limit=config.max_concurrency or 0, limit_per_host=config.max_concurrency or 0, keepalive_timeout=60
    )
    progress = sys.stderr.isatty() if config.progress is None else config.progress
    models = weighted_round_robin(config.models, config.weights)
    tasks: list[asyncio.Task[RequestResult]] = []
    sent_to = dict.fromkeys(config.models, 0)
    urls = config.completions_urls

    async def one(runner: _Runner, index: int, model: str, item: WorkItem) -> RequestResult:
        try:
            return await runner.send(f"{config.run_id}-{index}", model, item, urls[index % len(urls)])
        finally:
            if slots is not None:
                slots.release()

    timeout = aiohttp.ClientTimeout(total=config.timeout_s)
    with tqdm(total=count, disable=not progress, unit="req", desc=f"load {config.run_id}") as bar:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            runner = _Runner(config, session, bar)
            start = time.perf_counter()
            deadline = start + config.duration_s if config.duration_s else math.inf
            for index, offset in enumerate(_schedule(config, count)):
                if (count is not None and index >= count) or start + offset >= deadline:
                    break
                delay = start + offset - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if slots is not None:
                    await slots.acquire()
                    if time.perf_counter() >= deadline:
                        slots.release()
                        break
                model = next(models)
                item = items[sent_to[model] % len(items)]  # every model gets the same sequence of items
                sent_to[model] += 1
                tasks.append(asyncio.create_task(one(runner, index, model, item)))
            results = await asyncio.gather(*tasks)
            duration = time.perf_counter() - start
    return LoadResult(config.run_id, config.base_url, duration, tuple(results))


def run_load(config: LoadConfig, items: Sequence[WorkItem]) -> LoadResult:
    return asyncio.run(run_load_async(config, items))


def _ms(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) * 1000 if values else None


def summary_rows(result: LoadResult) -> list[dict[str, object]]:
    """Per pool, in order of first appearance: latency percentiles (ms) over the ok requests, throughput
    over the run's duration, and the share of prompt tokens served from the prefix cache."""
    rows: list[dict[str, object]] = []
    for pool in dict.fromkeys(r.pool for r in result.requests):
        requests = [r for r in result.requests if r.pool == pool]
        ok = [r for r in requests if r.status is Status.ok]
        ttft = [r.ttft_s for r in ok if r.ttft_s is not None]
        tpot = [r.tpot_s for r in ok if r.tpot_s is not None]
        itl = [gap for r in ok for gap in r.itl_s]
        prompt = sum(r.prompt_tokens or 0 for r in ok)
        rows.append({
            "pool": pool,
            "requests": len(requests),
            "errors": len(requests) - len(ok),
            "ttft_p50_ms": _ms(ttft, 50), "ttft_p90_ms": _ms(ttft, 90), "ttft_p99_ms": _ms(ttft, 99),
            "tpot_p50_ms": _ms(tpot, 50), "tpot_p90_ms": _ms(tpot, 90), "tpot_p99_ms": _ms(tpot, 99),
            "itl_p50_ms": _ms(itl, 50),
            "e2e_p50_ms": _ms([r.e2e_s for r in ok], 50),
            "out_tok_s": sum(r.completion_tokens or 0 for r in ok) / result.duration_s,
            "req_s": len(ok) / result.duration_s,
            "cache_hit": sum(r.cached_tokens or 0 for r in ok) / prompt if prompt else None,
        })  # fmt: skip
    return rows


def error_rows(result: LoadResult) -> list[dict[str, object]]:
    """Distinct errors per pool with how often each occurred."""
    counts: dict[tuple[str, str], int] = {}
    for r in result.requests:
        if r.status is not Status.ok:
            key = (r.pool, r.error or "")
            counts[key] = counts.get(key, 0) + 1
    return [{"pool": pool, "count": n, "error": error} for (pool, error), n in counts.items()]


def gateway_rows(result: LoadResult) -> list[dict[str, object]]:
    """Per completions URL (gateway), in order of first use: requests sent there and how many failed."""
    urls = list(dict.fromkeys(r.url for r in result.requests))
    return [
        {"gateway": url, "requests": sum(r.url == url for r in result.requests),
         "errors": sum(r.url == url and r.status is not Status.ok for r in result.requests)}
        for url in urls
    ]  # fmt: skip
