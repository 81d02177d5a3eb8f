"""Evals: per pool accuracy with its interval, and the paired difference from the reference, for one run."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboards.data import HINTS
from dashboards.markdown import md, md_frame
from dashboards.ui import fetch
from dashboards.verdicts import eval_table, interval_frame, latest_runs

st.title("Evals")
rows = fetch("evals", "eval_runs").to_pylist()
if not rows:
    st.info(HINTS["evals"])
    st.stop()
latest = latest_runs(rows)
suite = st.selectbox("Suite", list(latest))
runs = list(dict.fromkeys(r["run_id"] for r in rows if r["suite"] == suite))  # newest first
run_id = st.selectbox("Run", runs, index=runs.index(latest[suite]))
run = [r for r in rows if r["suite"] == suite and r["run_id"] == run_id]
reference = run[0]["reference_pool"]
st.caption(f"Run {md(run_id)} of {md(suite)} ({md(run[0]['origin'])}), {run[0]['recorded_at']:%Y-%m-%d %H:%M:%S} "
           f"UTC, against {md(reference)}: accuracy with its 95% Wilson interval; the difference from {md(reference)} "
           "on the items both "
           "scored with Newcombe's interval and McNemar's p (docs/EVALS.md).")  # fmt: skip


def interval_chart(frame: pd.DataFrame, title: str, axis: str, zero: bool) -> alt.LayerChart:
    base = alt.Chart(frame, title=title).encode(y=alt.Y("pool:N", title=None))
    rule = base.mark_rule(strokeWidth=2).encode(x=alt.X("low:Q", title=axis), x2="high:Q")
    point = base.mark_point(filled=True, size=80).encode(
        x="value:Q", color=alt.Color("verdict:N", title="verdict"),
        tooltip=["pool", "verdict", alt.Tooltip("value:Q", format=".1f"), alt.Tooltip("low:Q", format=".1f"),
                 alt.Tooltip("high:Q", format=".1f")],
    )  # fmt: skip
    layers = [rule, point]
    if zero:
        layers.append(alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(strokeDash=[4, 4]).encode(x="x:Q"))
    return alt.LayerChart(layer=layers)


left, right = st.columns(2)
left.altair_chart(interval_chart(interval_frame(run, "accuracy", "ci_low", "ci_high"), "Accuracy", "%", False))
deltas = interval_frame([r for r in run if r["pool"] != reference], "delta", "delta_low", "delta_high")
right.altair_chart(interval_chart(deltas, f"Paired difference from {reference}", "points", True))
st.table(md_frame(eval_table(run)), hide_index=True)
