"""lm-evaluation-harness per-sample logs become eval items; bad files are named by file, line and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from collector.store.api import Store
from collector.vocabulary import EvalVerdict
from evals.job import import_lm_eval
from evals.lm_eval_import import SamplesError, read_samples, sample_files, task_of

STAMP = "2026-11-22T10-31-07.123456"


def sample(doc_id: int, right: bool, **extra: Any) -> dict[str, Any]:
    """One line as lm-eval's --log_samples writes it for a generate_until task."""
    answer = str(doc_id + 10)
    said = answer if right else "0"
    return {
        "doc_id": doc_id, "doc": {"question": f"{doc_id}+10=", "answer": answer}, "target": answer,
        "arguments": {"gen_args_0": {"arg_0": f"{doc_id}+10=", "arg_1": {"until": ["\n"]}}},
        "resps": [[said]], "filtered_resps": [said], "filter": "none", "metrics": ["exact_match"],
        "doc_hash": "h", "prompt_hash": "p", "target_hash": "t", "exact_match": 1.0 if right else 0.0, **extra,
    }  # fmt: skip


def write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_samples_become_items_of_the_task(tmp_path: Path) -> None:
    path = write(tmp_path / f"samples_arith_add_{STAMP}.jsonl", [sample(0, True), sample(1, False)])
    assert task_of(path) == "arith_add"
    items = read_samples(path)
    assert [(i.suite, i.item_id, i.correct, i.score, i.output) for i in items] == [
        ("lm-eval/arith_add", "0", True, 1.0, "10"),
        ("lm-eval/arith_add", "1", False, 0.0, "0"),
    ]


def test_filters_and_metrics_must_be_chosen_when_ambiguous(tmp_path: Path) -> None:
    lines = [sample(0, True, filter="strict-match"), sample(0, False, filter="flexible-extract")]
    path = write(tmp_path / f"samples_gsm8k_{STAMP}.jsonl", lines)
    with pytest.raises(SamplesError, match="carry filters flexible-extract, strict-match; choose one with --filter"):
        read_samples(path)
    items = read_samples(path, filter_name="flexible-extract")
    assert [(i.suite, i.correct) for i in items] == [("lm-eval/gsm8k[flexible-extract]", False)]
    with pytest.raises(SamplesError, match="no samples with filter 'none'"):
        read_samples(path, filter_name="none")
    two = write(tmp_path / "samples_x.jsonl", [sample(0, True, metrics=["f1", "em"], f1=0.5, em=0.0)])
    with pytest.raises(SamplesError, match=r"samples_x.jsonl:1: field metrics: \['f1', 'em'\] does not say"):
        read_samples(two)
    graded = read_samples(two, metric="f1")[0]
    assert (graded.correct, graded.score) == (False, 0.5)  # graded metrics count as correct only when perfect
    with pytest.raises(SamplesError, match=r"samples_x.jsonl:1: field acc: missing; this line has em, exact_match, f1"):
        read_samples(two, metric="acc")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"doc_id": 0, "exact_match": 1.0', ":2: not JSON"),
        ("[1, 2]", ":2: a line must be a JSON object"),
        ('{"exact_match": 1.0}', ":2: field doc_id: missing"),
        ('{"doc_id": 1, "metrics": ["exact_match"], "exact_match": "yes"}', ":2: field exact_match: 'yes' is not a"),
        ('{"doc_id": 0, "metrics": ["exact_match"], "exact_match": 1.0}', ":2: field doc_id: 0 already appears at"),
    ],
)
def test_a_malformed_line_is_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "samples_t.jsonl"
    path.write_text(json.dumps(sample(0, True)) + "\n" + text + "\n")
    with pytest.raises(SamplesError, match=message):
        read_samples(path)


def test_missing_and_empty_inputs(tmp_path: Path) -> None:
    with pytest.raises(SamplesError, match="no such file or directory"):
        sample_files(tmp_path / "nope")
    with pytest.raises(SamplesError, match=r"no samples_\*.jsonl under it; run lm_eval with --log_samples"):
        sample_files(tmp_path)
    (tmp_path / "samples_e.jsonl").write_text("")
    with pytest.raises(SamplesError, match="no samples in the file"):
        read_samples(tmp_path / "samples_e.jsonl")


def test_import_two_pools_and_compare_them_in_the_store(tmp_path: Path) -> None:
    # as lm-eval lays out its output: <output_path>/<model>/samples_<task>_<stamp>.jsonl
    ref = write(tmp_path / "ref" / "arith@ref" / f"samples_add_{STAMP}.jsonl", [sample(i, True) for i in range(40)])
    bad = [sample(i, i >= 30) for i in range(40)]  # wrong on the first 30
    write(tmp_path / "tpu" / "arith@tpu" / f"samples_add_{STAMP}.jsonl", bad)
    with Store(tmp_path / "store.duckdb") as store:
        run_id, by_suite = import_lm_eval(store, {"ref": ref, "tpu": tmp_path / "tpu"}, run_id="lm1", reference="ref")
        assert run_id == "lm1" and list(by_suite) == ["lm-eval/add"]
        ref_summary, tpu = by_suite["lm-eval/add"]
        assert ref_summary.accuracy == 1.0 and tpu.accuracy == pytest.approx(10 / 40)
        assert tpu.verdict is EvalVerdict.regressed and tpu.paired is not None and tpu.paired.b == 30
        stored = store.query("SELECT pool, verdict, origin FROM eval_runs ORDER BY pool").to_pylist()
        assert stored == [{"pool": "ref", "verdict": "reference", "origin": "lm-eval"},
                          {"pool": "tpu", "verdict": "regressed", "origin": "lm-eval"}]  # fmt: skip
        assert store.query("SELECT count(*) AS n FROM eval_items WHERE run_id = 'lm1'").to_pylist() == [{"n": 80}]


def test_a_bad_file_stores_nothing(tmp_path: Path) -> None:
    good = write(tmp_path / "samples_a.jsonl", [sample(0, True)])
    broken = tmp_path / "samples_b.jsonl"
    broken.write_text("{broken\n")
    with Store(tmp_path / "store.duckdb") as store:
        with pytest.raises(SamplesError, match=r"samples_b\.jsonl:1: not JSON"):
            import_lm_eval(store, {"ref": good, "tpu": broken}, run_id="lm2")
        assert store.query("SELECT count(*) AS n FROM eval_items").to_pylist() == [{"n": 0}]


REAL = Path(__file__).parent / "data" / "lm-eval-0.4.13"


def test_real_lm_eval_output_imports_and_compares(tmp_path: Path) -> None:
    # lm_eval 0.4.13 --log_samples against the real ref and boost pools (see the README beside the files)
    with Store(tmp_path / "store.duckdb") as store:
        _, by_suite = import_lm_eval(store, {"ref": REAL / "ref", "boost": REAL / "boost"}, reference="ref")
    ref, boost = by_suite["lm-eval/arith_add"]
    assert (ref.items, ref.correct) == (40, 40)  # lm-eval's exact_match: 1.0
    assert (boost.items, boost.correct) == (40, 32)  # lm-eval's exact_match: 0.8
    assert boost.paired is not None and (boost.paired.b, boost.paired.c) == (8, 0)
    assert boost.p_value == pytest.approx(2 * 0.5**8) and boost.verdict is EvalVerdict.regressed
