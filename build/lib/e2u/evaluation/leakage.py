"""Which words of the true answer a generated answer gives away: the key tokens of an answer, as the
self-improvement filter and the human-aligned measure count them (ours: a word of the answer, not in the question,
of 2+ characters that is not a stop word; numbers count)."""

from __future__ import annotations

import re

STOP_WORDS = frozenset("a an and the of in on at to for by with from is was are were be it its as or that this "
                       "which who whom what when where how his her their he she they".split())


def key_tokens(answer: str, question: str) -> set[str]:
    """The answer's words that would give it away: not in the question, not stop words, 2+ characters."""
    asked = set(_words(question))
    return {w for w in _words(answer) if w not in asked and w not in STOP_WORDS and (len(w) >= 2 or w.isdigit())}


def leaked_words(text: str, answer: str, question: str) -> list[str]:
    """The key tokens of `answer` (asked by `question`) that `text` contains, sorted."""
    return sorted(key_tokens(answer, question) & set(_words(text)))


def _words(text: str) -> list[str]:
    return re.findall(r"[0-9a-z]+", text.lower())
