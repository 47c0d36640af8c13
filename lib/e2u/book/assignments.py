"""The check cells of the course assignments (`book/assignments/`): each runs the function the student wrote in
the notebook, says PASS or FAIL with a hint, and writes nothing outside a temporary folder.

1. `check_rank_one_update`: ROME's rank-one update (ROME eq. 2), by the two properties that define it on random
   problems, then inside the library's ROME edit of a tiny model, with the student's function in place of the
   library's;
2. `check_npo_forget_term`: NPO's forget loss: minimised on a tiny model it must raise the forget answers' loss,
   then its value and gradient against NPO's equation (`unlearning.npo.forget_term`);
3. `check_rouge1_recall` and `check_refusal_target`: the paper's Rouge1 recall against
   `paper_metrics.rouge1_recall`, and a refusal target of the student's design: a refusal to the detector, none of
   the true answer's own words, and a word of what was asked.

The tiny model (`assignment_models.tiny_model`) is a random two-layer Llama with a word-level tokenizer: no download.
Instructors' solutions are in `instructor/solutions.py`, outside the book.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from e2u.book.assignment_models import tiny_rome_edit, tiny_unlearning
from e2u.evaluation.human_aligned import GENERIC_WORDS
from e2u.evaluation.leakage import key_tokens, leaked_words
from e2u.evaluation.metrics import is_refusal
from e2u.evaluation.paper_metrics import rouge1_recall
from e2u.unlearning.npo import forget_term


@dataclass(frozen=True)
class Check:
    passed: bool
    message: str

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}: {self.message}"

    def _repr_markdown_(self) -> str:
        return f"**{'PASS' if self.passed else 'FAIL'}**: {self.message}"


def _run(student: Callable, *args):
    """The student's value, or the exception it raised."""
    try:
        return student(*args), None
    except Exception as exc:  # a check reports a student's error as a failure, with its message
        return None, exc


def _raised(error: Exception, where: str = "") -> Check:
    return Check(False, f"your function raised {type(error).__name__}{where}: {error}")


# --- assignment 1: the rank-one update ---------------------------------------------------------------------------

def _random_problem(trial: int, generator: torch.Generator):
    d_in, d_out = 6 + trial, 4 + trial
    k_star, k, v_star, v = (torch.randn(d, generator=generator) for d in (d_in, d_in, d_out, d_out))
    a = torch.randn(d_in, d_in, generator=generator)
    inverse = torch.linalg.inv(a @ a.T + d_in * torch.eye(d_in)) if trial % 2 == 0 else None
    return k_star, k, v_star, v, inverse


def _properties(student: Callable, trials: int, seed: int) -> Check | None:
    """The two properties that together fix Delta: it moves the key k to v* (Delta k = v* - v), and it leaves
    every key x with u . x = 0 where it was (Delta x = 0), u = C^-1 k* (k* without C). None when all hold."""
    generator = torch.Generator().manual_seed(seed)
    for trial in range(trials):
        k_star, k, v_star, v, inverse = _random_problem(trial, generator)
        with_c = "with C" if inverse is not None else "without C (inverse_moment None)"
        got, error = _run(student, k_star, k, v_star, v, inverse)
        if error is not None:
            return _raised(error)
        shape = (v.numel(), k.numel())
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != shape:
            return Check(False, f"expected a tensor of shape {shape} (d_out x d_in), got "
                                f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}; "
                                "hint: the update is an outer product, torch.outer(column, row)")
        delta = got.detach().float()
        if not torch.isfinite(delta).all():
            return Check(False, f"trial {trial} ({with_c}): your update has inf or nan entries")
        moved, wanted = delta @ k, v_star - v
        if (moved - wanted).norm() > 1e-3 * wanted.norm():
            return Check(False, f"trial {trial} ({with_c}): (W + delta) k is not v*: delta k is off by "
                                f"{(moved - wanted).norm():.3g} (norm of v* - v: {wanted.norm():.3g}); hint: divide "
                                "by u . k, the key the edited weight must map to v*, with u = C^-1 k*")
        u = inverse @ k_star if inverse is not None else k_star
        others = torch.randn(3, k.numel(), generator=generator)
        others = others - torch.outer(others @ u, u) / (u @ u)  # keys with u . x = 0
        if (others @ delta.T).norm() > 1e-3 * delta.norm() * others.norm():
            return Check(False, f"trial {trial} ({with_c}): your update moves keys that ROME leaves alone (those "
                                "with u . x = 0); hint: its row must point along u = C^-1 k*, or k* when "
                                "inverse_moment is None")
    return None


def check_rank_one_update(student: Callable, trials: int = 5, seed: int = 0) -> Check:
    """`student(k_star, k, v_star, v, inverse_moment)` on random problems (with a random positive-definite C^-1,
    and None: no covariance), then in ROME's edit of a tiny model (`tiny_rome_edit`)."""
    failed = _properties(student, trials, seed)
    if failed is not None:
        return failed
    try:
        measured = tiny_rome_edit(student)
    except Exception as error:  # the student's function inside the edit, or the edit of what it returned
        return _raised(error, " inside ROME's edit")
    if measured["calls"] != 1 or not measured["weight_moved_by_yours"]:
        return Check(False, "ROME's edit did not change the weight by what your function returned")
    if measured["miss"] > 1e-3:
        return Check(False, f"after the edit, W k is {measured['miss']:.2g} of |v*| away from v*")
    if measured["after"] <= measured["before"]:
        return Check(False, f"the edit lowered the refusal's probability ({measured['before']:.3f} to "
                            f"{measured['after']:.3f})")
    return Check(True, f"your update has ROME's two properties on {trials} random problems (with and without C); "
                       "in ROME's edit of a tiny model it moved the edited key to v*, and the probability that the "
                       f"model answers with the refusal's first word went from {measured['before']:.4f} to "
                       f"{measured['after']:.3f}")


# --- assignment 2: the NPO loss ----------------------------------------------------------------------------------

def check_npo_forget_term(student: Callable, trials: int = 5, seed: int = 0) -> Check:
    """`student(gain, beta)` (gain = L_theta(a) - L_ref(a) per answer): minimised on a tiny model it must raise the
    forget answers' loss (the sign); then its value at gain 0, and its value and gradient on random batches, against
    NPO's equation."""
    gain = torch.zeros(3, requires_grad=True)
    got, error = _run(student, gain, 0.1)
    if error is not None:
        return _raised(error)
    if not isinstance(got, torch.Tensor) or got.dim() != 0:
        return Check(False, "expected a scalar tensor (the mean over answers); hint: end with .mean()")
    if not got.requires_grad:
        return Check(False, "your loss has no gradient: compute it with torch operations on `gain`")
    try:
        before, after = tiny_unlearning(student)
    except Exception as error:
        return _raised(error, " while a tiny model was trained on it")
    if not after > before:
        return Check(False, f"minimising your loss for 20 steps on a tiny model took the forget answers' loss from "
                            f"{before:.2f} to {after:.2f}: the model learned them instead of forgetting; hint: "
                            "check the sign, minimising the loss must raise L_theta")
    for beta in (0.1, 1.0):
        at_zero, error = _run(student, torch.zeros(3, requires_grad=True), beta)
        if error is not None:
            return _raised(error)
        start = 2 / beta * math.log(2)
        if abs(at_zero.item() - start) > 1e-4 * start:
            return Check(False, f"at gain 0 (the start, L_theta = L_ref) with beta {beta} your loss is "
                                f"{round(at_zero.item(), 4) + 0.0:.4f}; NPO's is (2 / beta) log 2 = {start:.4f}")
    generator = torch.Generator().manual_seed(seed)
    for trial in range(trials):
        beta = [0.1, 0.5, 1.0, 2.0, 0.05][trial % 5]
        gain = (3 * torch.randn(4 + trial, generator=generator)).requires_grad_(True)
        expected = forget_term(gain, beta)
        (expected_grad,) = torch.autograd.grad(expected, gain)
        got, error = _run(student, gain, beta)
        if error is not None:
            return _raised(error)
        if not torch.allclose(got, expected, rtol=1e-5, atol=1e-6):
            return Check(False, f"trial {trial} (beta {beta}): {got.item():.5f} against NPO's {expected.item():.5f}; "
                                "hint: -(2 / beta) log sigmoid(beta gain), averaged over the answers")
        (grad,) = torch.autograd.grad(got, gain)
        if not torch.allclose(grad, expected_grad, rtol=1e-4, atol=1e-6):
            return Check(False, "the value matches but the gradient does not; avoid detaching or rounding")
    return Check(True, f"minimising your loss raised a tiny model's loss on its forget answers from {before:.2f} to "
                       f"{after:.2f} in 20 steps, and it equals NPO's forget term, value and gradient, on {trials} "
                       "random batches")


# --- assignment 3: Rouge1 recall and a refusal target ------------------------------------------------------------

_WORDS = ("paris", "france", "city", "river", "author", "book", "wrote", "capital", "known", "north", "the", "a",
          "writing", "writes", "cities")


def check_rouge1_recall(student: Callable, trials: int = 40, seed: int = 0) -> Check:
    """`student(prediction, reference)` against the paper's Rouge1 recall on random sentences of a small
    vocabulary (repeated words and stemmed forms included)."""
    draw = random.Random(seed)
    for trial in range(trials):
        prediction = " ".join(draw.choices(_WORDS, k=draw.randint(0, 8)))
        reference = " ".join(draw.choices(_WORDS, k=draw.randint(1, 6)))
        expected = rouge1_recall([prediction], [reference])[0]
        got, error = _run(student, prediction, reference)
        if error is not None:
            return _raised(error)
        if not isinstance(got, (int, float)) or abs(got - expected) > 1e-9:
            return Check(False, f"Rouge1 recall of {prediction!r} against {reference!r}: {got!r}, expected "
                                f"{expected:.4f}; hint: count each reference word at most as often as the prediction "
                                "has it, divide by the reference's length")
    return Check(True, f"your Rouge1 recall equals the paper's on {trials} random pairs")


def asked_words(question: str) -> set[str]:
    """The words that say what a question asks: its words less stop words and the general words a refusal says
    whatever was asked (`human_aligned.GENERIC_WORDS`); naming one of those is not naming what was asked."""
    return key_tokens(question, "") - GENERIC_WORDS


def check_refusal_target(refusal_for: Callable[[str], str], questions: Sequence[tuple[str, str]],
                         rouge: Callable[[str, str], float] | None = None) -> Check:
    """A refusal design `refusal_for(question)`, on (question, true answer) pairs: every target must be a
    refusal to the detector, under 40 words, leak none of the answer's own words (those the question does not
    already say: `leakage.leaked_words`) and name what was asked (one of `asked_words(question)`), so one
    sentence for every question fails. With `rouge` (the student's Rouge1 recall), the pass says how the
    targets score on it."""
    targets = []
    for question, answer in questions:
        target, error = _run(refusal_for, question)
        if error is not None:
            return _raised(error, f" on {question!r}")
        if not isinstance(target, str) or not target.strip():
            return Check(False, f"no target for {question!r}; return a sentence")
        if not is_refusal(target):
            return Check(False, f"{target!r} does not read as a refusal to the detector; hint: say that you do not "
                                "know, e.g. \"I'm not sure ...\"")
        if len(target.split()) > 40:
            return Check(False, f"{target!r} has {len(target.split())} words; keep a refusal under 40")
        leaked = leaked_words(target, answer, question)
        if leaked:
            return Check(False, f"{target!r} leaks the answer {answer!r}: it says {', '.join(leaked)}")
        named = asked_words(question) & set(key_tokens(target, ""))
        if not named:
            return Check(False, f"{target!r} does not say what {question!r} asked: it names none of "
                                f"{', '.join(sorted(asked_words(question)))}; a refusal that fits every question "
                                "does not read as an answer to this one")
        targets.append(target)
    message = f"your targets are refusals that name what was asked and leak nothing, on {len(questions)} questions"
    if rouge is not None:
        scores, error = _run(lambda: [rouge(target, answer) for target, (_, answer) in zip(targets, questions)])
        if error is not None:
            return _raised(error, " (your Rouge1 recall)")
        message += (f"; their Rouge1 recall of the true answers, by your function: "
                    f"{', '.join(f'{s:.2f}' for s in scores)}")
    return Check(True, message)
