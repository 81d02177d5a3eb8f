from __future__ import annotations

from engine.arith import VOCAB, Problem, is_held_out, sample_problems, unique_held_out_problems


def test_problem_text() -> None:
    assert Problem(347, 85).prompt == "347+85="
    assert Problem(347, 85).answer == "432"


def test_held_out_rule_by_hand() -> None:
    # (a*1009 + b*9176 + 7) % 23: (0, 5): 45887 = 23*1995 + 2 -> kept; (1, 1): 10192 = 23*443 + 3 -> kept
    assert not is_held_out(0, 5) and not is_held_out(1, 1)
    # (2, 0): 2025 = 23*88 + 1 -> kept; (22, 0): 22205 = 23*965 + 10; (6, 0): 6061 = 23*263 + 12
    held = [(a, b) for a in range(40) for b in range(40) if is_held_out(a, b)]
    assert len(held) == sum(1 for a in range(40) for b in range(40) if (a * 1009 + b * 9176 + 7) % 23 == 0)
    assert 1600 / 23 - 15 < len(held) < 1600 / 23 + 15


def test_sampling_is_seeded_and_respects_the_split() -> None:
    train = sample_problems(300, seed=1, held_out=False)
    test = sample_problems(300, seed=1, held_out=True)
    assert train == sample_problems(300, seed=1, held_out=False)
    assert not any(is_held_out(p.a, p.b) for p in train)
    assert all(is_held_out(p.a, p.b) for p in test)
    assert all(0 <= p.a <= 999 and 0 <= p.b <= 999 for p in train + test)


def test_unique_held_out_problems_do_not_repeat() -> None:
    problems = unique_held_out_problems(1000, seed=5)
    assert len(set(problems)) == 1000


def test_vocab_has_specials_first_and_one_id_per_character() -> None:
    assert [VOCAB[t] for t in ("<pad>", "<s>", "</s>", "<unk>")] == [0, 1, 2, 3]
    assert VOCAB["0"] == 4 and VOCAB["="] == 15
    assert len(set(VOCAB.values())) == len(VOCAB)
