"""The eval runner through a real collector in front of scripted pools: retries are counted, a pool that dies
mid-run leaves its failed items recorded with their error while the other pools finish, and the CLI refuses
what it cannot run (exit 3) and exits 1 / 2 on a regressed / inconclusive pool."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from collector import daemon
from collector.state import CollectorState
from collector.store.door import open_reader
from collector.vocabulary import EvalVerdict
from evals.job import EvalJob, EvalRun, run_eval_job
from evals.runner import AskConfig
from tests.collector.faulty_upstream import DYING_AFTER, FaultyUpstream, start_collector
from tests.conftest import flush_collector, inferwatch

ITEMS = 40  # a + b with sums 100..178: the "ok" pool's constant "46" is never right


@dataclass
class Setup:
    home: Path
    collector: CollectorState
    upstream: FaultyUpstream
    suite: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    home = tmp_path_factory.mktemp("evals")
    suite = home / "sums-v1.jsonl"
    lines = [{"id": f"s-{i:02d}", "prompt": f"{i}+{100 + i}=", "expected": str(100 + 2 * i), "scorer": "exact"}
             for i in range(ITEMS - 5)]  # fmt: skip
    lines += [{"id": f"c-{i:02d}", "messages": [{"role": "user", "content": f"{i}+{140 + i}="}],
               "expected": str(140 + 2 * i), "scorer": "exact"} for i in range(5)]  # fmt: skip
    suite.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with FaultyUpstream() as upstream:
        collector = start_collector(home, upstream)
        yield Setup(home, collector, upstream, suite)
        daemon.down(home / "collector.json")


@pytest.fixture(scope="module")
def run(setup: Setup) -> EvalRun:
    job = EvalJob(
        suite=str(setup.suite), reference="sums", pools=("flaky", "dying", "ok", "err500"), chunk_size=10,
        ask=AskConfig(concurrency=4, retries=2, backoff_s=0.01), in_process=True, progress=False,
    )  # fmt: skip
    return run_eval_job(job, setup.collector, log=lambda _: None)


def stored(setup: Setup, sql: str, params: list[object] | None = None) -> list[dict[str, object]]:
    flush_collector(setup.collector.url)  # the eval's requests went through the gateway
    with open_reader(setup.collector.store) as store:
        return store.query(sql, params).to_pylist()


def test_every_item_of_every_pool_is_recorded(setup: Setup, run: EvalRun) -> None:
    rows = stored(setup, "SELECT pool, count(*) AS n, count(correct) AS scored, sum(correct::INT)::INT AS right "
                         "FROM eval_items WHERE run_id = ? GROUP BY pool ORDER BY pool", [run.run_id])  # fmt: skip
    got = {r["pool"]: (r["n"], r["scored"], r["right"]) for r in rows}
    assert got == {
        "dying": (ITEMS, DYING_AFTER, DYING_AFTER), "err500": (ITEMS, 0, None), "flaky": (ITEMS, ITEMS, ITEMS),
        "ok": (ITEMS, ITEMS - 5, 0), "sums": (ITEMS, ITEMS, ITEMS),
    }  # fmt: skip
    # the "ok" pool answers chat requests without a message: recorded as malformed, not scored
    malformed = stored(setup, "SELECT DISTINCT error FROM eval_items WHERE run_id = ? AND pool = 'ok' AND "
                              "error IS NOT NULL", [run.run_id])  # fmt: skip
    assert [r["error"] for r in malformed] == [
        "malformed answer: the answer has no choices[0].message.content (KeyError('message'))"
    ]


def test_transient_failures_are_retried_and_counted(setup: Setup, run: EvalRun) -> None:
    # every request id of the flaky pool fails once with a 503: two attempts per item, 40 retries in all
    attempts = stored(setup, "SELECT DISTINCT attempts FROM eval_items WHERE run_id = ? AND pool = 'flaky'",
                      [run.run_id])  # fmt: skip
    assert attempts == [{"attempts": 2}] and run.retries["flaky"] == ITEMS and run.retries["sums"] == 0
    summary = stored(setup, "SELECT retries, verdict FROM eval_runs WHERE run_id = ? AND pool = 'flaky'", [run.run_id])
    assert summary == [{"retries": ITEMS, "verdict": "inconclusive"}]  # 40 items cannot show non-inferiority


def test_a_pool_that_dies_mid_run_records_its_failed_items_with_the_error(setup: Setup, run: EvalRun) -> None:
    errors = stored(setup, "SELECT error, attempts FROM eval_items WHERE run_id = ? AND pool IN ('dying', 'err500') "
                           "AND error IS NOT NULL", [run.run_id])  # fmt: skip
    assert len(errors) == (ITEMS - DYING_AFTER) + ITEMS
    sent = [e for e in errors if e["attempts"] == 3]  # retried twice, then recorded
    held = [e for e in errors if e["attempts"] == 0]  # the breaker kept them back
    assert len(sent) + len(held) == len(errors) and sent and held
    assert all("HTTP 50" in str(e["error"]) for e in sent)
    assert all(str(e["error"]).startswith("not sent: pool ") and "items in a row (last: HTTP 50" in str(e["error"])
               for e in held)  # fmt: skip
    # the breaker spares the dead pool: far fewer requests than 3 per item
    assert setup.upstream.calls["err500"] < 3 * ITEMS / 2


def test_verdicts(run: EvalRun) -> None:
    verdicts = {s.pool: s.verdict for s in run.summaries}
    assert verdicts == {"sums": EvalVerdict.reference, "flaky": EvalVerdict.inconclusive,
                        "dying": EvalVerdict.inconclusive, "ok": EvalVerdict.regressed,
                        "err500": EvalVerdict.nodata}  # fmt: skip
    dying = next(s for s in run.summaries if s.pool == "dying")
    assert (dying.scored, dying.errors, dying.accuracy) == (DYING_AFTER, ITEMS - DYING_AFTER, 1.0)
    assert "10 of 40 items failed" in dying.reason


def test_requests_land_with_source_eval_and_the_run_id(setup: Setup, run: EvalRun) -> None:
    rows = stored(setup, "SELECT operation, count(*) AS n FROM requests WHERE run_id = ? AND pool = 'sums' "
                         "AND source = 'eval' GROUP BY operation ORDER BY operation", [run.run_id])  # fmt: skip
    assert rows == [{"operation": "chat", "n": 5}, {"operation": "text_completion", "n": ITEMS - 5}]
    # asked for streamed (and put back together for scoring): the gateway timed the first token of each
    timed = stored(setup, "SELECT count(ttft_s) AS ttft, count(tpot_s) AS tpot, count(*) AS n FROM requests "
                          "WHERE run_id = ? AND pool = 'sums'", [run.run_id])  # fmt: skip
    assert timed == [{"ttft": ITEMS, "tpot": ITEMS, "n": ITEMS}]
    ours = f"eval-{run.run_id}-"
    bodies = [r["body"] for r in setup.upstream.received if r["headers"].get("x-request-id", "").startswith(ours)]
    assert bodies and all(b["stream"] and b["stream_options"] == {"include_usage": True} for b in bodies)
    # each row names its suite item (ITEM_HEADER), so two pools' rows of one run pair up item by item
    items = stored(setup, "SELECT item_id FROM requests WHERE run_id = ? AND pool = 'sums' ORDER BY item_id",
                   [run.run_id])  # fmt: skip
    expected = sorted([f"s-{i:02d}" for i in range(ITEMS - 5)] + [f"c-{i:02d}" for i in range(5)])
    assert [r["item_id"] for r in items] == expected


def test_metrics_export_the_latest_eval(setup: Setup, run: EvalRun) -> None:
    text = httpx.get(f"{setup.collector.url}/metrics").text
    ok = [line for line in text.splitlines() if line.startswith("inferwatch_eval_") and 'pool="ok"' in line]
    assert any(line.startswith("inferwatch_eval_accuracy{") and line.endswith(" 0.0") for line in ok)
    assert any(line.startswith("inferwatch_eval_regressed{") and line.endswith(" 1.0") for line in ok)
    assert any(line.startswith("inferwatch_eval_accuracy_delta{") and line.endswith(" -1.0") for line in ok)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--suite", "arith-v1", "--reference", "nope"], "no pool 'nope'; pools are ok, err500"),
        (["run", "--suite", "arith-v9", "--reference", "sums"], "suite 'arith-v9': no file"),
        (["run", "--suite", "arith-v1", "--reference", "sums", "--alpha", "2"], "alpha must be within"),
        (["run", "--suite", "arith-v1", "--reference", "sums", "--limit", "0"], "--limit must be >= 1"),
        (["run", "--suite", "arith-v1", "--reference", "sums", "--concurrency", "0"], "--concurrency must be >= 1"),
        (["report", "--run", "nosuchrun", "--reference", "sums"], "no eval items with run id 'nosuchrun'"),
        (["import", "lm-eval-out"], "'lm-eval-out': write POOL=PATH"),
        (["import", "ref=/nonexistent"], "/nonexistent: no such file or directory"),
    ],
)
def test_bad_options_exit_3_naming_them(setup: Setup, args: list[str], message: str) -> None:
    done = inferwatch("eval", *args, "--home", str(setup.home), *(["--store", str(setup.home / "store.duckdb")]
                      if args[0] != "run" else []))  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    assert message in done.stderr


def test_cli_exit_codes_and_report(setup: Setup) -> None:
    suite = str(setup.suite)
    regressed = inferwatch("eval", "run", "--home", str(setup.home), "--suite", suite, "--reference", "sums",
                           "--pools", "ok", "--in-process", "--limit", "12")  # fmt: skip
    assert regressed.returncode == 1, regressed.stderr
    assert "regressed" in regressed.stdout and "12 items right only on the reference, 0 only here" in regressed.stdout
    small = inferwatch("eval", "run", "--home", str(setup.home), "--suite", suite, "--reference", "sums",
                       "--pools", "flaky", "--in-process")  # fmt: skip
    assert small.returncode == 2 and "inconclusive" in small.stdout and "needs about 391 paired items" in small.stdout
    assert "retries: flaky 40" in small.stdout
    run_id = small.stdout.split("eval ", 1)[1].split(":", 1)[0]
    again = inferwatch("eval", "report", "--home", str(setup.home), "--store", str(setup.home / "store.duckdb"),
                       "--run", run_id, "--reference", "sums")  # fmt: skip
    assert again.returncode == 2 and "needs about 391 paired items" in again.stdout
