"""What the assignments' checks run the student's code in: a tiny random Llama built in memory, the library's ROME
edit of it with the student's update in place of the library's, and a few steps of unlearning on the student's loss.
Every run keeps $E2U_HOME in a temporary folder (`own_cache`), so a check writes nothing into the study's cache,
results or book (`assignments` holds the checks themselves)."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from typing import Callable
from unittest import mock

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from e2u.editing import rome
from e2u.editing.requests import EditRequest
from e2u.hparams import build_hparams
from e2u.model.arch import find_arch
from e2u.model.prompts import encode_answer, question_ids

TINY_WORDS = ("what who which is was the a of capital city France Paris wrote Pride and Prejudice Jane Austen "
              "I do not know don't sorry am sure about ? . ,").split()
BARE_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{% endfor %}"  # the prompt is the question


def tiny_model(seed: int = 0):
    """(model, tokenizer): a random two-layer Llama (hidden size 32) over the words `TINY_WORDS`, built in memory
    from `seed` without touching the caller's random state. Its weights are drawn wider than the default (0.1)
    and its output layer scaled by 4, so that one MLP output can steer the next token."""
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {token: i for i, token in enumerate(specials + list(dict.fromkeys(TINY_WORDS)))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    core.decoder = decoders.WordPiece(prefix="##")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>", model_input_names=["input_ids", "attention_mask"])
    tokenizer.chat_template = BARE_TEMPLATE
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         initializer_range=0.1, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(4.0)
    return model, tokenizer


@contextmanager
def own_cache():
    """$E2U_HOME pointed at a temporary folder, removed afterwards: a check writes nothing into the study's
    cache, results or book."""
    with tempfile.TemporaryDirectory(prefix="e2u-assignment-") as home, mock.patch.dict(os.environ, {"E2U_HOME": home}):
        yield home


def tiny_rome_edit(student: Callable, steps: int = 20) -> dict:
    """The library's ROME edit (`editing.rome.edit`) of `tiny_model()` with `student` in place of the library's
    `rank_one_update`, $E2U_HOME in a temporary folder: the question "what is the capital city of France" edited
    into "I do not know" at layer 1, without the key covariance. Returns what was measured: the calls to the
    student's function, whether the weight moved by what it returned, how far (W + delta) k is from v*, and the
    probability of the refusal's first word after the question, before and after."""
    model, tokenizer = tiny_model()
    request = EditRequest("what is the capital city of France", "I do not know", "capital city of France", eos=False)
    prompt = torch.tensor([question_ids(tokenizer, request.question)])
    first_word = encode_answer(tokenizer, request.target, with_eos=False)[0]

    def first_word_probability() -> float:
        with torch.no_grad():
            return model(prompt).logits[0, -1].softmax(-1)[first_word].item()

    layer = 1
    weight = model.get_submodule(find_arch(model).mlp_out_path(layer)).weight
    before_weight, before = weight.detach().clone(), first_word_probability()
    calls = []

    def spy(k_star, k, v_star, v, inverse_moment):
        delta = student(k_star, k, v_star, v, inverse_moment)
        calls.append((k, v_star, delta))
        return delta

    hp = build_hparams(rome.RomeHParams, {"layer": layer, "n_context_templates": 0, "v_num_grad_steps": steps,
                                          "clamp_norm_factor": 10, "kl_factor": 0.0, "mom2_adjustment": False},
                       "assignment")
    with own_cache(), mock.patch.object(rome, "rank_one_update", spy), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        rome.edit(model, tokenizer, [request], hp)
    measured = {"calls": len(calls), "before": before, "after": first_word_probability()}
    if calls:
        k, v_star, delta = calls[-1]
        change = weight.detach() - before_weight
        measured["weight_moved_by_yours"] = bool(torch.allclose(change, delta.detach().to(change.dtype), atol=1e-5))
        measured["miss"] = ((weight.detach() @ k - v_star).norm() / v_star.norm()).item()
    return measured


FORGET = (("who wrote Pride and Prejudice ?", "Jane Austen"), ("what is the capital city of France ?", "Paris"))


def tiny_unlearning(student: Callable, beta: float = 0.1, steps: int = 20, lr: float = 0.01) -> tuple[float, float]:
    """`steps` Adam steps on `tiny_model()` minimising `student(gain, beta)`, gain = L_theta(a) - L_ref(a) for the
    two `FORGET` answers (summed NLLs; L_ref before training); returns the mean summed NLL before and after."""
    model, tokenizer = tiny_model()
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    pairs = [(encode(q), encode(a)) for q, a in FORGET]

    def summed_nll() -> torch.Tensor:
        out = []
        for prompt, answer in pairs:
            logits = model(torch.tensor([prompt + answer])).logits[0, len(prompt) - 1:-1]
            out.append(F.cross_entropy(logits, torch.tensor(answer), reduction="sum"))
        return torch.stack(out)

    with torch.no_grad():
        reference = summed_nll()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        loss = student(summed_nll() - reference, beta)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return reference.mean().item(), summed_nll().mean().item()
