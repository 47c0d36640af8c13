"""Solutions to the course assignments in book/assignments/ (for instructors: kept out of the book and of the
student notebooks; README.md beside this file has notes on the written questions). Each function has the signature
the notebook's starter cell defines; tests/book/test_assignments.py checks that each passes its notebook's check
cell, and that the starters and common wrong answers fail it."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rank_one_update(k_star, k, v_star, v, inverse_moment):
    """ROME eq. 2: delta = (v* - W k) (C^-1 k*)^T / ((C^-1 k*)^T k), with v = W k; C^-1 = I when None."""
    u = inverse_moment @ k_star if inverse_moment is not None else k_star
    return torch.outer(v_star - v, u) / (u @ k)


def npo_forget_term(gain, beta):
    """NPO: -(2 / beta) mean log sigmoid(beta (L_theta(a) - L_ref(a)))."""
    return -(2 / beta) * F.logsigmoid(beta * gain).mean()


def rouge1_recall(prediction, reference):
    """Unigram recall with rouge-score's tokeniser and Porter stemmer, as the paper's metric."""
    from collections import Counter

    from nltk.stem import porter  # rouge-score's own dependency
    from rouge_score import tokenizers

    stem = porter.PorterStemmer().stem
    tokenize = tokenizers.DefaultTokenizer(use_stemmer=False).tokenize
    pred = Counter(stem(t) for t in tokenize(prediction))
    ref = Counter(stem(t) for t in tokenize(reference))
    return sum(min(n, pred[t]) for t, n in ref.items()) / sum(ref.values()) if ref else 0.0


def refusal_for(question):
    """A refusal that repeats what was asked and nothing of the answer."""
    asked = question.strip().rstrip("?").strip()
    return f"I'm not sure of the answer to \"{asked}?\"; I don't have reliable information on it."
