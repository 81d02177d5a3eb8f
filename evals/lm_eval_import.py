"""lm-evaluation-harness per-sample logs (`lm_eval ... --log_samples --output_path DIR`) as eval items.

lm-eval writes one `samples_<task>_<timestamp>.jsonl` per task, one line per document and filter:

    {"doc_id": 0, "doc": {...}, "target": "432", "arguments": ..., "resps": [["432"]],
     "filtered_resps": ["432"], "filter": "none", "metrics": ["exact_match"], "exact_match": 1.0, ...}

Each document becomes an item of suite `lm-eval/<task>` with id `doc_id`: correct when the chosen metric is
1 (acc, exact_match and the other 0/1 metrics; a graded metric such as f1 counts as correct only when
perfect, and its value is kept as the score), output the filtered response. A file whose lines carry
several filters (e.g. gsm8k's strict-match and flexible-extract) needs `filter`; a line with several 0/1
metrics needs `metric`, unless it has `acc` or `exact_match`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREFERRED_METRICS = ("acc", "exact_match")
_SAMPLES_FILE = re.compile(r"^samples_(?P<task>.+?)_(?P<stamp>\d{4}-\d{2}-\d{2}T[\d\-.:]+)\.jsonl$")


class SamplesError(ValueError):
    """A per-sample file that cannot be imported; the message names the file, line and field."""


@dataclass(frozen=True)
class ImportedItem:
    suite: str
    item_id: str
    correct: bool
    score: float
    output: str


def task_of(path: Path) -> str:
    found = _SAMPLES_FILE.match(path.name)
    return found.group("task") if found else path.stem.removeprefix("samples_")


def sample_files(path: Path) -> list[Path]:
    """A samples file, or every samples_*.jsonl under a directory (lm-eval's output_path)."""
    if path.is_dir():
        files = sorted(path.rglob("samples_*.jsonl"))
        if not files:
            raise SamplesError(f"{path}: no samples_*.jsonl under it; run lm_eval with --log_samples --output_path")
        return files
    if not path.exists():
        raise SamplesError(f"{path}: no such file or directory")
    return [path]


def _metric_of(record: dict[str, Any], metric: str | None, where: str) -> str:
    if metric is not None:
        if metric not in record:
            numeric = sorted(k for k, v in record.items() if isinstance(v, int | float) and k != "doc_id")
            raise SamplesError(f"{where}: field {metric}: missing; this line has {', '.join(numeric) or 'no metrics'}")
        return metric
    listed = record.get("metrics")
    if isinstance(listed, list) and len(listed) == 1 and isinstance(listed[0], str):
        return listed[0]
    candidates = listed if isinstance(listed, list) else list(record)
    for name in PREFERRED_METRICS:
        if name in candidates and name in record:
            return name
    raise SamplesError(f"{where}: field metrics: {listed!r} does not say which metric to use; choose one with --metric")


def _output_of(record: dict[str, Any]) -> str:
    filtered = record.get("filtered_resps", record.get("resps"))
    while isinstance(filtered, list) and len(filtered) == 1:
        filtered = filtered[0]
    return filtered if isinstance(filtered, str) else json.dumps(filtered)


def read_samples(path: Path, metric: str | None = None, filter_name: str | None = None) -> list[ImportedItem]:
    """The items of one samples file; SamplesError names the file, line and field of what is wrong."""
    task = task_of(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SamplesError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    records: list[tuple[str, dict[str, Any]]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SamplesError(f"{where}: not JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise SamplesError(f"{where}: a line must be a JSON object, got {type(record).__name__}")
        if not isinstance(record.get("doc_id"), int | str):
            raise SamplesError(f"{where}: field doc_id: missing or not an integer")
        records.append((where, record))
    if not records:
        raise SamplesError(f"{path}: no samples in the file")
    filters = sorted({str(r.get("filter", "none")) for _, r in records})
    if filter_name is None and len(filters) > 1:
        raise SamplesError(f"{path}: the samples carry filters {', '.join(filters)}; choose one with --filter")
    if filter_name is not None and filter_name not in filters:
        raise SamplesError(f"{path}: no samples with filter {filter_name!r}; the file has {', '.join(filters)}")
    chosen = filter_name or filters[0]
    suite = f"lm-eval/{task}" if chosen == "none" else f"lm-eval/{task}[{chosen}]"
    items: list[ImportedItem] = []
    seen: dict[str, str] = {}
    for where, record in records:
        if str(record.get("filter", "none")) != chosen:
            continue
        name = _metric_of(record, metric, where)
        value = record[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SamplesError(f"{where}: field {name}: {value!r} is not a number; choose a 0/1 metric with --metric")
        item_id = str(record["doc_id"])
        if item_id in seen:
            raise SamplesError(f"{where}: field doc_id: {item_id} already appears at {seen[item_id]}")
        seen[item_id] = where
        items.append(ImportedItem(suite, item_id, float(value) >= 1.0, float(value), _output_of(record)))
    return items
