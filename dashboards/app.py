"""The inferwatch dashboard: `inferwatch dashboard` runs `streamlit run dashboards/app.py` on the store."""

from __future__ import annotations

import streamlit as st

from dashboards.data import Unavailable, source
from dashboards.ui import window_picker

st.set_page_config(page_title="inferwatch", page_icon="📈", layout="wide")
navigation = st.navigation([
    st.Page("pages/fleet.py", title="Fleet", icon="🚦", default=True),
    st.Page("pages/latency_cost.py", title="Latency and cost", icon="⏱️"),
    st.Page("pages/drift.py", title="Drift", icon="🧭"),
    st.Page("pages/evals.py", title="Evals", icon="🎯"),
    st.Page("pages/gates_alerts.py", title="Gates and alerts", icon="🚨"),
])  # fmt: skip
window_picker()
try:
    st.sidebar.caption(f"Reading {source()}")
except Unavailable as exc:
    st.sidebar.caption(exc.message)
navigation.run()
