"""The Drift page's computations: verdicts as a coloured pool x metric grid, and for one probe where a pool's
greedy output first leaves the reference's, with the top-k logprobs there. Pure: store rows in, frames out.

A pool's greedy output at any concurrency is compared with the reference's at its lowest concurrency, as the
canary does (canary/analysis.py greedy, canary.drift_stats.compare_greedy).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from canary.drift_stats import compare_greedy
from collector.vocabulary import DriftVerdict
from dashboards.tokens import label

# green, red, grey
VERDICT_COLOURS = {DriftVerdict.ok: "#2e7d32", DriftVerdict.drift: "#c62828", DriftVerdict.nodata: "#9e9e9e"}
GREEDY = "greedy@"


def heatmap(latest: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """pool, metric, verdict, value and the verdict's colour (collector.fleet.report.query_latest_drift rows)."""
    return pd.DataFrame(
        [{"pool": r["pool"], "metric": r["metric"], "verdict": r["verdict"], "value": r["value"],
          "colour": VERDICT_COLOURS.get(r["verdict"], VERDICT_COLOURS[DriftVerdict.nodata])} for r in latest],
        columns=["pool", "metric", "verdict", "value", "colour"],
    )  # fmt: skip


def verdict_grid(cells: pd.DataFrame) -> pd.DataFrame:
    """Pools as rows, metrics as columns, verdicts in the cells ("" where a pool lacks a metric)."""
    if cells.empty:
        return pd.DataFrame()
    return cells.pivot(index="pool", columns="metric", values="verdict").fillna("").rename_axis(None, axis=1)


@dataclass(frozen=True)
class Output:
    pool: str
    probe_id: str
    mode: str  # greedy@<concurrency> or sampled
    seed: int | None
    text: str
    tokens: tuple[str, ...]
    top: tuple[dict[str, float], ...]  # the pool's own top logprobs at each generated position

    @property
    def concurrency(self) -> int | None:
        return int(self.mode.removeprefix(GREEDY)) if self.mode.startswith(GREEDY) else None


def outputs(rows: Sequence[Mapping[str, Any]]) -> list[Output]:
    """Probe rows (dashboards/queries.py probe_outputs) as outputs."""
    found = []
    for r in rows:
        generated = json.loads(r["tokens_json"])
        top = json.loads(r["top_logprobs_json"]) if r["top_logprobs_json"] else []
        found.append(Output(r["pool"], r["probe_id"], r["mode"], r["seed"], generated.get("text", ""),
                            tuple(generated.get("tokens", ())), tuple(top)))  # fmt: skip
    return found


@dataclass(frozen=True)
class Divergence:
    reference: Output
    pool: Output
    first: int | None  # index of the first token that differs; None: the same output
    hard: bool  # the pool's token there is not among the reference's top 5


def divergences(reference: Sequence[Output], pool: Sequence[Output]) -> list[Divergence]:
    """Each greedy output of the pool against the reference's greedy output of the same probe at the
    reference's lowest concurrency; hard mismatches first, then other divergences, then the agreeing ones."""
    base: dict[str, Output] = {}
    for out in reference:
        c = out.concurrency
        if c is not None and (out.probe_id not in base or c < (base[out.probe_id].concurrency or 0)):
            base[out.probe_id] = out
    found = []
    for out in pool:
        ref = base.get(out.probe_id)
        if out.concurrency is None or ref is None:
            continue
        cmp = compare_greedy(ref.tokens, ref.top, out.tokens)
        found.append(Divergence(ref, out, cmp.first_divergence, cmp.hard_mismatch))
    return sorted(found, key=lambda d: (not d.hard, d.first is None, d.pool.probe_id, d.pool.concurrency or 0))


def _at(tokens: Sequence[str], i: int) -> str | None:
    return tokens[i] if i < len(tokens) else None


def side_by_side(d: Divergence, vocab: Mapping[str, str]) -> pd.DataFrame:
    """position, the reference's token, the pool's token, and a mark at the first divergence."""
    n = max(len(d.reference.tokens), len(d.pool.tokens))
    return pd.DataFrame(
        [{"position": i, "reference": label(_at(d.reference.tokens, i), vocab),
          "pool": label(_at(d.pool.tokens, i), vocab), "": "◀ first divergence" if i == d.first else ""}
         for i in range(n)],
        columns=["position", "reference", "pool", ""],
    )  # fmt: skip


def top_k_at(output: Output, position: int, vocab: Mapping[str, str], k: int = 5) -> pd.DataFrame:
    """The k most likely tokens `output`'s pool reported at `position`, with logprob and probability."""
    top = output.top[position] if position < len(output.top) else {}
    best = sorted(top.items(), key=lambda kv: kv[1], reverse=True)[:k]
    return pd.DataFrame(
        [{"token": label(t, vocab), "logprob": lp, "p": math.exp(lp)} for t, lp in best],
        columns=["token", "logprob", "p"],
    )


def evidence(evidence_json: str | None) -> dict[str, Any]:
    """The canary's evidence of a verdict (mode, critical, probe, evidence), {} when none was stored."""
    if not evidence_json:
        return {}
    found: dict[str, Any] = json.loads(evidence_json)
    return found
