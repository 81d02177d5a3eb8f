"""A gate result as a terminal table's rows, Markdown (a CI job summary), JSON and JUnit XML (one test case per
metric: failure for high/low, skipped for nodata)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from xml.etree import ElementTree

from gate.classify import Classification, MetricResult
from gate.judge import GateResult

ICONS = {Classification.passed: "✅", Classification.high: "❌", Classification.low: "❌", Classification.nodata: "⚪"}


def _num(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _effect(r: MetricResult) -> str:
    if r.effect is None:
        return "-"
    unit = " pts" if r.metric == "error_rate" or r.metric.startswith("eval") else "%"
    interval = "" if r.effect_low is None else f" [{100 * r.effect_low:+.1f}, {100 * (r.effect_high or 0):+.1f}]"
    return f"{100 * r.effect:+.1f}{unit}{interval}"


def table_rows(result: GateResult) -> list[dict[str, object]]:
    return [
        {"metric": r.metric + (" !" if r.critical else ""), "group": r.group, "baseline": _num(r.baseline),
         "candidate": _num(r.candidate), "change": _effect(r), "p": _num(r.p_value, 2),
         "result": r.classification.value}
        for r in result.results
    ]  # fmt: skip


def reason_lines(result: GateResult) -> list[str]:
    return [f"  {r.metric}: {r.reason}" for r in result.results if r.classification is not Classification.passed]


def headline(result: GateResult) -> str:
    score = "-" if result.score is None else f"{result.score:.0f}"
    return (f"gate {result.gate_id}: {result.candidate} against {result.baseline}: {result.verdict.value.upper()} "
            f"(score {score}, exit {result.exit_code}) — {result.reason}")  # fmt: skip


def summary_rows(results: Sequence[GateResult]) -> list[dict[str, object]]:
    """One row per gate: for a table of several candidates."""
    return [
        {"candidate": r.candidate, "baseline": r.baseline, "verdict": r.verdict.value,
         "score": None if r.score is None else round(r.score), "exit": r.exit_code,
         "critical": ", ".join(m.metric for m in r.results if m.critical) or "-", "gate": r.gate_id}
        for r in results
    ]  # fmt: skip


def markdown(result: GateResult) -> str:
    score = "-" if result.score is None else f"{result.score:.0f}"
    lines = [
        f"## Rollout gate: `{result.candidate}` against `{result.baseline}` — **{result.verdict.value.upper()}**",
        "",
        f"Score **{score}** / 100, exit code {result.exit_code}. {result.reason}",
        "",
        f"Window {result.span.start:%Y-%m-%d %H:%M:%S} – {result.span.end:%H:%M:%S} UTC; "
        f"{result.sources.get('baseline_requests', 0)} baseline and {result.sources.get('candidate_requests', 0)} "
        f"candidate requests; eval runs {result.sources.get('eval_runs') or '-'}, canary run "
        f"{result.sources.get('canary_run') or '-'}.",
        "",
        "| | metric | group | baseline | candidate | change | p | why |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result.results:
        name = f"**{r.metric}** (critical)" if r.critical else r.metric
        lines.append(f"| {ICONS[r.classification]} | {name} | {r.group} | {_num(r.baseline)} | {_num(r.candidate)} | "
                     f"{_effect(r)} | {_num(r.p_value, 2)} | {r.reason.replace('|', '/')} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def as_json(result: GateResult) -> str:
    return json.dumps({
        "gate_id": result.gate_id, "baseline": result.baseline, "candidate": result.candidate,
        "verdict": result.verdict.value, "score": result.score, "exit_code": result.exit_code,
        "reason": result.reason, "window": {"start": result.span.start.isoformat(), "end": result.span.end.isoformat()},
        "groups": result.group_scores, "sources": result.sources,
        "metrics": [{**asdict(r), "classification": r.classification.value} for r in result.results],
    }, indent=2, default=str)  # fmt: skip


def junit(result: GateResult) -> str:
    failed = [r for r in result.results if r.classification in (Classification.high, Classification.low)]
    skipped = [r for r in result.results if r.classification is Classification.nodata]
    suite = ElementTree.Element("testsuite", {
        "name": f"inferwatch gate {result.candidate} vs {result.baseline}", "tests": str(len(result.results)),
        "failures": str(len(failed)), "skipped": str(len(skipped)), "errors": "0",
    })  # fmt: skip
    for r in result.results:
        case = ElementTree.SubElement(suite, "testcase", {"classname": f"gate.{r.group}", "name": r.metric})
        if r in failed:
            kind = "critical" if r.critical else r.classification.value
            ElementTree.SubElement(case, "failure", {"message": r.reason, "type": kind}).text = json.dumps(
                {"baseline": r.baseline, "candidate": r.candidate, "effect": r.effect, "p": r.p_value}, default=str
            )
        elif r in skipped:
            ElementTree.SubElement(case, "skipped", {"message": r.reason})
    verdict = ElementTree.SubElement(suite, "testcase", {"classname": "gate", "name": "verdict"})
    if result.exit_code != 0:
        ElementTree.SubElement(verdict, "failure", {"message": result.reason, "type": result.verdict.value})
    suite.set("tests", str(len(result.results) + 1))
    suite.set("failures", str(len(failed) + (result.exit_code != 0)))
    root = ElementTree.Element("testsuites")
    root.append(suite)
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
