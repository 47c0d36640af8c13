"""How a question becomes model input: the chat template when the model has one.

Editing and evaluation use the same rendering (DESIGN section 3): the edit request's prompt is the
question rendered through the chat template, and the target follows it directly, then EOS.
Models without a chat template (base models, the tiny test models) get `Question: ...\nAnswer:`.
"""

from __future__ import annotations

PLAIN_TEMPLATE = "Question: {question}\nAnswer:"


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_question(tokenizer, question: str) -> str:
    """The prompt string for `question`, ending where the answer begins."""
    if has_chat_template(tokenizer):
        messages = [{"role": "user", "content": question}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return PLAIN_TEMPLATE.format(question=question)


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
