"""A prompt format attached to a tokenizer: a system prompt through the chat template, or a template of its own
with `{question}` replaced as plain text; bad formats are named errors; without one nothing changes."""

import pytest
from conftest import make_tokenizer

from e2u.errors import E2UError
from e2u.model.prompts import (
    PromptFormat,
    encode_prompt,
    has_chat_template,
    prompt_format,
    question_ids,
    render_question,
    with_prompt_format,
)

CHAT = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}")
QUESTION = "what is the capital of France ?"


def chat_tokenizer():
    tokenizer = make_tokenizer()
    tokenizer.chat_template = CHAT
    return tokenizer


def test_without_a_format_the_rendering_is_unchanged():
    plain, chat = make_tokenizer(), chat_tokenizer()
    before = render_question(plain, QUESTION), render_question(chat, QUESTION)
    with_prompt_format(plain, None), with_prompt_format(chat, prompt_format({}))
    assert (render_question(plain, QUESTION), render_question(chat, QUESTION)) == before
    assert before == (f"Question: {QUESTION}\nAnswer:", f"<user>{QUESTION}</s><assistant>")


def test_a_system_prompt_goes_through_the_chat_template():
    tokenizer = with_prompt_format(chat_tokenizer(), prompt_format({"system": "You are a helpful assistant ."}))
    assert render_question(tokenizer, QUESTION) == f"<system>You are a helpful assistant .</s><user>{QUESTION}</s><assistant>"


def test_a_template_of_its_own_replaces_the_question_as_plain_text():
    tokenizer = with_prompt_format(chat_tokenizer(), prompt_format({"template": "[INST] {system} {question} [/INST]",
                                                                    "system": "sys {0} {__class__}"}))
    question = "who wrote {system} the book {question} ?"
    assert render_question(tokenizer, question) == f"[INST] sys {{0}} {{__class__}} {question} [/INST]"
    # rendered as a plain prompt (the tokenizer adds its own BOS), not as the chat template's output
    assert not has_chat_template(tokenizer) and has_chat_template(chat_tokenizer())
    assert question_ids(tokenizer, QUESTION) == encode_prompt(tokenizer, render_question(tokenizer, QUESTION))


@pytest.mark.parametrize("spec, message", [
    ({"template": "no placeholder"}, "template: expected exactly one {question} placeholder"),
    ({"template": "{question} {question}"}, "exactly one {question}"),
    ({"template": "{question}", "system": "s"}, "template has no {system} placeholder"),
    ({"system": "ask {question}"}, "the system prompt may not hold {question}"),
    ({"system": 3}, "system: expected a string"),
    ({"template": "x" * 5000 + "{question}"}, "at most 4000 characters"),
    ({"jinja": "{{ x }}"}, "expected a mapping with template and/or system"),
])
def test_a_bad_format_is_a_named_error(spec, message):
    with pytest.raises(E2UError, match="prompt: .*" + message.replace("{", r"\{").replace("}", r"\}")):
        prompt_format(spec)


def test_a_system_prompt_without_a_chat_template_needs_a_template():
    with pytest.raises(E2UError, match="system needs the tokenizer's chat template"):
        with_prompt_format(make_tokenizer(), PromptFormat(system="s"))
