"""Latency and cost over time: per pool, TTFT and TPOT as a p50 line in a p50-p99 band, and $/1M tokens."""

from __future__ import annotations

from datetime import datetime, timedelta

import altair as alt
import pandas as pd
import streamlit as st

from dashboards import data
from dashboards.series import bucket_seconds, cost_frame, percentile_frame
from dashboards.ui import fetch, no_requests, window

st.title("Latency and cost over time")
name, seconds = window()
end = data.now()
if seconds is None:
    first, last = fetch("requests", "request_span")
    if first is None:
        no_requests(name)
    start, end = first, last + timedelta(microseconds=1)
else:
    start = end - timedelta(seconds=seconds)
bucket_s = bucket_seconds((end - start).total_seconds())
series = fetch("requests", "latency_series", start, end, bucket_s)
if series.num_rows == 0:
    no_requests(name)
st.caption(f"{start:%Y-%m-%d %H:%M:%S} – {end:%Y-%m-%d %H:%M:%S} UTC in buckets of {bucket_s:g} s; the line is "
           "the median of the successful requests that started in the bucket, the band reaches p99.")  # fmt: skip


def band_chart(frame: pd.DataFrame, title: str, start: datetime, end: datetime) -> alt.LayerChart:
    x = alt.X("bucket:T", title=None, scale=alt.Scale(domain=[start.isoformat(), end.isoformat()]))
    colour = alt.Color("pool:N", title="pool")
    base = alt.Chart(frame, title=title).encode(x=x, color=colour)
    band = base.mark_area(opacity=0.2).encode(y=alt.Y("p50:Q", title="ms"), y2="p99:Q")
    line = base.mark_line(point=True).encode(
        y="p50:Q", tooltip=["pool", "revision", "bucket:T", alt.Tooltip("p50:Q", format=".1f"),
                            alt.Tooltip("p90:Q", format=".1f"), alt.Tooltip("p99:Q", format=".1f")],
    )  # fmt: skip
    return alt.LayerChart(layer=[band, line])


latency = percentile_frame(series)
for metric in ("TTFT", "TPOT"):
    st.altair_chart(band_chart(latency[latency.metric == metric], f"{metric} p50 (band to p99)", start, end))

cost = cost_frame(series, fetch("requests", "prices"), bucket_s, start, end)
if cost.empty:
    st.info("No cost per token: the store has no price for these pools (the collector records them at start).")
else:
    chart = alt.Chart(cost, title="$ per 1M tokens (prompt + output)").mark_line(point=True).encode(
        x=alt.X("bucket:T", title=None), y=alt.Y("$/1M tokens:Q", title="$/1M tokens"), color="pool:N",
        tooltip=["pool", "revision", "bucket:T", alt.Tooltip("$/1M tokens:Q", format=".4g"),
                 alt.Tooltip("$/1M output tokens:Q", format=".4g")],
    )  # fmt: skip
    st.altair_chart(chart)
with st.expander("The numbers"):
    st.dataframe(latency, hide_index=True)
    st.dataframe(cost, hide_index=True)
