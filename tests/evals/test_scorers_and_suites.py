"""Scorers on outputs worked out by hand; suites that load, and malformed lines named by file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.arith import is_held_out
from evals.builtin import arith_items, format_items
from evals.scorers import Scorer, first_number, score
from evals.suites import EVALS_DIR, SuiteError, load_suite, load_suite_file


@pytest.mark.parametrize(
    ("scorer", "expected", "output", "tolerance", "correct", "value"),
    [
        (Scorer.exact, "432", "432", 0, True, 1.0),
        (Scorer.exact, "432", " 432\n", 0, True, 1.0),  # surrounding whitespace is not an error
        (Scorer.exact, "432", "4320", 0, False, 0.0),
        (Scorer.numeric, "432", "about 431.5 or so", 0.5, True, 1.0),
        (Scorer.numeric, "432", "433", 0.5, False, 0.0),
        (Scorer.numeric, "-3", "-3", 0, True, 1.0),
        (Scorer.numeric, "432", "no number", 10, False, 0.0),
        (Scorer.regex, "0|[1-9][0-9]{0,3}", "432", 0, True, 1.0),
        (Scorer.regex, "0|[1-9][0-9]{0,3}", "0432", 0, False, 0.0),  # the whole output must match
        (Scorer.contains, "43", "1432", 0, True, 1.0),
        (Scorer.contains, "43", "4 3", 0, False, 0.0),
        (Scorer.charset, "0123456789", "4#32", 0, False, 0.75),  # 3 of 4 characters in the alphabet
        (Scorer.charset, "0123456789", "", 0, True, 1.0),
    ],
)
def test_scorers(scorer: Scorer, expected: str, output: str, tolerance: float, correct: bool, value: float) -> None:
    got = score(scorer, expected, output, tolerance)
    assert (got.correct, got.score) == (correct, value)


def test_first_number() -> None:
    assert first_number("x=-12.5e1 then 3") == -125.0 and first_number("none") is None


def test_builtin_arith_suite_is_1000_distinct_held_out_problems() -> None:
    suite = load_suite("arith-v1")
    assert len(suite.items) == 1000 and len({i.prompt for i in suite.items}) == 1000
    for item in suite.items:
        a, b = (int(x) for x in (item.prompt or "").rstrip("=").split("+"))
        assert is_held_out(a, b) and item.expected == str(a + b) and item.scorer is Scorer.exact
    # the committed files are what the generator writes
    assert [json.loads(line) for line in (EVALS_DIR / "arith-v1.jsonl").read_text().splitlines()] == arith_items()
    assert [json.loads(line) for line in (EVALS_DIR / "format-v1.jsonl").read_text().splitlines()] == format_items()


def test_format_suite_has_every_scorer_and_chat_items() -> None:
    suite = load_suite("format-v1")
    assert {i.scorer for i in suite.items} == set(Scorer)
    chat = [i for i in suite.items if i.messages]
    assert len(chat) == 50 and chat[0].operation == "chat/completions"
    body = chat[0].request_body("arith@ref")
    assert body["messages"] == [{"role": "user", "content": chat[0].messages[0].content}]  # type: ignore[index]
    assert "prompt" not in body and body["temperature"] == 0.0


GOOD = {"id": "x-1", "prompt": "1+2=", "expected": "3", "scorer": "exact"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "x-2", "prompt": "1+2="', "x.jsonl:2: field (the line): Invalid JSON"),
        (json.dumps({**GOOD, "id": "x-2", "scorer": "fuzzy"}), "x.jsonl:2: field scorer: Input should be 'exact'"),
        (json.dumps({**GOOD, "id": "x-2", "expectd": "3"}), "x.jsonl:2: field expectd: Extra inputs are not permitted"),
        (json.dumps({"id": "x-2", "prompt": "1+2=", "scorer": "exact"}), "field expected: Field required"),
        (json.dumps({**GOOD, "id": "x-2", "messages": [{"role": "user", "content": "a"}]}), "exactly one of prompt"),
        (json.dumps({**GOOD, "id": "x-2", "scorer": "numeric", "expected": "three"}), "must be a number"),
        (json.dumps({**GOOD, "id": "x-2", "scorer": "regex", "expected": "(["}), "not a regular expression"),
        (json.dumps({**GOOD, "id": "x-2", "max_tokens": 0}), "field max_tokens: Input should be greater than"),
        (
            json.dumps({**GOOD, "id": "x-2", "messages": [{"role": "robot", "content": "a"}], "prompt": None}),
            "field messages.0.role",
        ),
        (json.dumps(GOOD), "x.jsonl:2: field id: 'x-1' is already used on line 1"),
    ],
)
def test_a_malformed_line_names_file_line_and_field(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + line + "\n")
    with pytest.raises(SuiteError) as caught:
        load_suite_file(path)
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_unknown_empty_and_unreadable_suites(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match=r"suite 'arith-v9': no file .* built-in suites are arith-v1, format-v1"):
        load_suite("arith-v9")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(SuiteError, match="no items in the file"):
        load_suite(str(tmp_path / "empty.jsonl"))
    (tmp_path / "binary.jsonl").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SuiteError, match="cannot read"):
        load_suite(str(tmp_path / "binary.jsonl"))
