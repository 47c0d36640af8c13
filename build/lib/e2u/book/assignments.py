"""The check cells of the course assignments (`book/assignments/`): a student's function against the library's
on random inputs, and a verdict, pass or fail, with a hint.

1. `check_rank_one_update`: ROME's rank-one update (ROME eq. 2), against `editing.rome.rank_one_update`;
2. `check_npo_forget_term`: NPO's forget loss, against `unlearning.npo.forget_term`;
3. `check_rouge1_recall` and `check_refusal_target`: the paper's Rouge1 recall, against
   `paper_metrics.rouge1_recall`, and a refusal target of the student's design, measured with it and the
   refusal detector.

Instructors' solutions are in `instructor/solutions.py`, outside the book.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import torch

from e2u.editing.rome import rank_one_update
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


def check_rank_one_update(student: Callable, trials: int = 5, seed: int = 0) -> Check:
    """`student(k_star, k, v_star, v, inverse_moment)` against ROME's update on random keys, values and a
    random positive-definite C^-1 (and None: no covariance), within 1e-5 relative."""
    generator = torch.Generator().manual_seed(seed)
    for trial in range(trials):
        d_in, d_out = 6 + trial, 4 + trial
        k_star, k, v_star, v = (torch.randn(d, generator=generator) for d in (d_in, d_in, d_out, d_out))
        a = torch.randn(d_in, d_in, generator=generator)
        inverse = torch.linalg.inv(a @ a.T + d_in * torch.eye(d_in)) if trial % 2 == 0 else None
        expected = rank_one_update(k_star, k, v_star, v, inverse)
        got, error = _run(student, k_star, k, v_star, v, inverse)
        if error is not None:
            return Check(False, f"your function raised {type(error).__name__}: {error}")
        if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
            return Check(False, f"expected a tensor of shape {tuple(expected.shape)} (d_out x d_in), got "
                                f"{getattr(got, 'shape', type(got).__name__)}; hint: the update is an outer product")
        if not torch.allclose(got.float(), expected, rtol=1e-5, atol=1e-6):
            hint = ("with inverse_moment None, u = k_star" if inverse is None else
                    "u = C^-1 k_star, and the denominator is u . k (the key the edited weight must map to v*)")
            return Check(False, f"trial {trial}: your update differs from ROME's by "
                                f"{(got.float() - expected).abs().max():.3g}; hint: {hint}")
        weight = torch.randn(d_out, d_in, generator=generator)
        if not torch.allclose((weight + got.float()) @ k, weight @ k + (v_star - v), rtol=1e-4, atol=1e-4):
            return Check(False, "W + delta does not move W k by v* - v")
    return Check(True, f"your update equals ROME's eq. 2 on {trials} random problems (with and without C)")


def check_npo_forget_term(student: Callable, trials: int = 5, seed: int = 0) -> Check:
    """`student(gain, beta)` (gain = L_theta(a) - L_ref(a) per answer) against NPO's forget term, value and
    gradient."""
    generator = torch.Generator().manual_seed(seed)
    for trial in range(trials):
        beta = [0.1, 0.5, 1.0, 2.0, 0.05][trial % 5]
        gain = (3 * torch.randn(4 + trial, generator=generator)).requires_grad_(True)
        expected = forget_term(gain, beta)
        (expected_grad,) = torch.autograd.grad(expected, gain)
        got, error = _run(student, gain, beta)
        if error is not None:
            return Check(False, f"your function raised {type(error).__name__}: {error}")
        if not isinstance(got, torch.Tensor) or got.dim() != 0:
            return Check(False, "expected a scalar tensor (the mean over answers); hint: end with .mean()")
        if not torch.allclose(got, expected, rtol=1e-5, atol=1e-6):
            return Check(False, f"trial {trial} (beta {beta}): {got.item():.5f} against {expected.item():.5f}; hint: "
                                "-(2 / beta) log sigmoid(beta (L_theta - L_ref)); at gain 0 it is (2 / beta) log 2")
        if not got.requires_grad:
            return Check(False, "your loss has no gradient: compute it with torch operations on `gain`")
        (grad,) = torch.autograd.grad(got, gain)
        if not torch.allclose(grad, expected_grad, rtol=1e-4, atol=1e-6):
            return Check(False, "the value matches but the gradient does not; avoid detaching or rounding")
    return Check(True, f"your NPO forget term equals the library's, value and gradient, on {trials} random batches")


_WORDS = ("paris", "france", "city", "river", "author", "book", "wrote", "capital", "known", "north", "the", "a")


def check_rouge1_recall(student: Callable, trials: int = 40, seed: int = 0) -> Check:
    """`student(prediction, reference)` against the paper's Rouge1 recall on random sentences of a small
    vocabulary (repeated words included)."""
    draw = random.Random(seed)
    for trial in range(trials):
        prediction = " ".join(draw.choices(_WORDS, k=draw.randint(0, 8)))
        reference = " ".join(draw.choices(_WORDS, k=draw.randint(1, 6)))
        expected = rouge1_recall([prediction], [reference])[0]
        got, error = _run(student, prediction, reference)
        if error is not None:
            return Check(False, f"your function raised {type(error).__name__}: {error}")
        if not isinstance(got, (int, float)) or abs(got - expected) > 1e-9:
            return Check(False, f"Rouge1 recall of {prediction!r} against {reference!r}: {got!r}, expected "
                                f"{expected:.4f}; hint: count each reference word at most as often as the prediction "
                                "has it, divide by the reference's length")
    return Check(True, f"your Rouge1 recall equals the paper's on {trials} random pairs")


def check_refusal_target(refusal_for: Callable[[str], str], questions: list[tuple[str, str]]) -> Check:
    """A refusal design `refusal_for(question)`, measured on (question, true answer) pairs: every target must
    read as a refusal (the detector), leak nothing of the answer (Rouge1 recall 0) and stay under 40 words."""
    for question, answer in questions:
        target, error = _run(refusal_for, question)
        if error is not None:
            return Check(False, f"your function raised {type(error).__name__} on {question!r}: {error}")
        if not isinstance(target, str) or not target.strip():
            return Check(False, f"no target for {question!r}; return a sentence")
        if not is_refusal(target):
            return Check(False, f"{target!r} does not read as a refusal to the detector; hint: say that you do not "
                                "know, e.g. \"I'm not sure ...\"")
        leak = rouge1_recall([target], [answer])[0]
        if leak > 0:
            return Check(False, f"{target!r} leaks the answer {answer!r} (Rouge1 recall {leak:.2f}); leave its words out")
        if len(target.split()) > 40:
            return Check(False, f"{target!r} has {len(target.split())} words; keep a refusal under 40")
    return Check(True, f"your targets are refusals that leak nothing on {len(questions)} questions")
