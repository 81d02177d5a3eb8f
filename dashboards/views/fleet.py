"""Fleet: per pool and revision over the chosen window, with the change against the window before it."""

from __future__ import annotations

import streamlit as st

from dashboards import data
from dashboards.fleet_figures import FIGURES, change_colour, changes, pool_figures, select, show, show_change, table
from dashboards.markdown import md
from dashboards.queries import FleetWindows
from dashboards.ui import fetch, no_requests, window

st.title("Fleet")
name, seconds = window()
windows: FleetWindows = fetch("requests", "fleet_windows", seconds, data.now())
if not windows.now:
    no_requests(name)

now, before = [pool_figures(r) for r in windows.now], [pool_figures(r) for r in windows.before]
left, right = st.columns(2)
pools = left.multiselect("Pools", sorted({f.pool for f in now}), placeholder="all pools")
revisions = right.multiselect("Revisions", sorted({f.revision or "" for f in now}), placeholder="all revisions")
shown = select(now, pools or None, [r or None for r in revisions] or None)
delta = changes(shown, before)
if seconds is None:
    st.caption("Everything in the store; each pool's cost over its own span of requests. No previous window.")
else:
    st.caption(f"The {name}; changes against the {name.removeprefix('last ')} before.")

for f in shown:
    st.subheader(f"{md(f.pool)} · {md(f.hardware or 'unknown hardware')} · {md(f.revision or 'no revision')}")
    st.caption(f"{f.requests} request{'' if f.requests == 1 else 's'}")
    for column, figure in zip([*st.columns(5), *st.columns(5)], FIGURES, strict=True):
        change = delta[f.key][figure.key]
        value = show(figure, f.values[figure.key])
        column.metric(figure.label, value, show_change(figure, change), delta_color=change_colour(figure, change))

st.subheader("All pools")
st.dataframe(table(shown), hide_index=True)
st.caption("Latency percentiles over the successful requests; error rate over all; $/1M tokens: the pool's cost "
           "over the window (price × replicas × time) per million prompt + output tokens; cache hit: cached / "
           "prompt tokens of the successful requests; queue p50: the engine's own queue time (vLLM per-request "
           "metrics); TPOT: the engine's where a pool coalesces its stream; goodput: the share of requests within "
           "data/slo.yaml, errors counted as misses (docs/METRICS.md, Figures).")  # fmt: skip
