"""The store's latest verdicts on /metrics (canary drift, evals, gates), read from the store at scrape time.

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
down) leaves its families out of that scrape and adds 1 per family to
`inferwatch_export_errors_total{metric=...}`; it is logged once (a warning), and once more when it works
again. The other families and the gateway's own metrics are exported as usual.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from collector.export.metrics import POOL_LABELS, PoolLabels
from collector.fleet.report import query_latest_drift, query_latest_evals, query_latest_gates
from collector.store.protocols import Queryable
from collector.vocabulary import DriftVerdict, EvalVerdict

log = logging.getLogger(__name__)

Row = dict[str, Any]
LabelsOf = Callable[[str], PoolLabels | None]  # a pool's labels; None for a pool the gateway does not route


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

    run: Callable[[Queryable], list[Row]]
    pool_column: str
    label: str
    gauges: tuple[StateGauge, ...]

    def families(self, rows: Sequence[Row], labels_of: LabelsOf) -> list[GaugeMetricFamily]:
        families = [GaugeMetricFamily(g.name, g.documentation, labels=(*POOL_LABELS, self.label)) for g in self.gauges]
        for row in rows:
            pool = labels_of(row[self.pool_column])
            if pool is None:
                continue
            labels = [*pool.values(), str(row[self.label])]
            for gauge, family in zip(self.gauges, families, strict=True):
                value = gauge.value(row)
                if value is not None:
                    family.add_metric(labels, value)
        return families

    @property
    def names(self) -> list[str]:
        return [g.name for g in self.gauges]


# docs/CANARY.md, docs/EVALS.md, docs/GATE.md
DRIFT = StateQuery(query_latest_drift, "pool", "metric", (
    StateGauge("inferwatch_drift_value", "Value of a drift metric in the latest canary run against the reference.",
               number("value")),
    StateGauge("inferwatch_drift_flagged", "1 when the latest canary run found drift on the metric, else 0.",
               flag("verdict", DriftVerdict.drift)),
))  # fmt: skip
EVALS = StateQuery(query_latest_evals, "pool", "suite", (
    StateGauge("inferwatch_eval_accuracy", "Accuracy of the pool on an eval suite in its latest run (0-1).",
               number("accuracy")),
    StateGauge("inferwatch_eval_accuracy_delta",
               "Accuracy minus the reference's on the items both scored, in the latest run of the suite.",
               number("delta")),
    StateGauge("inferwatch_eval_regressed",
               "1 when the latest run of the suite found the pool significantly worse than the reference, else 0.",
               flag("verdict", EvalVerdict.regressed)),
))  # fmt: skip
GATES = StateQuery(query_latest_gates, "candidate", "baseline", (
    StateGauge("inferwatch_gate_score",
               "Score (0-100) of the latest gate of this pool as candidate against the baseline.", number("score")),
    StateGauge("inferwatch_gate_exit_code",
               "Exit code of the latest gate of this pool against the baseline: 0 pass, 1 fail, 2 marginal or no data.",
               number("exit_code")),
))  # fmt: skip
QUERIES = (DRIFT, EVALS, GATES)


class StoreState:
    """The store-derived families, collected at each scrape of `registry` (where it registers itself)."""

    def __init__(
        self, store: Queryable, labels_of: LabelsOf, *, registry: CollectorRegistry,
        queries: Sequence[StateQuery] = QUERIES,
    ) -> None:  # fmt: skip
        self.store = store
        self.labels_of = labels_of
        self.queries = tuple(queries)
        # not registered itself: collect() yields it after the families, so a scrape counts its own failures
        self._errors = Counter(
            "inferwatch_export_errors_total",
            "Scrapes that left a metric family out because reading it failed (the collector's log says why).",
            ["metric"], registry=None,
        )  # fmt: skip
        for query in self.queries:
            for name in query.names:
                self._errors.labels(name)  # every family has its series from 0, so rate() sees the first error
        self._failing: dict[int, str] = {}  # index of a query -> its latest error, while it fails
        self._lock = threading.Lock()
        registry.register(self)

    def describe(self) -> Iterator[Metric]:
        """The families, without samples: lets the registry check names without querying the store."""
        for query in self.queries:
            yield from query.families([], self.labels_of)
        yield from self._errors.describe()

    def collect(self) -> Iterator[Metric]:
        for i, query in enumerate(self.queries):
            try:
                families = query.families(query.run(self.store), self.labels_of)
            except Exception as exc:  # any failure of one query: the others and the rest of /metrics go on
                self._failed(i, query, f"{type(exc).__name__}: {exc}")
                continue
            self._worked(i, query)
            yield from (family for family in families if family.samples)  # no data, no family: not even its HELP
        yield from self._errors.collect()

    def _failed(self, i: int, query: StateQuery, reason: str) -> None:
        for name in query.names:
            self._errors.labels(name).inc()
        with self._lock:
            before, self._failing[i] = self._failing.get(i), reason
        level = logging.DEBUG if reason == before else logging.WARNING
        log.log(level, "/metrics leaves out %s: %s", ", ".join(query.names), reason)

    def _worked(self, i: int, query: StateQuery) -> None:
        with self._lock:
            before = self._failing.pop(i, None)
        if before is not None:
            log.info("/metrics exports %s again", ", ".join(query.names))
