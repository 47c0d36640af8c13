"""What every locate-then-edit method (ROME, MEMIT, AlphaEdit) sets up before its first edit.

The layers it rewrites, the context templates its keys and values average over, the key second
moments C = E[k k^T] of those layers, and which requests' prompts do not contain their subject.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from e2u import cache
from e2u.editing.keys import context_templates
from e2u.editing.requests import EditRequest, report_missing_subjects
from e2u.editing.stats import MOMENT_DTYPES, layer_moments
from e2u.editing.values import ValueHParams
from e2u.files import sha256_of_file
from e2u.hparams import whole_number
from e2u.model.arch import Arch, find_arch
from e2u.model.load import input_device, require_own_statistics, statistics_fingerprint


@dataclass
class LocateHParams(ValueHParams):
    """Value optimisation, context templates and the statistics corpus."""
    n_context_templates: int = 5
    context_template_length: int = 10
    mom2_corpus: str = "model_samples+question_bank"
    mom2_corpus_texts: int = 64
    mom2_n_tokens: int = 20_000
    mom2_max_length: int = 256
    mom2_dtype: str = "float32"
    seed: int = 0

    ALIASES = {"v_steps": "v_num_grad_steps"}
    # names that mean something else here, refused with the reason rather than read in other units
    REFUSED = {"mom2_n_samples": "the reference implementations count Wikipedia documents, e2u counts tokens of "
                                 "its own corpus; give mom2_n_tokens (and mom2_corpus_texts)"}

    def extra_rules(self) -> dict:
        at_least = lambda name, least: (whole_number(getattr(self, name)) and getattr(self, name) >= least,  # noqa: E731
                                        f"an integer >= {least}")
        return {"n_context_templates": at_least("n_context_templates", 0),
                "context_template_length": at_least("context_template_length", 1),
                "mom2_corpus_texts": at_least("mom2_corpus_texts", 1), "mom2_n_tokens": at_least("mom2_n_tokens", 1),
                "mom2_max_length": at_least("mom2_max_length", 1),
                "mom2_dtype": (self.mom2_dtype in MOMENT_DTYPES, f"one of {sorted(MOMENT_DTYPES)}"),
                "seed": (whole_number(self.seed), "an integer")}


@dataclass
class EditSetup:
    arch: Arch
    layers: list[int]
    templates: list[str]
    moments: dict[int, torch.Tensor]  # empty when the method does not use C
    corpus_name: str | None
    missing_subject: list[int]
    started: float = field(default_factory=time.perf_counter)

    def log(self, method: str, **extra) -> dict:
        return {"method": method, "layers": self.layers, "templates": self.templates,
                "missing_subject": self.missing_subject, "mom2_corpus": self.corpus_name, **extra,
                "seconds": round(time.perf_counter() - self.started, 2)}


def shared_context_templates(model, tokenizer, hp: LocateHParams) -> list[str]:
    """`keys.context_templates`, sampled once per (model, count, length, seed, device) and cached on disk:
    every editor cell of a study (and the study's statistics step) reads the same templates."""


    key = {"model": statistics_fingerprint(model), "count": hp.n_context_templates,
           "length": hp.context_template_length, "seed": hp.seed, "device": input_device(model).type,
           "code": sha256_of_file(Path(__file__).with_name("keys.py"))[:16]}  # the sampling is keys.py's

    def sample():
        require_own_statistics(model, "the context templates")
        return context_templates(model, tokenizer, hp.n_context_templates, hp.context_template_length, hp.seed)

    return cache.cached_json(cache.entry_path("templates", key), key, sample)


def set_up(model, tokenizer, requests: list[EditRequest], hp: LocateHParams, layers: list[int],
           with_moments: bool = True) -> EditSetup:
    started = time.perf_counter()
    arch = find_arch(model)
    missing = report_missing_subjects(tokenizer, requests)
    templates = shared_context_templates(model, tokenizer, hp)
    moments, corpus_name = layer_moments(model, tokenizer, arch, layers, hp) if with_moments else ({}, None)
    return EditSetup(arch, layers, templates, moments, corpus_name, missing, started)
