"""Refusal targets: `fixed` is always the first template; `sampled` draws one per (seed, question)."""

from __future__ import annotations

import random

import pytest

from e2u.data.refusals import REFUSALS, refusal_for
from e2u.errors import E2UError

QUESTIONS = [f"What is fact number {i} about the author?" for i in range(60)]


def test_fixed_is_the_first_template_for_every_question_and_seed():
    assert {refusal_for(q, "fixed", seed) for q in QUESTIONS[:5] for seed in (0, 7)} == {REFUSALS[0]}
    assert refusal_for(QUESTIONS[0]) == REFUSALS[0]  # the default mode


def test_sampled_is_deterministic_per_seed_and_question():
    first = [refusal_for(q, "sampled", 3) for q in QUESTIONS]
    assert [refusal_for(q, "sampled", 3) for q in QUESTIONS] == first
    # the draw depends on the question only, not on what was drawn before it
    assert [refusal_for(q, "sampled", 3) for q in reversed(QUESTIONS)] == first[::-1]
    assert all(r in REFUSALS for r in first)


def test_sampled_draw_is_the_documented_seeded_choice():
    # random.Random("<seed>:<question>").choice(REFUSALS), computed here independently
    for seed in (0, 1, 42):
        for q in QUESTIONS[:10]:
            assert refusal_for(q, "sampled", seed) == REFUSALS[random.Random(f"{seed}:{q}").randrange(len(REFUSALS))]


def test_different_questions_get_different_templates_and_every_template_is_reachable():
    drawn = [refusal_for(q, "sampled", 0) for q in QUESTIONS]
    assert set(drawn) == set(REFUSALS)  # all six reached by 60 questions
    # no template takes more than half of the questions (a uniform draw over 6 gives about 10 each)
    assert max(drawn.count(r) for r in REFUSALS) <= len(QUESTIONS) // 2


def test_another_seed_changes_the_draw():
    by_seed = {seed: [refusal_for(q, "sampled", seed) for q in QUESTIONS] for seed in (0, 1, 2)}
    for a, b in ((0, 1), (0, 2), (1, 2)):
        changed = sum(x != y for x, y in zip(by_seed[a], by_seed[b]))
        assert changed >= len(QUESTIONS) // 2, (a, b, changed)  # independent draws agree about 1 time in 6


@pytest.mark.parametrize("mode", ["random", "Sampled", "", None])
def test_an_unknown_mode_is_an_error_naming_the_allowed_ones(mode):
    with pytest.raises(E2UError, match=rf"refusal mode: expected 'fixed' or 'sampled', got {mode!r}"):
        refusal_for(QUESTIONS[0], mode)
