"""Per-request latency from the monotonic timestamps of a streamed response.

Definitions are those of `vllm bench serve`:
- TTFT: from sending the request to the first chunk that carries a token (in a completions stream every
  chunk with a choice, even one whose text is "": special tokens such as EOS decode to nothing);
- ITL: the gaps between consecutive token chunks;
- e2e: from sending the request to the last token chunk;
- TPOT: (e2e - TTFT) / (completion_tokens - 1), undefined for fewer than two tokens.

`vllm bench serve` sends n = 1. With n > 1 the choices' chunks interleave in one stream, and the gaps between
chunks of different choices are not the time per token of any of them. Per choice i (choices_timing):
- its tokens: its share of completion_tokens in proportion to its token chunks (exactly its chunk count when,
  as vLLM streams by default, every chunk carries one token);
- TPOT_i = (last_i - first_i) / (tokens_i - 1), undefined for fewer than two tokens;
and for the request: TPOT = the mean of the defined TPOT_i; ITL = the gaps between consecutive chunks of
the same choice (p50 and max over all choices); TTFT = the first token of any choice; e2e = the last token
of any choice. With one choice this is exactly stream_timing.

Coalesced streams: when several token events arrived in one read (equal stamps; Ray Serve LLM's stream batching
delivers a short answer in one chunk), the gaps between them are the pool's batching, not the time between
tokens, so itl_p50_s and itl_max_s are None (not a measurement) unless every token event arrived on its own.
tpot_s is kept: the figures module (collector/fleet/figures.py) judges TPOT on the engine's figure instead
(requests.engine_tpot_s: vLLM `mean_itl_ms` = decode interval / (completion_tokens - 1)) where the row's
token_events exceed its chunk_arrivals.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

NS = 1e-9


@dataclass(frozen=True)
class StreamTiming:
    ttft_s: float | None
    tpot_s: float | None
    itl_p50_s: float | None
    itl_max_s: float | None
    e2e_s: float


def stream_timing(
    started_ns: int, content_chunks_ns: Sequence[int], ended_ns: int, completion_tokens: int
) -> StreamTiming:
    """Timing of one request; with no content chunk only the end-to-end time is known."""
    if not content_chunks_ns:
        return StreamTiming(None, None, None, None, (ended_ns - started_ns) * NS)
    chunks = np.asarray(content_chunks_ns, dtype=np.int64)
    if np.any(np.diff(chunks) < 0) or chunks[0] < started_ns:
        raise ValueError("chunk timestamps must be monotonic and after the request started")
    ttft = float(chunks[0] - started_ns) * NS
    e2e = float(chunks[-1] - started_ns) * NS
    gaps = np.diff(chunks) * NS
    tpot = (e2e - ttft) / (completion_tokens - 1) if completion_tokens > 1 else None
    itl_p50, itl_max = _itl(gaps)
    return StreamTiming(ttft_s=ttft, tpot_s=tpot, itl_p50_s=itl_p50, itl_max_s=itl_max, e2e_s=e2e)


def _itl(gaps: np.ndarray) -> tuple[float | None, float | None]:
    """The median and largest gap; (None, None) with no gap or when a gap is 0 (a coalesced stream)."""
    if not gaps.size or not gaps.all():
        return None, None
    return float(np.median(gaps)), float(gaps.max())


def choices_timing(
    started_ns: int, choices_ns: Collection[Sequence[int]], ended_ns: int, completion_tokens: int
) -> StreamTiming:
    """Timing of a request with several choices (n > 1), from each choice's token chunks (the module docstring)."""
    chunks = [np.asarray(c, dtype=np.int64) for c in choices_ns if len(c)]
    if len(chunks) <= 1:
        return stream_timing(started_ns, chunks[0].tolist() if chunks else [], ended_ns, completion_tokens)
    if any(np.any(np.diff(c) < 0) or c[0] < started_ns for c in chunks):
        raise ValueError("chunk timestamps must be monotonic and after the request started")
    events = sum(c.size for c in chunks)
    tpots = []
    for choice in chunks:
        tokens = completion_tokens * choice.size / events
        if tokens > 1:
            tpots.append(float(choice[-1] - choice[0]) * NS / (tokens - 1))
    itl_p50, itl_max = _itl(np.concatenate([np.diff(c) for c in chunks]) * NS)
    return StreamTiming(
        ttft_s=float(min(c[0] for c in chunks) - started_ns) * NS,
        tpot_s=float(np.mean(tpots)) if tpots else None,
        itl_p50_s=itl_p50,
        itl_max_s=itl_max,
        e2e_s=float(max(c[-1] for c in chunks) - started_ns) * NS,
    )
