"""The bf16 path a GPU takes, checked on the CPU: every method runs on a bf16 model and leaves it bf16,
statistics and solves stay float32+, and placement follows `load_model`'s device rules."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_llama

from e2u.data.schema import QARecord
from e2u.editing.corpus import question_bank_corpus
from e2u.editing.stats import second_moments
from e2u.editing.weights import add_to_weight
from e2u.methods import METHODS, build_hparams, run_method
from e2u.model.arch import find_arch
from e2u.model.load import input_device, load_model, parameter_bytes
from e2u.problem import UnlearningProblem
from e2u.study.grid import load_study
from e2u.unlearning import gradient_ascent

REPO = Path(__file__).resolve().parent.parent

RECORDS = [QARecord("what is the capital of France ?", "Paris", "France"),
           QARecord("what is the currency of Japan ?", "yen", "Japan")]
TINY = {
    "rome": {"layer": 1, "n_context_templates": 1, "v_num_grad_steps": 3, "mom2_n_tokens": 300, "mom2_corpus_texts": 4},
    "memit": {"layers": [1, 2], "n_context_templates": 1, "v_num_grad_steps": 3, "mom2_n_tokens": 300,
              "mom2_corpus_texts": 4},
    "alphaedit": {"layers": [1, 2], "n_context_templates": 1, "v_num_grad_steps": 3, "mom2_n_tokens": 300,
                  "mom2_corpus_texts": 4, "nullspace_fraction": 0.5},
    "grace": {"layer": 2, "n_iter": 3, "max_retain_routing": 1.0},
    "wise": {"layer": 2, "n_iter": 3, "max_retain_routing": 1.0},
    # the training baselines: a LoRA adapter by default, merged into the bf16 weights (a larger lr than the editors'
    # tests so that the merged change exceeds half a bf16 ulp); RMU trains full weights of its blocks
    **{name: {"epochs": 1, "batch_size": 2, "lr": 1e-2, **({"steer_layer": 2} if name == "rmu" else {})}
       for name, method in METHODS.items() if method.kind == "unlearning"},
}


def _bf16_llama():
    model, tokenizer = make_tiny_llama()
    return model.to(torch.bfloat16), tokenizer


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_runs_on_a_bf16_model_and_leaves_it_bf16(method):
    assert set(TINY) == set(METHODS), "a new method needs its tiny bf16 hyper-parameters here"
    model, tokenizer = _bf16_llama()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    hp = build_hparams(METHODS[method].hparams, TINY[method], method)
    problem = UnlearningProblem(RECORDS[:1], RECORDS[1:])
    result = run_method(method, model, tokenizer, problem, hp)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    if hasattr(result, "tensors"):  # a memory (GRACE, WISE): the weights stay as they were, its tensors float32
        assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
        assert {t.dtype for t in result.tensors().values() if t.is_floating_point()} == {torch.float32}
        with torch.no_grad():
            logits = model(torch.tensor([[5, 6, 7]])).logits
        assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()
        return
    assert result.deltas and all(torch.isfinite(d).all() for d in result.deltas.values())
    assert all(d.dtype in (torch.float32, torch.float64) for d in result.deltas.values())
    assert sum(d.double().norm().item() for d in result.deltas.values()) > 0
    moved = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert moved, "the bf16 weights did not change"
    if METHODS[method].kind == "editing":  # the editors change exactly the matrices they report
        assert moved == {f"{path}.weight" for path in result.deltas}


def test_bf16_gradient_ascent_keeps_steps_below_half_a_bf16_ulp():
    """At lr 1e-5 an Adam step is below half a bf16 ulp of most weights: stepping the bf16 weights
    directly would round most of them away; float32 master weights keep every step."""
    model, tokenizer = _bf16_llama()
    weight = model.model.layers[1].mlp.down_proj.weight
    before = weight.detach().clone()
    hp = build_hparams(gradient_ascent.GradientAscentHParams, {"epochs": 6, "batch_size": 2, "lr": 1e-5,
                                                                  "adapter": "full"}, "test")
    gradient_ascent.apply(model, tokenizer, UnlearningProblem(RECORDS), hp)
    assert weight.dtype == torch.bfloat16
    # six steps of ~1e-5 add up past half an ulp for 56% of this matrix's weights; stepping the bf16
    # weights themselves, each step rounds away on its own and only the smallest 16% ever move
    assert (weight != before).float().mean().item() > 0.4


def test_second_moments_of_a_bf16_model_are_float32_or_float64():
    model, tokenizer = _bf16_llama()
    arch, corpus = find_arch(model), question_bank_corpus(tokenizer)
    for dtype in (torch.float32, torch.float64):
        moments = second_moments(model, tokenizer, arch, [1, 2], corpus, 200, dtype=dtype, use_cache=False)
        assert all(m.dtype == dtype and torch.isfinite(m).all() and m.trace() > 0 for m in moments.values())
    fp32_model, _ = make_tiny_llama()
    reference = second_moments(fp32_model, tokenizer, arch, [1], corpus, 200, use_cache=False)[1]
    found = second_moments(model, tokenizer, arch, [1], corpus, 200, use_cache=False)[1]
    assert ((found - reference).norm() / reference.norm()).item() < 0.05  # bf16 keys, float32 sums


def test_a_delta_is_added_to_a_bf16_weight_with_one_rounding():
    model, _ = _bf16_llama()
    arch = find_arch(model)
    weight = model.get_submodule(arch.mlp_out_path(1)).weight
    before = weight.detach().clone()
    torch.manual_seed(0)
    delta = 1e-3 * torch.randn(arch.hidden_size, arch.key_size, dtype=torch.float64)
    add_to_weight(model, arch, 1, delta)
    assert weight.dtype == torch.bfloat16
    assert torch.equal(weight, (before.float() + delta.float()).to(torch.bfloat16))


def test_input_device_is_the_input_embeddings_device_not_the_first_parameters():
    model, _ = make_tiny_llama()
    model.register_parameter("a_first_parameter", torch.nn.Parameter(torch.zeros(1, device="meta")))
    assert next(model.parameters()).device.type == "meta"
    assert input_device(model) == torch.device("cpu")


def test_parameter_bytes_counts_the_weights_without_loading_them(tmp_path):
    model, tokenizer = make_tiny_llama()
    model.save_pretrained(tmp_path)
    n = sum(p.numel() for p in model.parameters())
    assert parameter_bytes(str(tmp_path), torch.bfloat16) == 2 * n
    assert parameter_bytes(str(tmp_path), torch.float32) == 4 * n


def _saved_tiny(tmp_path):
    model, tokenizer = make_tiny_llama()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    return str(tmp_path)


def test_device_auto_without_a_gpu_loads_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model, _ = load_model(_saved_tiny(tmp_path), "auto")
    assert input_device(model) == torch.device("cpu") and next(model.parameters()).dtype == torch.float32
    assert not hasattr(model, "hf_device_map")


@pytest.mark.parametrize("device, too_large, spread", [("auto", False, True), ("cuda", True, True),
                                                       ("cuda", False, False)])
def test_cuda_placement_spreads_with_device_map_auto_when_asked_or_too_large(tmp_path, monkeypatch, device,
                                                                              too_large, spread):
    """No GPU here: the loader's call is recorded instead of placing anything (the one mock)."""
    from transformers import AutoModelForCausalLM

    import e2u.model.load as models

    path = _saved_tiny(tmp_path)
    calls = []
    real = AutoModelForCausalLM.from_pretrained

    def recording(location, **kwargs):
        calls.append(kwargs)
        return real(location, dtype=kwargs["dtype"], trust_remote_code=False)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(models, "_too_large_for_one_gpu", lambda *args: too_large)
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", recording)
    moved = []
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *args, **kwargs: moved.append(args) or self)
    load_model(path, device)
    assert calls[0]["dtype"] == torch.bfloat16 and calls[0]["trust_remote_code"] is False
    assert (calls[0].get("device_map") == "auto") == spread
    assert bool(moved) == (not spread)  # a spread model is placed by accelerate, not moved


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_peak_memory_without_cuda_is_the_peak_rss_in_gib():
    from e2u.cell.peak_memory import peak_memory_gb, peak_memory_kind

    assert peak_memory_kind() == "rss"
    held = torch.ones(64 * 2**20, dtype=torch.uint8)  # 64 MiB touched: the peak is at least that
    with open("/proc/self/status") as status:
        hwm_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
    assert peak_memory_gb() == pytest.approx(hwm_kib / 2**20, rel=0.05) and peak_memory_gb() > 0.0625
    del held


def _gpu_check_module():
    """bench/gpu_check.py, imported from its file (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_gpu_check_runs_every_editor_and_paper_baseline_of_one_setting_and_seed():
    cells = _gpu_check_module().plain_cells(load_study(REPO / "studies" / "default.yaml"), "pretrained", 0)
    assert sorted(c.method for c in cells) == sorted(
        ["rome", "memit", "alphaedit", "grace", "wise", "gradient_ascent", "gradient_difference", "kl", "dpo"])
    assert {(c.setting, c.seed, c.chunks, c.merge_group, c.refusal) for c in cells} == {("pretrained", 0, 1, 0, "fixed")}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_the_gpu_check_refuses_clearly_without_cuda(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2 and "no CUDA device visible to torch" in done.stderr
    assert not (tmp_path / "out").exists()  # nothing measured, nothing written
