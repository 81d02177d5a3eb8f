"""Probe sets: the committed files are what the generator writes; bad files are refused naming line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from canary.probes import PROBES_DIR, ProbeError, load_probe_set, load_probe_sets, write_built_in
from engine.arith import is_held_out


def test_committed_sets_are_what_the_generator_writes(tmp_path: Path) -> None:
    for written in write_built_in(tmp_path):
        assert written.read_text() == (PROBES_DIR / written.name).read_text(), "regenerate: python -m canary.probes"


def test_built_in_sets_load_with_stable_ids_and_held_out_problems() -> None:
    arith, text, prefix = load_probe_sets(("arith-v1", "text-v1", "prefix-v1"))
    assert (len(arith.probes), len(text.probes), len(prefix.probes)) == (48, 8, 8)
    first = arith.probes[0]
    assert first.id == "arith-v1-0000" and first.prompt + first.continuation == "5+38=43"
    for probe in arith.probes:
        a, b = map(int, probe.prompt[:-1].split("+"))
        assert is_held_out(a, b) and probe.expected == str(a + b)
    assert all(p.prompt.startswith(prefix.probes[0].prompt[:300]) for p in prefix.probes)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "x", "prompt": "1+1=", "continuation": "2", "alphabet": "0", "max_tokens": 0}',
         r"bad.jsonl:2: field max_tokens: Input should be greater than or equal to 1"),
        ('{"id": "x", "prompt": "1+1=", "continuation": "2", "alphabet": "0", "max_tokens": 3, "extra": 1}',
         r"bad.jsonl:2: field extra: Extra inputs are not permitted"),
        ("not json", r"bad.jsonl:2: field \(the line\): Invalid JSON"),
        ('{"id": "ok", "prompt": "1+1=", "continuation": "2", "alphabet": "0", "max_tokens": 3}',
         r"bad.jsonl:2: field id: 'ok' is already used on line 1"),
    ],
)  # fmt: skip
def test_bad_lines_are_named(tmp_path: Path, line: str, message: str) -> None:
    good = '{"id": "ok", "prompt": "1+1=", "continuation": "2", "alphabet": "0", "max_tokens": 3}'
    (tmp_path / "bad.jsonl").write_text(good + "\n" + line + "\n")
    with pytest.raises(ProbeError, match=message):
        load_probe_set(tmp_path / "bad.jsonl")


def test_unknown_and_empty_sets(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="built-in probe sets are arith-v1, prefix-v1, text-v1"):
        load_probe_sets(("nope-v9",))
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ProbeError, match="no probes"):
        load_probe_set(tmp_path / "empty.jsonl")
