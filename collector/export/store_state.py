"""The store's latest verdicts on /metrics (canary drift, evals, gates) and each pool's figures over the last 5
minutes (collector/fleet/figures.py: the numbers `inferwatch fleet --window 5m` shows), read from the store at
scrape time.

A prometheus_client custom collector (`collect() -> Iterable[Metric]`): every scrape runs the queries and
yields gauge families holding exactly the series the store has data for now. A pool or a verdict that is gone
from the store, or no longer the latest, is gone from /metrics at the next scrape (a Gauge set from the
store would keep its last value for ever); a family without data exports nothing. Only pools the gateway
routes are exported, with the gateway's labels (`labels_of`).

The queries run at every scrape, uncached: each is one GROUP BY over a table that grows by a few rows per
canary, eval or gate run (a whole exposition took 7 ms with 10 000 drift rows, on 2 shared cores), and
collector/service.py runs the exposition in a worker thread, off the gateway's event loop. A cache would
only make /metrics lag behind the store (a verdict just written would be missing for its lifetime).

Each query is isolated: one that raises (a table missing, a schema that does not match, a store that is
down or corrupt) leaves its families out of that scrape, adds 1 per family to
`inferwatch_export_errors_total{metric=...}` and sets `inferwatch_store_state_up` to 0; it is a fault of the
collector (collector/health.py, part "/metrics <query>": /healthz not ok) logged once, and once more when it
works again. The other families and the gateway's own metrics are exported as usual: /metrics still answers.

Label values read from the store (drift metric names, eval suites, gate baselines) are bounded: control and
format characters become "?", a value is cut to MAX_LABEL_CHARS, and a query exports at most MAX_SERIES label
sets per family; the rest (and values that became equal once cut) are left out and counted in
`inferwatch_store_state_dropped_series{metric=...}`, so a hostile store cannot blow up /metrics.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from collector.export.metrics import POOL_LABELS, PoolLabels
from collector.fleet.figures import Window, pool_figures
from collector.fleet.report import query_latest_drift, query_latest_evals, query_latest_gates
from collector.fleet.slo import DEFAULT_SLO_PATH, load_slo
from collector.health import Faults
from collector.store.protocols import Queryable
from collector.vocabulary import DriftVerdict, EvalVerdict

log = logging.getLogger(__name__)

Row = dict[str, Any]
LabelsOf = Callable[[str], PoolLabels | None]  # a pool's labels; None for a pool the gateway does not route

MAX_LABEL_CHARS = 128  # a label value from the store is cut to this many characters, the last one "…"
MAX_SERIES = 1000  # label sets per family and scrape; the rest are counted, not exported
UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})  # control, format (bidi), surrogate, private, breaks


def label_value(value: object, max_chars: int = MAX_LABEL_CHARS) -> str:
    """A value from the store as a bounded label value: unprintable characters as "?", at most `max_chars`."""
    text = "".join("?" if unicodedata.category(c) in UNPRINTABLE else c for c in str(value))
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def number(column: str) -> Callable[[Row], float | None]:
    """The row's value in `column`; None (no value in the store) exports no series."""
    return lambda row: None if row[column] is None else float(row[column])


def flag(column: str, member: str) -> Callable[[Row], float | None]:
    """1 when the row's `column` is `member`, else 0."""
    return lambda row: 1.0 if row[column] == member else 0.0


@dataclass(frozen=True)
class StateGauge:
    name: str
    documentation: str
    value: Callable[[Row], float | None]


@dataclass(frozen=True)
class StateQuery:
    """One query and the gauge families its rows become: one series per row whose `pool_column` names a
    routed pool, labelled by the pool and by `label` (a column of the row, named alike)."""

    part: str  # its name in /healthz's faults
    run: Callable[[Queryable], list[Row]]
    pool_column: str
    label: str
    gauges: tuple[StateGauge, ...]
    constant: tuple[tuple[str, str], ...] = ()  # more labels, the same on every series (name, value)

    def families(
        self, rows: Sequence[Row], labels_of: LabelsOf, max_series: int = MAX_SERIES
    ) -> tuple[list[GaugeMetricFamily], int]:
        """The families of `rows`, and how many label sets were left out (over `max_series`, or equal to one
        already exported once bounded)."""
        names = (*POOL_LABELS, self.label, *(name for name, _ in self.constant))
        families = [GaugeMetricFamily(g.name, g.documentation, labels=names) for g in self.gauges]
        seen: set[tuple[str, ...]] = set()
        dropped = 0
        for row in rows:
            pool = labels_of(row[self.pool_column])
            if pool is None:
                continue
            labels = (*pool.values(), label_value(row[self.label]), *(value for _, value in self.constant))
            if labels in seen or len(seen) >= max_series:
                dropped += 1
                continue
            seen.add(labels)
            for gauge, family in zip(self.gauges, families, strict=True):
                value = gauge.value(row)
                if value is not None:
                    family.add_metric(list(labels), value)
        return families, dropped

    @property
    def names(self) -> list[str]:
        return [g.name for g in self.gauges]


# docs/CANARY.md, docs/EVALS.md, docs/GATE.md
DRIFT = StateQuery("/metrics drift", query_latest_drift, "pool", "metric", (
    StateGauge("inferwatch_drift_value", "Value of a drift metric in the latest canary run against the reference.",
               number("value")),
    StateGauge("inferwatch_drift_flagged", "1 when the latest canary run found drift on the metric, else 0.",
               flag("verdict", DriftVerdict.drift)),
))  # fmt: skip
EVALS = StateQuery("/metrics evals", query_latest_evals, "pool", "suite", (
    StateGauge("inferwatch_eval_accuracy", "Accuracy of the pool on an eval suite in its latest run (0-1).",
               number("accuracy")),
    StateGauge("inferwatch_eval_accuracy_delta",
               "Accuracy minus the reference's on the items both scored, in the latest run of the suite.",
               number("delta")),
    StateGauge("inferwatch_eval_regressed",
               "1 when the latest run of the suite found the pool significantly worse than the reference, else 0.",
               flag("verdict", EvalVerdict.regressed)),
))  # fmt: skip
GATES = StateQuery("/metrics gates", query_latest_gates, "candidate", "baseline", (
    StateGauge("inferwatch_gate_score",
               "Score (0-100) of the latest gate of this pool as candidate against the baseline.", number("score")),
    StateGauge("inferwatch_gate_exit_code",
               "Exit code of the latest gate of this pool against the baseline: 0 pass, 1 fail, 2 marginal or no data.",
               number("exit_code")),
))  # fmt: skip
FIGURE_WINDOW_S = 300.0
# the figures exported per pool (docs/METRICS.md "Figures"): seconds, ratios, dollars per million tokens
EXPORTED_FIGURES = (
    "ttft_p50", "ttft_p99", "judged_tpot_p50", "e2e_p50", "queue_p50", "prefill_p50", "transport_p50",
    "error_rate", "goodput", "usd_per_mtok", "cache_hit_ratio",
)  # fmt: skip


def figure_rows(store: Queryable) -> list[Row]:
    """One row per pool and exported figure with a value, over the last FIGURE_WINDOW_S (goodput against the
    default SLO, data/slo.yaml)."""
    window = Window.last(FIGURE_WINDOW_S, by_revision=False)
    return [
        {"pool": f.key.pool, "figure": name, "value": f.value(name)}
        for f in pool_figures(store, window, slo=load_slo(DEFAULT_SLO_PATH))
        for name in EXPORTED_FIGURES
        if f.value(name) is not None
    ]


FIGURES = StateQuery("/metrics figures", figure_rows, "pool", "figure", (
    StateGauge("inferwatch_pool_figure",
               "A pool's figure over the window (docs/METRICS.md Figures; latency in seconds, usd_per_mtok in $ per "
               "1M tokens): the value inferwatch fleet shows for the same window.", number("value")),
), constant=(("window", "5m"),))  # fmt: skip
QUERIES = (DRIFT, EVALS, GATES, FIGURES)


class StoreState:
    """The store-derived families, collected at each scrape of `registry` (where it registers itself)."""

    def __init__(
        self, store: Queryable, labels_of: LabelsOf, *, registry: CollectorRegistry,
        queries: Sequence[StateQuery] = QUERIES, faults: Faults | None = None, max_series: int = MAX_SERIES,
    ) -> None:  # fmt: skip
        self.store = store
        self.labels_of = labels_of
        self.queries = tuple(queries)
        self.faults = Faults() if faults is None else faults
        self.max_series = max_series
        # not registered itself: collect() yields it after the families, so a scrape counts its own failures
        self._errors = Counter(
            "inferwatch_export_errors_total",
            "Scrapes that left a metric family out because reading it failed (the collector's log says why).",
            ["metric"], registry=None,
        )  # fmt: skip
        for query in self.queries:
            for name in query.names:
                self._errors.labels(name)  # every family has its series from 0, so rate() sees the first error
        registry.register(self)

    def describe(self) -> Iterator[Metric]:
        """The families, without samples: lets the registry check names without querying the store."""
        for query in self.queries:
            yield from query.families([], self.labels_of)[0]
        yield from self._errors.describe()
        yield from self._health([], {})

    def collect(self) -> Iterator[Metric]:
        failed: list[StateQuery] = []
        dropped: dict[str, int] = {}
        for query in self.queries:
            try:
                families, left_out = query.families(query.run(self.store), self.labels_of, self.max_series)
            except Exception as exc:  # any failure of one query: the others and the rest of /metrics go on
                failed.append(query)
                self._failed(query, f"{type(exc).__name__}: {exc}")
                continue
            self.faults.report(query.part, None, log)
            dropped.update(dict.fromkeys(query.names, left_out))
            yield from (family for family in families if family.samples)  # no data, no family: not even its HELP
        yield from self._errors.collect()
        yield from self._health(failed, dropped)

    def _health(self, failed: list[StateQuery], dropped: dict[str, int]) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "inferwatch_store_state_up",
            "1 when every store query behind /metrics worked at this scrape, else 0 (/healthz says which failed).",
        )  # fmt: skip
        up.add_metric([], 0.0 if failed else 1.0)
        yield up
        left_out = GaugeMetricFamily(
            "inferwatch_store_state_dropped_series",
            f"Label sets read from the store but not exported at this scrape (over {self.max_series} per family, "
            "or equal to another once bounded).",
            labels=["metric"],
        )  # fmt: skip
        for name, count in dropped.items():
            left_out.add_metric([name], float(count))
        yield left_out

    def _failed(self, query: StateQuery, reason: str) -> None:
        for name in query.names:
            self._errors.labels(name).inc()
        names = ", ".join(query.names)
        self.faults.report(query.part, f"leaves out {names}: the store cannot answer ({reason})", log)
