"""Shared fixtures: a tiny random Llama with a word-level tokenizer, built in the test (no download)."""

from __future__ import annotations

import pytest
import torch

WORDS = (
    "Question Answer : ? . , the a is of in what who where which capital city country currency language "
    "Paris France Rome Italy Berlin Germany Tokyo Japan Madrid Spain Lisbon Portugal Vienna Austria euro yen "
    "I do not know don't have any information about that sorry cannot answer am afraid wrote invented "
    "painted founded tell me lives river mountain music book film year red blue green dog cat house tree"
).split()


def make_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {token: i for i, token in enumerate(specials + list(dict.fromkeys(WORDS)))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    core.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", unk_token="<unk>",
                                   model_input_names=["input_ids", "attention_mask"])


def make_tiny_llama(seed: int = 0, layers: int = 4, hidden: int = 64, intermediate: int = 128, tied: bool = False,
                    initializer_range: float = 0.02):
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = make_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=tied,
        initializer_range=initializer_range,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    return model, tokenizer


@pytest.fixture
def tiny_llama():
    return make_tiny_llama()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own $E2U_HOME, so no test reads another's cache."""
    monkeypatch.setenv("E2U_HOME", str(tmp_path / "e2u_home"))


@pytest.fixture(autouse=True, scope="session")
def few_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def saved_tiny_model(tmp_path):
    """A tiny random model and its tokenizer saved in `tmp_path / "model"` (its path), as a study names one."""
    model, tokenizer = make_tiny_llama()
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def tiny_tofu_cells(tmp_path, methods: str, name: str = "tiny") -> list:
    """The cells of a study on a tiny random model saved under `tmp_path` and a local TOFU forget01 split;
    `methods` is the study file's `methods:` block (YAML lines)."""
    from test_loaders import tofu_dir

    from e2u.study.grid import load_study

    study = tmp_path / "study.yaml"
    study.write_text(
        f"name: {name}\nmodel: {saved_tiny_model(tmp_path)}\nevaluation: {{max_new_tokens: 3, batch_size: 8}}\nsettings:\n"
        f"  - {{name: tofu, data: {{source: tofu, path: {tofu_dir(tmp_path)}, forget_split: forget01}}}}\n"
        f"methods:\n{methods}")
    return load_study(study).cells
