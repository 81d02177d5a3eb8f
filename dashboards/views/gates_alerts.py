"""Gates and alerts: every judge verdict with its per-metric detail, every alert state change and every
delivery attempt with the notification as it was sent."""

from __future__ import annotations

import json

import streamlit as st

from dashboards.data import HINTS, Unavailable, load
from dashboards.markdown import md, md_frame
from dashboards.verdicts import alert_history, delivery_table, gate_detail, gate_history, pretty_json

st.title("Gates and alerts")
gates_tab, alerts_tab = st.tabs(["Gates", "Alerts"])


def rows_of(topic: str, *queries: str) -> list[list[dict[str, object]]] | None:
    """Each query's rows, or None after saying why there are none (each tab on its own: one may be empty)."""
    try:
        found: list[list[dict[str, object]]] = [load(topic, q).to_pylist() for q in queries]
    except Unavailable as exc:
        (st.info if exc.missing else st.warning)(exc.message)
        return None
    if not any(found):
        st.info(HINTS[topic])
        return None
    return found


with gates_tab:
    if (found := rows_of("gates", "gates")) is not None:
        gates = found[0]
        st.dataframe(gate_history(gates), hide_index=True)
        chosen = st.selectbox("Gate", range(len(gates)), format_func=lambda i: (
            f"{gates[i]['decided_at']:%Y-%m-%d %H:%M:%S} {gates[i]['candidate']} vs {gates[i]['baseline']}: "
            f"{gates[i]['verdict']}"))  # fmt: skip
        gate = gates[chosen]
        detail = gate_detail(str(gate["detail_json"]))
        score = "–" if gate["score"] is None else f"{gate['score']:.0f}"
        st.subheader(f"{md(gate['candidate'])} against {md(gate['baseline'])}: {md(str(gate['verdict']).upper())}")
        st.markdown(f"Score **{score}** / 100, exit code {gate['exit_code']}. {md(detail.reason)}")
        st.caption(md(f"Window {detail.window.get('start', '?')} – {detail.window.get('end', '?')}; "
                      f"sources {json.dumps(detail.sources)}; groups {json.dumps(detail.groups)}"))  # fmt: skip
        st.table(md_frame(detail.metrics), hide_index=True)

with alerts_tab:
    if (found := rows_of("alerts", "alert_changes", "deliveries", "pending_notifications")) is not None:
        changes, attempts, waiting = found
        st.subheader("State changes")
        st.dataframe(alert_history(changes), hide_index=True)
        st.subheader("Deliveries")
        st.dataframe(delivery_table(attempts), hide_index=True)
        if attempts:
            ids = list(dict.fromkeys(str(a["notification_id"]) for a in attempts))
            chosen_id = st.selectbox("Notification", ids)
            sent = next(a for a in attempts if a["notification_id"] == chosen_id)
            st.caption(f"{md(sent['notification'])} notification of {md(sent['rules'])} to {md(sent['receiver'])}, "
                       f"{md(sent['alerts'])} alert(s); the body as sent:")  # fmt: skip
            st.code(pretty_json(sent["body"] if isinstance(sent["body"], str) else None), language="json")
        if waiting:
            st.subheader("Not tried yet")
            st.dataframe(waiting, hide_index=True)
