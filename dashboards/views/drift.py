"""Drift: the latest canary verdict of every pool and metric, and one probe's greedy output beside the
reference's, down to the first token where they part and what each side thought likely there."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from collector.vocabulary import DriftVerdict
from dashboards.drift_view import (
    VERDICT_COLOURS,
    divergences,
    evidence,
    heatmap,
    outputs,
    side_by_side,
    top_k_at,
    verdict_grid,
)
from dashboards.markdown import md, md_frame
from dashboards.tokens import vocabulary
from dashboards.ui import fetch

st.title("Drift")
cells = heatmap(fetch("drift", "latest_drift"))
if cells.empty:
    st.info("No canary run in the store yet: `inferwatch canary run --reference ref`.")
    st.stop()

st.caption("Each pool against the reference, per metric, as its latest canary run judged it (docs/CANARY.md).")
scale = alt.Scale(domain=list(VERDICT_COLOURS), range=list(VERDICT_COLOURS.values()))
grid = (
    alt.Chart(cells)
    .properties(height=alt.Step(36))
    .encode(x=alt.X("metric:N", title=None), y=alt.Y("pool:N", title=None))
)
chart = grid.mark_rect().encode(
    color=alt.Color("verdict:N", scale=scale, title="verdict"),
    tooltip=["pool", "metric", "verdict", alt.Tooltip("value:Q", format=".4g")],
) + grid.mark_text(color="white").encode(text="verdict:N")
st.altair_chart(chart)
st.dataframe(
    verdict_grid(cells).style.map(lambda v: f"background-color: {VERDICT_COLOURS[v]}; color: white" if v else ""),
)

rows = pd.DataFrame(fetch("drift", "drift_rows").to_pylist())
drifting = set(cells[cells.verdict == DriftVerdict.drift].pool)
pool = st.selectbox("Pool", sorted(cells.pool.unique(), key=lambda p: (p not in drifting, p)))
latest = rows[rows.pool == pool]
run_id = latest.iloc[0].run_id
verdicts = latest[latest.run_id == run_id]
st.subheader(f"{md(pool)} in canary run {md(run_id)}")
verdict_rows = [
    {
        "metric": r.metric,
        "value": r.value,
        "band": r.band_high,
        "p": r.p_value,
        "verdict": r.verdict,
        "evidence": str(evidence(r.evidence_json).get("evidence", "")),
    }
    for r in verdicts.itertuples()
]
st.table(md_frame(pd.DataFrame(verdict_rows)), hide_index=True)  # fmt: skip

st.subheader("Probe drill-down")
probes = fetch("drift", "probe_outputs", run_id, pool).to_pylist()
reference = probes[0]["reference_pool"] if probes else None
found = divergences(outputs([p for p in probes if p["pool"] == reference]),
                    outputs([p for p in probes if p["pool"] == pool != reference]))  # fmt: skip
if not found:
    st.info(
        f"No greedy outputs of {md(pool)} and its reference in run {md(run_id)}: nothing to compare token by token."
    )
    st.stop()


def describe(i: int) -> str:
    d = found[i]
    where = "same output" if d.first is None else f"first divergence at token {d.first}"
    return f"{d.pool.probe_id} at concurrency {d.pool.concurrency}: {where}{' (hard mismatch)' if d.hard else ''}"


d = found[st.selectbox(f"Probe ({sum(d.first is not None for d in found)} of {len(found)} outputs diverge)",
                       range(len(found)), format_func=describe)]  # fmt: skip
models = fetch("drift", "model_paths")
vocab = vocabulary(models.get(pool) or models.get(reference or "", ""))
first = "–" if d.first is None else str(d.first)
st.metric("First divergence (token index)", first, "hard mismatch" if d.hard else None, delta_color="inverse")
left, right = st.columns(2)
left.markdown(f"**{md(reference)}** (reference, concurrency {d.reference.concurrency})")
left.code(d.reference.text or "(empty)", language=None)
right.markdown(f"**{md(pool)}** (concurrency {d.pool.concurrency})")
right.code(d.pool.text or "(empty)", language=None)
st.dataframe(side_by_side(d, vocab), hide_index=True)
if d.first is not None:
    st.markdown(f"Top-5 logprobs at token {d.first}, as each side reported them")
    left, right = st.columns(2)
    left.table(md_frame(top_k_at(d.reference, d.first, vocab)), hide_index=True)
    right.table(md_frame(top_k_at(d.pool, d.first, vocab)), hide_index=True)
