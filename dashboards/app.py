"""The inferwatch dashboard: `inferwatch dashboard` runs `streamlit run dashboards/app.py` on the store."""

from __future__ import annotations

import streamlit as st

from dashboards.data import Unavailable, source
from dashboards.ui import window_picker

st.set_page_config(page_title="inferwatch", page_icon=":material/monitoring:", layout="wide")
navigation = st.navigation(
    [
        st.Page("views/fleet.py", title="Fleet", icon=":material/dashboard:", default=True),
        st.Page(
            "views/latency_cost.py", title="Latency and cost", icon=":material/timeline:", url_path="latency-and-cost"
        ),
        st.Page("views/drift.py", title="Drift", icon=":material/difference:", url_path="drift"),
        st.Page("views/evals.py", title="Evals", icon=":material/rule:", url_path="evals"),
        st.Page(
            "views/gates_alerts.py",
            title="Gates and alerts",
            icon=":material/notifications:",
            url_path="gates-and-alerts",
        ),
    ]
)
window_picker()
try:
    st.sidebar.caption(f"Reading {source()}")
except Unavailable as exc:
    st.sidebar.caption(exc.message)
navigation.run()
