"""A rollout plan refuses what cannot be rolled out, naming the flag; a verdict promotes only as the plan says."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from collector.vocabulary import GateVerdict
from gate.data import Span
from gate.judge import GateResult
from gate.rollout.plan import RolloutPlan, may_promote

T = datetime(2026, 12, 1, tzinfo=UTC)


def gate(verdict: GateVerdict) -> GateResult:
    return GateResult("g1", "ref", "bf16", Span(T, T), verdict, None, "by hand", [])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"candidate": "ref"}, r"--baseline and --candidate are both 'ref'"),
        ({"weight": 1.0}, r"--weight: .* got 1\.0"),
        ({"weight": 0.0}, r"--weight: .* got 0\.0"),
        ({"requests": 0}, r"--requests must be >= 1"),
        ({"rate": 0.0}, r"--rate > 0"),
        ({"lease_s": 2.0}, r"the lease >= 3 s"),
    ],
)
def test_a_plan_that_cannot_run_names_the_flag(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RolloutPlan(**{"baseline": "ref", "candidate": "bf16", **changes})  # type: ignore[arg-type]


def test_each_plan_has_its_own_id() -> None:
    first, second = RolloutPlan("ref", "bf16"), RolloutPlan("ref", "bf16")
    assert len(first.rollout_id) == 16 and first.rollout_id != second.rollout_id


@pytest.mark.parametrize(
    ("verdict", "plain", "promote_marginal"),
    [
        (GateVerdict.passed, True, True),
        (GateVerdict.marginal, False, True),
        (GateVerdict.nodata, False, False),  # no data is never a reason to promote
        (GateVerdict.fail, False, False),
    ],
)
def test_may_promote(verdict: GateVerdict, plain: bool, promote_marginal: bool) -> None:
    assert may_promote(RolloutPlan("ref", "bf16"), gate(verdict)) is plain
    assert may_promote(RolloutPlan("ref", "bf16", promote_marginal=True), gate(verdict)) is promote_marginal
