"""How a question becomes model input: the chat template when the model has one.

Editing and evaluation use the same rendering (DESIGN section 3): the edit request's prompt is the
question rendered through the chat template, and the target follows it directly, then EOS.
Models without a chat template (base models, the tiny test models) get `Question: ...\nAnswer:`.

A `PromptFormat` attached to a tokenizer (`with_prompt_format`) renders as a finetuned checkpoint expects
(TOFU's, open-unlearning's): a system prompt given to the chat template, or a template string of its own in
which `{question}` (and `{system}`) are replaced as plain text, never through str.format or Jinja. A template
of its own is rendered as the plain one is: the tokenizer adds its BOS, and the answer follows after a space.
"""

from __future__ import annotations

from dataclasses import dataclass

from e2u.errors import E2UError

PLAIN_TEMPLATE = "Question: {question}\nAnswer:"
_FORMAT = "_e2u_prompt_format"  # an attribute of one tokenizer object, set only by `with_prompt_format`
MAX_PROMPT_CHARS = 4000


@dataclass(frozen=True)
class PromptFormat:
    template: str = ""  # "...{question}..." (and optionally {system}): rendered without the chat template
    system: str = ""  # a system prompt: a system message of the chat template, or {system} in `template`

    def check(self, where: str = "prompt") -> "PromptFormat":
        for name in ("template", "system"):
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) > MAX_PROMPT_CHARS:
                raise E2UError(f"{where}: {name}: expected a string of at most {MAX_PROMPT_CHARS} characters, "
                               f"got {str(value)[:80]!r}")
        if self.template and self.template.count("{question}") != 1:
            raise E2UError(f"{where}: template: expected exactly one {{question}} placeholder, got {self.template!r}")
        if "{question}" in self.system:
            raise E2UError(f"{where}: system: the system prompt may not hold {{question}}")
        if self.system and self.template and "{system}" not in self.template:
            raise E2UError(f"{where}: system is given but template has no {{system}} placeholder to put it in")
        return self


def prompt_format(spec: dict | None, where: str = "prompt") -> PromptFormat | None:
    """A checked `PromptFormat` from a study's `prompt: {template, system}` (None when absent or empty)."""
    if not spec:
        return None
    if not isinstance(spec, dict) or set(spec) - {"template", "system"}:
        raise E2UError(f"{where}: expected a mapping with template and/or system, got {spec!r}")
    return PromptFormat(spec.get("template", ""), spec.get("system", "")).check(where)


def with_prompt_format(tokenizer, fmt: PromptFormat | None):
    """`tokenizer`, rendering every question with `fmt` from now on (None: as before). A system prompt without a
    template of its own needs the tokenizer's chat template."""
    if fmt is not None:
        fmt.check()
        if fmt.system and not fmt.template and not getattr(tokenizer, "chat_template", None):
            raise E2UError("prompt: system needs the tokenizer's chat template, which this tokenizer lacks; give "
                           "a template with {system} and {question} instead")
    setattr(tokenizer, _FORMAT, fmt)
    return tokenizer


def _format_of(tokenizer) -> PromptFormat | None:
    return getattr(tokenizer, _FORMAT, None)


def format_key(tokenizer) -> dict:
    """What a cache key adds for `tokenizer`'s rendering: `{"prompt": {template, system}}`, or nothing without a
    format (so the keys of caches made before formats existed stay the same)."""
    fmt = _format_of(tokenizer)
    return {"prompt": {"template": fmt.template, "system": fmt.system}} if fmt else {}


def has_chat_template(tokenizer) -> bool:
    """Whether questions are rendered through the tokenizer's chat template (not when a template of its own is set)."""
    fmt = _format_of(tokenizer)
    return bool(getattr(tokenizer, "chat_template", None)) and not (fmt and fmt.template)


def render_question(tokenizer, question: str) -> str:
    """The prompt string for `question`, ending where the answer begins."""
    fmt = _format_of(tokenizer)
    if fmt and fmt.template:
        return fmt.template.replace("{system}", fmt.system).replace("{question}", question)
    if has_chat_template(tokenizer):
        system = [{"role": "system", "content": fmt.system}] if fmt and fmt.system else []
        messages = system + [{"role": "user", "content": question}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return PLAIN_TEMPLATE.format(question=question)


def render_conversation(tokenizer, turns, message: str) -> str | None:
    """The prompt for `message` after earlier `(user, assistant)` exchanges, through the chat template (with the
    format's system prompt), ending where the reply begins; None where questions are not rendered through a chat
    template (a plain or own-template format has no turns: the caller writes them into one message)."""
    if not has_chat_template(tokenizer):
        return None
    fmt = _format_of(tokenizer)
    messages = [{"role": "system", "content": fmt.system}] if fmt and fmt.system else []
    for user, assistant in turns:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    messages.append({"role": "user", "content": message})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_prompt(tokenizer, text: str) -> list[int]:
    """Token ids of a rendered prompt. Chat templates already write their own BOS."""
    return tokenizer(text, add_special_tokens=not has_chat_template(tokenizer))["input_ids"]


def encode_answer(tokenizer, answer: str, with_eos: bool = True) -> list[int]:
    """Token ids of an answer that follows a rendered prompt (a space after `Answer:`), plus EOS."""
    text = answer if has_chat_template(tokenizer) else " " + answer.lstrip()
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids + [tokenizer.eos_token_id] if with_eos else ids


def question_ids(tokenizer, question: str) -> list[int]:
    return encode_prompt(tokenizer, render_question(tokenizer, question))
