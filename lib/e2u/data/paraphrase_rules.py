"""Rephrasing a question by rules: the rephrase attack's last resort, when neither the data nor the model gives one.

A rule rewrites the *frame* of a question and copies the rest of it verbatim, so every name, quoted title and
number in it survives by construction ("Who wrote 'Emma'?" -> "Who is the author of 'Emma'?"; "What is the
capital of Chad?" -> "Which city serves as the capital of Chad?"). The rules are tried in order, the specific
rewordings first; a yes/no question is asked as "Yes or no, is ...?", and any other wh-question becomes an
indirect one ("Can you tell me who ...?"), a new sentence asking the same thing. A sentence that asks nothing
(a statement, an instruction other than "Name ...") gets none: the caller
(`rephrase.rule_paraphrases`) records the reason, and checks every rewrite as it checks the model's
(`rephrase.check_paraphrase`: a new sentence, every name kept, one question ending in '?').

The rules were written for this project from the forms of TOFU's real-author and world-fact questions and of
PISTOL's contract questions (reference/paper-protocol.md); they are grammar, not knowledge: "Who painted X?"
becomes "Who was the painter of X?" whatever X is.
"""

from __future__ import annotations

import re
from types import MappingProxyType

# A past-tense verb of making -> the maker ("Who painted X?" -> "Who was the painter of X?").
AGENTS = MappingProxyType({
    "painted": "painter", "composed": "composer", "invented": "inventor", "discovered": "discoverer",
    "founded": "founder", "directed": "director", "designed": "designer", "sculpted": "sculptor",
    "developed": "developer", "created": "creator", "built": "builder", "authored": "author", "penned": "author",
})
# Verbs that may follow "Which <noun>" or "What <noun>" ("Which river flows through Cologne?").
_VERBS = ("is|was|are|were|has|had|have|can|could|will|would|wrote|painted|composed|invented|discovered|founded|"
          "directed|designed|created|developed|built|won|led|became|played|sang|starred|ruled|flows|lies|borders|"
          "orbits|produces|hosts|uses|contains|holds|connects|separates|signed|made|gave|took|served|came|"
          "first|originally")
WH_WORDS = frozenset("who whom whose what which where when why how".split())
PREPOSITIONS = frozenset("in on at from to by for of during under with into through".split())
_NOT_WH = r"(?!(?:who|whom|whose|what|which|where|when|why|how|in|on|at|by|for|from|to)\b)"  # a fronted subject
_NOUN_END = r"(?:[\w'’-]+ ){0,2}[\w'’-]+"  # a question's last words: "which (mountain) range?"
_NOUN = r"(?!(?:of|in|on|among|between)\b)(?P<noun>(?:[\w'’-]+ ){0,2}?[\w'’-]+)"  # "Which of ..." is no noun


def _agent(match: re.Match) -> str:
    return f"Who was the {AGENTS[match['verb'].lower()]} of {match['rest']}?"


def _which_noun(match: re.Match) -> str | None:
    """"Which river flows through Cologne?" -> "Can you name the river that flows through Cologne?"; not when the
    question ends on a preposition ("Which continent is Egypt in?" would read "... that is Egypt in?")."""
    if match["rest"].split()[-1:] and match["rest"].split()[-1].lower() in PREPOSITIONS:
        return None
    return f"Can you name the {match['noun']} that {match['verb']}{match['rest']}?"


def _lower_article(text: str) -> str:
    """A sentence's first word in lower case when it is an article ("The Great Wall" -> "the Great Wall")."""
    first, _, rest = text.partition(" ")
    return f"{first.lower()} {rest}" if first.lower() in ("the", "a", "an") and rest else text


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _indirect(match: re.Match) -> str:
    return f"Can you tell me {_lower_first(match['all'])}?"


# (name, pattern over the question without its final '?', rewrite): tried in this order, the first whose pattern
# matches and whose rewrite gives a question (not None) wins; the name is what the result file counts. Patterns
# ignore the frame's case; the rest of the question is copied as it is.
RULES = (
    ("author_of", r"who (?:is|was) the (?:author|writer) of (?P<rest>.+)", lambda m: f"Who wrote {m['rest']}?"),
    ("wrote", r"who wrote (?P<rest>.+)", lambda m: f"Who is the author of {m['rest']}?"),
    ("agent", rf"who (?P<verb>{'|'.join(AGENTS)}) (?P<rest>.+)", _agent),
    ("known_as", r"who (?:is|was) (?P<how>known|famous|best known|remembered) (?P<prep>as|for) (?P<rest>.+)",
     lambda m: f"Can you name the person {m['how']} {m['prep']} {m['rest']}?"),
    ("capital", r"(?:what|which city) is the capital(?: city)? of (?P<rest>.+)",
     lambda m: f"Which city serves as the capital of {m['rest']}?"),
    ("serves_as_capital", r"which city serves as the capital of (?P<rest>.+)",
     lambda m: f"What is the capital of {m['rest']}?"),
    ("currency", r"what (?:is|was) the (?:official )?currency (?:of|used in) (?P<rest>.+)",
     lambda m: f"Which currency is used in {m['rest']}?"),
    ("which_noun", rf"(?:which|what) {_NOUN} (?P<verb>{_VERBS})\b(?P<rest>.*)", _which_noun),
    ("what_is_the", r"what (?:is|are|was|were) (?P<rest>(?:the|a|an) .+)", lambda m: f"Can you tell me {m['rest']}?"),
    ("year", r"in (?:which|what) year (?P<rest>.+)", lambda m: f"When {m['rest']}?"),
    ("when", r"when (?P<rest>(?:did|was|were|is|are|does|do|had|has) .+)", lambda m: f"At what time {m['rest']}?"),
    ("where", r"where (?P<rest>(?:is|are|was|were|would|could|can|do|does|did|will) .+)",
     lambda m: f"In what place {m['rest']}?"),
    ("name", r"(?P<verb>name|identify|list) (?P<rest>.+)", lambda m: f"Can you {m['verb'].lower()} {m['rest']}?"),
    ("fronted_wh", rf"{_NOT_WH}(?P<subj>.+?) (?P<aux>is|was|are|were) (?P<mid>(?:.+? )?)(?:which|what) "
                   rf"(?P<noun>{_NOUN_END})",
     lambda m: f"Which {m['noun']} {m['aux']} {_lower_article(m['subj'])} {m['mid'].strip()}?".replace(" ?", "?")),
    ("yes_no", r"(?P<rest>(?:is|are|was|were|do|does|did|can|could|has|have|had|will|would|should) .+)",
     lambda m: f"Yes or no, {_lower_first(m['rest'])}?"),
)
_COMPILED = tuple((name, re.compile(pattern + r"\s*$", re.IGNORECASE), rewrite) for name, pattern, rewrite in RULES)
_INDIRECT = re.compile(r"(?P<all>(?:(?P<prep>\w+) )?(?P<wh>\w+)\b.*)$", re.IGNORECASE)
_END = re.compile(r"\s*[?.!]+\s*$")


def rule_paraphrase(question: str) -> tuple[str | None, str]:
    """(the rewritten question, the rule's name), or (None, "no_rule") when no rule fits `question`.

    The specific rules of `RULES` first; then any wh-question (or one opening with a preposition and a wh-word,
    "In which country ...?") becomes an indirect question, "Can you tell me in which country ...?".
    """
    body = _END.sub("", question.strip())
    if not body:
        return None, "no_rule"
    for name, pattern, rewrite in _COMPILED:
        match = pattern.match(body)
        rewritten = rewrite(match) if match else None
        if rewritten is not None:
            return rewritten, name
    match = _INDIRECT.match(body)
    words = body.split()
    if match and (words[0].lower() in WH_WORDS
                  or (len(words) > 1 and words[0].lower() in PREPOSITIONS and words[1].lower() in WH_WORDS)):
        return _indirect(match), "indirect"
    if any(w.lower().strip("'’,") in WH_WORDS for w in words[1:]) and question.rstrip().endswith("?"):
        return f"Tell me, {_lower_article(body)}?", "tell_me"  # "The Mona Lisa hangs in which museum?"
    return None, "no_rule"
