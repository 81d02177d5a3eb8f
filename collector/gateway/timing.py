"""Per-request latency from the monotonic timestamps of a streamed response.

Definitions are those of `vllm bench serve`:
- TTFT: from sending the request to the first chunk that carries a token (in a completions stream every
  chunk with a choice, even one whose text is "": special tokens such as EOS decode to nothing);
- ITL: the gaps between consecutive token chunks;
- e2e: from sending the request to the last token chunk;
- TPOT: (e2e - TTFT) / (completion_tokens - 1), undefined for fewer than two tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    return StreamTiming(
        ttft_s=ttft,
        tpot_s=tpot,
        itl_p50_s=float(np.median(gaps)) if gaps.size else None,
        itl_max_s=float(gaps.max()) if gaps.size else None,
        e2e_s=e2e,
    )
