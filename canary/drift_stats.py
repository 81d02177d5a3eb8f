"""Drift statistics: does a pool produce the same model as the reference? Pure functions, no I/O.

Three views of the same question, from cheapest to most production-like:
- teacher-forced: both pools score the same fixed text; compare their next-token distributions position by
  position (each side reports only its top-k, so the rest of the vocabulary is estimated, see `position_divergence`);
- greedy: where does the pool's greedy output first leave the reference's, and is the token it emitted there
  one the reference would never have picked (not in its top-5: vLLM's check_logprobs_close rule)? Does it
  emit the argmax of its own reported distribution (a sampler fault breaks exactly that)?
- sampled: do samples at production settings come from the same distribution? Two-sample tests (chi-square on
  categorical outcomes, MMD with a Hamming kernel on whole outputs), corrected for multiplicity (Benjamini-Hochberg).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

TopLogprobs = Mapping[str, float]  # token -> logprob, the top-k a server reported at one position
FLOOR = 1e-6  # the least probability a token outside a side's top-k is given


@dataclass(frozen=True)
class PositionDivergence:
    kl: float  # KL(reference || pool) over the union of both top-k sets plus the rest, in nats
    top1_agree: bool
    max_abs_dp: float  # largest |p_ref - p_pool| over the union


def _completed(top: TopLogprobs, union: Sequence[str], floor: float) -> np.ndarray:
    """Probabilities over `union` + one bucket for everything else. Tokens this side did not report share
    what its top-k leaves over, each at least `floor`; the bucket keeps the rest; then normalised."""
    known = {t: math.exp(lp) for t, lp in top.items()}
    rest = max(1.0 - sum(known.values()), 0.0)
    missing = [t for t in union if t not in known]
    each = max(rest / (len(missing) + 1), floor) if missing else 0.0
    probs = np.array([known.get(t, each) for t in union] + [max(rest - each * len(missing), floor)])
    return np.asarray(probs / probs.sum(), dtype=float)


def position_divergence(reference: TopLogprobs, pool: TopLogprobs, floor: float = FLOOR) -> PositionDivergence:
    """How far the pool's next-token distribution is from the reference's at one position."""
    if not reference or not pool:
        raise ValueError("both sides need at least one reported logprob")
    union = sorted(set(reference) | set(pool))
    p, q = _completed(reference, union, floor), _completed(pool, union, floor)
    kl = float(np.sum(p * (np.log(p) - np.log(q))))
    top1 = max(reference, key=reference.__getitem__) == max(pool, key=pool.__getitem__)
    return PositionDivergence(kl=max(kl, 0.0), top1_agree=top1, max_abs_dp=float(np.max(np.abs(p - q)[:-1])))


@dataclass(frozen=True)
class SequenceDivergence:
    positions: int
    mean_kl: float
    max_kl: float
    top1_agreement: float  # share of positions whose argmax agrees
    max_abs_dp: float
    worst_position: int  # where the KL is largest


def sequence_divergence(
    reference: Sequence[TopLogprobs], pool: Sequence[TopLogprobs], floor: float = FLOOR
) -> SequenceDivergence:
    """Teacher-forced comparison of one probe: both sides scored the same tokens."""
    if len(reference) != len(pool) or not reference:
        raise ValueError(f"need the same non-zero number of positions, got {len(reference)} and {len(pool)}")
    each = [position_divergence(r, p, floor) for r, p in zip(reference, pool, strict=True)]
    kls = [d.kl for d in each]
    return SequenceDivergence(
        positions=len(each), mean_kl=float(np.mean(kls)), max_kl=max(kls),
        top1_agreement=sum(d.top1_agree for d in each) / len(each), max_abs_dp=max(d.max_abs_dp for d in each),
        worst_position=int(np.argmax(kls)),
    )  # fmt: skip


@dataclass(frozen=True)
class GreedyComparison:
    first_divergence: int | None  # index of the first token that differs; None when the outputs agree
    hard_mismatch: bool  # the pool's token there is not in the reference's top-n
    pool_token: str | None
    reference_token: str | None


def first_divergence(reference: Sequence[str], pool: Sequence[str]) -> int | None:
    for i, (a, b) in enumerate(zip(reference, pool, strict=False)):
        if a != b:
            return i
    return None if len(reference) == len(pool) else min(len(reference), len(pool))


def compare_greedy(
    reference_tokens: Sequence[str], reference_top: Sequence[TopLogprobs], pool_tokens: Sequence[str], top_n: int = 5
) -> GreedyComparison:
    """Greedy outputs of the reference and a pool. A divergence is benign when the pool's token is among the
    reference's top_n candidates there (close logits, other numerics); hard when it is not."""
    at = first_divergence(reference_tokens, pool_tokens)
    if at is None:
        return GreedyComparison(None, False, None, None)
    pool_token = pool_tokens[at] if at < len(pool_tokens) else None
    ref_token = reference_tokens[at] if at < len(reference_tokens) else None
    if pool_token is None or at >= len(reference_top):  # one side stopped early: compare what stopping means
        return GreedyComparison(at, False, pool_token, ref_token)
    candidates = sorted(reference_top[at], key=reference_top[at].__getitem__, reverse=True)[:top_n]
    return GreedyComparison(at, pool_token not in candidates, pool_token, ref_token)


def self_inconsistency(tokens: Sequence[str], top: Sequence[TopLogprobs]) -> float:
    """Share of generated positions, among those with reported logprobs, where the emitted token is not the
    argmax of the pool's own reported logprobs; 0 when none has any. vLLM reports raw logprobs (before logits
    processors): a faulty sampler emits tokens its logprobs disown."""
    if len(tokens) != len(top):
        raise ValueError(f"{len(tokens)} tokens but {len(top)} logprob positions")
    disowned = [t != max(lp, key=lp.__getitem__) for t, lp in zip(tokens, top, strict=True) if lp]
    return sum(disowned) / len(disowned) if disowned else 0.0


def unexpected_rate(texts: Iterable[str], alphabet: str) -> tuple[float, int, int]:
    """(rate, unexpected characters, characters) of outputs against the characters they may contain."""
    allowed = set(alphabet)
    total = bad = 0
    for text in texts:
        total += len(text)
        bad += sum(ch not in allowed for ch in text)
    return (bad / total if total else 0.0), bad, total


@dataclass(frozen=True)
class TestResult:
    statistic: float
    p_value: float


def chi_square_two_sample(a: Sequence[Hashable], b: Sequence[Hashable], min_expected: float = 5.0) -> TestResult:
    """Do two samples of categorical outcomes come from the same distribution? A 2 x k contingency table;
    categories too rare for the chi-square approximation (expected count below `min_expected` on either
    side) are pooled into one. p = 1 when only one category is left (nothing to tell apart)."""
    if not a or not b:
        raise ValueError("both samples need at least one outcome")
    ca, cb = Counter(a), Counter(b)
    n_a, n_b = len(a), len(b)
    categories = sorted(set(ca) | set(cb), key=lambda c: -(ca[c] + cb[c]))
    kept, rare = [], [0, 0]
    for c in categories:
        total = ca[c] + cb[c]
        if min(total * n_a, total * n_b) / (n_a + n_b) >= min_expected:
            kept.append([ca[c], cb[c]])
        else:
            rare[0] += ca[c]
            rare[1] += cb[c]
    if rare != [0, 0]:
        kept.append(rare)
    if len(kept) < 2:
        return TestResult(0.0, 1.0)
    statistic, p, _, _ = stats.chi2_contingency(np.array(kept).T, correction=False)
    return TestResult(float(statistic), float(p))


def _hamming_kernel(samples: Sequence[str]) -> np.ndarray:
    """k(x, y) = share of positions where x and y agree, both padded to the longest sample."""
    width = max((len(s) for s in samples), default=0) or 1
    codes = np.full((len(samples), width), -1, dtype=np.int32)
    for i, s in enumerate(samples):
        codes[i, : len(s)] = [ord(ch) for ch in s]
    return np.asarray(np.mean(codes[:, None, :] == codes[None, :, :], axis=2), dtype=float)


def _mmd2(kernel: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Unbiased MMD^2 for each row of `masks` (1 where a sample belongs to the first group), all at once."""
    off_diagonal = kernel - np.diag(np.diag(kernel))
    a, b = masks, 1.0 - masks
    m, n = a.sum(axis=1), b.sum(axis=1)
    within_a = np.einsum("pi,ij,pj->p", a, off_diagonal, a) / (m * (m - 1))
    within_b = np.einsum("pi,ij,pj->p", b, off_diagonal, b) / (n * (n - 1))
    between = np.einsum("pi,ij,pj->p", a, kernel, b) / (m * n)
    return np.asarray(within_a + within_b - 2 * between, dtype=float)


def mmd_hamming(a: Sequence[str], b: Sequence[str], permutations: int = 500, seed: int = 0) -> TestResult:
    """Maximum mean discrepancy between two samples of outputs with a Hamming kernel; the p-value from a
    permutation test, (1 + #{permuted >= observed}) / (1 + permutations), exact in level."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError("MMD needs at least two outputs per sample")
    kernel = _hamming_kernel([*a, *b])
    observed_mask = (np.arange(len(a) + len(b)) < len(a)).astype(float)
    rng = np.random.default_rng(seed)
    shuffled = np.array([rng.permutation(observed_mask) for _ in range(permutations)]).reshape(permutations, -1)
    observed = float(_mmd2(kernel, observed_mask[None, :])[0])
    exceed = int(np.sum(_mmd2(kernel, shuffled) >= observed - 1e-12)) if permutations else 0
    return TestResult(observed, (1 + exceed) / (1 + permutations))


def benjamini_hochberg(p_values: Sequence[float], alpha: float) -> tuple[list[float], list[bool]]:
    """Adjusted p-values (step-up, monotone) and which hypotheses are rejected at false-discovery rate `alpha`."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    m = len(p_values)
    if m == 0:
        return [], []
    order = np.argsort(p_values)
    ranked = np.asarray(p_values, dtype=float)[order] * m / np.arange(1, m + 1)
    adjusted_sorted = np.minimum.accumulate(ranked[::-1])[::-1].clip(max=1.0)
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return adjusted.tolist(), [bool(p <= alpha) for p in adjusted]


def null_threshold(null_values: Sequence[float], alpha: float) -> float:
    """The value above which a statistic is flagged, from its values in A/A runs (reference against itself):
    the ceil((n + 1)(1 - alpha))-th smallest, so that a new null value exceeds it with probability <= alpha
    (the split-conformal guarantee). Infinite when there are too few A/A values for that alpha."""
    n = len(null_values)
    rank = math.ceil((n + 1) * (1 - alpha))
    if rank > n:
        return math.inf
    return float(np.sort(np.asarray(null_values, dtype=float))[rank - 1])
