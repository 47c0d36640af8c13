"""GRACE and WISE as adaptors: generation goes through the memory, unrelated prompts do not, files round-trip,
removal restores the model bit for bit, and bad input is a clear error."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_llama

from e2u.editing.memory import grace, wise
from e2u.editing.memory.routing import FailedEdit, routing_of_pairs
from e2u.editing.memory.ties import ties_merge, trim
from e2u.editing.requests import EditRequest
from e2u.errors import E2UError
from e2u.methods import load_adaptor
from e2u.model.prompts import question_ids
from e2u.result import Adaptor

REFUSAL = "I do not know ."
EDITED = ["what is the capital of France ?", "who painted the house ?"]
KEPT = ["what is the capital of Italy ?", "what is the currency of Japan ?", "where is the river ?",
        "who wrote the book ?", "which city is in Austria ?", "who founded the house ?",
        "what is the language of Portugal ?", "where is the mountain ?"]
UNRELATED = ["which language is in Spain ?", "what is the red city ?"]


def generate(model, tokenizer, question: str, n: int = 8) -> list[int]:
    ids = torch.tensor([question_ids(tokenizer, question)])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    return out[0, ids.shape[1]:].tolist()


def logits_of(model, tokenizer, questions) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(torch.tensor([question_ids(tokenizer, q)])).logits[0] for q in questions])


def edited_model(method: str, **overrides):
    """A tiny random model (weights of std 0.2, so that its logits can move) edited by `method`."""
    model, tokenizer = make_tiny_llama(initializer_range=0.2)
    before = {q: generate(model, tokenizer, q) for q in KEPT + UNRELATED}
    locality = [(q, tokenizer.decode(before[q], skip_special_tokens=True)) for q in KEPT]
    requests = [EditRequest(q, REFUSAL, None) for q in EDITED]
    if method == "grace":
        adaptor = grace.edit(model, tokenizer, requests, locality, grace.GraceHParams(**{"eps_ratio": 0.2, **overrides}))
    else:
        hp = wise.WiseHParams(**{"save_freq": 1, "merge_freq": 1000, "locality_per_edit": 8, "mask_ratio": 1.0,
                                 **overrides})
        adaptor = wise.edit(model, tokenizer, requests, locality, hp)
    return model, tokenizer, adaptor, before


@pytest.fixture(scope="module", params=["grace", "wise"])
def edited(request):
    return edited_model(request.param)


def test_generation_of_each_edited_prompt_starts_with_its_refusal(edited):
    model, tokenizer, adaptor, _ = edited
    refusal = tokenizer(REFUSAL, add_special_tokens=False)["input_ids"]
    for question in EDITED:
        assert generate(model, tokenizer, question)[: len(refusal)] == refusal, question


def test_unrelated_generations_are_those_of_the_unedited_model(edited):
    model, tokenizer, _, before = edited
    for question in KEPT + UNRELATED:
        assert generate(model, tokenizer, question) == before[question], question


def test_routing_is_decided_at_every_generated_token(edited):
    """Each decoding step is its own forward pass of one position; the memory answers at each step of an
    edited question's refusal, and at none of a kept question's."""
    model, tokenizer, adaptor, _ = edited
    with adaptor.recording() as masks:
        generate(model, tokenizer, EDITED[0], n=4)
    prefill, steps = masks[0], masks[1:]
    assert len(steps) == 3 and all(m.shape == (1, 1) for m in steps)
    assert bool(prefill[0, -1]) and all(bool(m[0, 0]) for m in steps)
    with adaptor.recording() as masks:
        generate(model, tokenizer, KEPT[0], n=4)
    assert not any(bool(m[0, -1]) for m in masks)
    stats = routing_of_pairs(model, tokenizer, adaptor, [(q, REFUSAL) for q in EDITED])
    assert stats["routed"] == stats["routed_anywhere"] == 2 and stats["position_share"] == 1.0


def test_saving_and_loading_reproduces_the_generations(edited, tmp_path):
    model, tokenizer, adaptor, _ = edited
    generations = {q: generate(model, tokenizer, q) for q in EDITED + UNRELATED}
    adaptor.save(tmp_path / "memory.safetensors")
    adaptor.remove()
    try:
        loaded = type(adaptor).load(model, tmp_path / "memory.safetensors")
        assert type(loaded) is type(adaptor) and isinstance(loaded, Adaptor)
        assert {q: generate(model, tokenizer, q) for q in EDITED + UNRELATED} == generations
        loaded.remove()
    finally:
        adaptor._handle = adaptor.module.register_forward_hook(adaptor._hook)  # the module fixture stays edited


def test_removing_restores_the_original_outputs_bit_for_bit():
    model, tokenizer = make_tiny_llama(initializer_range=0.2)
    original = logits_of(model, tokenizer, EDITED + KEPT)
    for method in ("grace", "wise"):
        model_, tokenizer_, adaptor, _ = edited_model(method)
        assert not torch.equal(logits_of(model_, tokenizer_, EDITED + KEPT), original)  # the memory answers
        adaptor.remove()
        assert torch.equal(logits_of(model_, tokenizer_, EDITED + KEPT), original)
        assert not adaptor.attached


def test_an_adaptor_refuses_another_model(tmp_path):
    model, tokenizer, adaptor, _ = edited_model("grace")
    adaptor.save(tmp_path / "memory.safetensors")
    other, _ = make_tiny_llama(seed=1, initializer_range=0.2)
    with pytest.raises(E2UError, match="made for the model with fingerprint .* not for this one"):
        load_adaptor(other, tmp_path / "memory.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(E2UError, match="junk.safetensors: not a safetensors file"):
        load_adaptor(model, tmp_path / "junk.safetensors")
    with pytest.raises(E2UError, match="holds a grace adaptor, not a wise one"):
        wise.SideMemory.load(model, tmp_path / "memory.safetensors")
    with pytest.raises(E2UError, match="not found"):
        load_adaptor(model, tmp_path / "missing.safetensors")


def test_wise_without_locality_prompts_is_an_error():
    model, tokenizer = make_tiny_llama(initializer_range=0.2)
    with pytest.raises(E2UError, match="WISE needs locality prompts"):
        wise.edit(model, tokenizer, [EditRequest(EDITED[0], REFUSAL, None)], [], wise.WiseHParams())
    assert not model._forward_hooks and not any(m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("method, overrides, routed, setting", [
    # GRACE's split rule halves a radius that reaches a key of another label (the refusal's next position),
    # so even a radius of 50 times the key norm routes only 1 of the 8 kept prompts here: with
    # max_retain_routing 0 that one is a failure
    ("grace", {"eps_ratio": 50.0, "max_retain_routing": 0.0}, 1, "radius eps_ratio 50.0"),
    ("wise", {"act_ratio": 1e-6}, 8, "routing threshold"),
])
def test_a_memory_that_routes_kept_prompts_is_a_failed_edit(method, overrides, routed, setting):
    with pytest.raises(FailedEdit, match=f"the edit failed: the memory answers for {routed} of 8 kept questions "
                                         f".*{setting}"):
        edited_model(method, **overrides)


def test_hyper_parameters_out_of_range_are_named():
    with pytest.raises(E2UError, match="grace: eps_ratio: expected a number > 0, got -1"):
        grace.GraceHParams(eps_ratio=-1).check()
    with pytest.raises(E2UError, match="wise: merge_freq: expected a multiple of save_freq, got 4"):
        wise.WiseHParams(save_freq=3, merge_freq=4).check()
    model, tokenizer = make_tiny_llama()
    with pytest.raises(E2UError, match="layer: expected 'auto' or a block index in 0..3"):
        grace.edit(model, tokenizer, [EditRequest(EDITED[0], REFUSAL, None)], [(KEPT[0], "Rome")],
                   grace.GraceHParams(layer=9))


def test_grace_split_and_expand_rules():
    model, _ = make_tiny_llama()
    book = grace.Codebook(model, "model.layers.3.mlp.down_proj", 128, 64)
    zero, value = torch.zeros(128), torch.zeros(64)
    far = torch.zeros(128)
    far[0] = 10.0
    assert book.add_key(zero, 7, value, eps_init=1.0, edit=0) == 0
    near = torch.zeros(128)
    near[0] = 1.5
    assert book.add_key(near, 7, value, eps_init=1.0, edit=1) == 0  # same label, within 1 + 1: expand
    assert float(book.radii[0]) == pytest.approx(1.5 * (1 + grace.EXPAND_MARGIN))  # the key inside, not on the edge
    assert float(book.radii[0]) > 1.5
    other = torch.zeros(128)
    other[1] = 2.0
    assert book.add_key(other, 8, value, eps_init=1.0, edit=2) == 1  # another label: split the distance
    assert float(book.radii[0]) == pytest.approx(1.0 - 1e-5) and float(book.radii[1]) == pytest.approx(1.0)
    assert book.add_key(far, 7, value, eps_init=1.0, edit=3) == 2  # beyond every radius: a new entry
    assert float(book.radii[2]) == 1.0
    book.remove()


def test_ties_merge_on_fixed_inputs():
    base = torch.zeros(2, 3)
    a = torch.tensor([[0.5, -2.0, 0.1], [0.0, 3.0, -1.0]])
    b = torch.tensor([[3.0, 0.5, -0.2], [0.0, -1.0, -2.0]])
    assert torch.equal(trim(a, 0.5), torch.tensor([[0.0, -2.0, 0.0], [0.0, 3.0, -1.0]]))
    merged = ties_merge(base, [a, b], density=0.5)
    # trimmed: a -> [[0,-2,0],[0,3,-1]], b -> [[3,0,0],[0,-1,-2]]; signs of the sums: [[+,-,0],[0,+,-]]
    assert torch.allclose(merged, torch.tensor([[3.0, -2.0, 0.0], [0.0, 3.0, -1.5]]))


def test_a_grace_cell_runs_through_papermill_with_its_routing_and_saves_its_adaptor(tmp_path):
    import json

    from test_study_end_to_end import write_tiny_study

    from e2u.study.grid import load_study
    from e2u.study.runner import run_study

    path = write_tiny_study(tmp_path)
    text = path.read_text().split("methods:\n")[0]
    path.write_text(text + "methods:\n  - {name: grace, hparams: {layer: 2, n_iter: 5, max_retain_routing: 1.0}}\n")
    outcomes = run_study(load_study(path), tmp_path / "results", tmp_path / "book")
    assert [o.status for o in outcomes] == ["ran"], [o.error for o in outcomes]
    cell_dir = tmp_path / "results" / "tiny" / "pretrained"
    result = json.loads((cell_dir / "grace-seed0.json").read_text())
    assert result["change"]["kind"] == "adaptor" and result["adaptor_file"] == "grace-seed0.adaptor.safetensors"
    assert set(result["routing"]) == set(result["after"])
    assert result["routing"]["forget"]["prompts"] == 2
    from e2u.model.load import load_model

    model, _ = load_model(str(tmp_path / "model"))  # as the cell loaded it
    adaptor = load_adaptor(model, cell_dir / result["adaptor_file"])
    assert adaptor.meta()["entries"] == result["log"]["entries"]
    notebook = (tmp_path / "book" / "runs" / "tiny" / "pretrained" / "grace-seed0.ipynb").read_text()
    assert "Routing to the memory" in notebook and "routed (at the last prompt token)" in notebook


def test_a_cell_whose_memory_fails_is_measured_and_flagged_not_reported_as_success(tmp_path):
    from test_study_end_to_end import write_tiny_study

    from e2u.cell.params import CellParams
    from e2u.cell.run import run_cell

    write_tiny_study(tmp_path)
    cell = CellParams(model=str(tmp_path / "model"), data_source="jsonl", data_path=str(tmp_path / "data"),
                      method="grace", hparams={"layer": 2, "n_iter": 3, "eps_ratio": 50.0, "max_retain_routing": 0.0},
                      max_new_tokens=4, batch_size=4)
    result = run_cell(cell)
    assert result["failed_edit"].startswith("grace: the edit failed: the memory answers for")
    assert result["method_title"] == "GRACE (failed edit)"
    assert result["routing"]["neighbour"]["routed"] >= 1  # measured with the failed memory attached


def test_a_merged_wise_memory_is_measured_on_its_own_weight():
    """After a TIES merge the disjoint task vectors add up, so every score grows; the merged memory's
    threshold is act_ratio x the smallest in-scope score of the merged weight over all its edits, not the
    smallest of its shards' thresholds (which routed most kept questions of the pretrained study)."""
    model, tokenizer = make_tiny_llama(initializer_range=0.2)
    before = {q: generate(model, tokenizer, q) for q in KEPT}
    locality = [(q, tokenizer.decode(before[q], skip_special_tokens=True)) for q in KEPT]
    hp = wise.WiseHParams(save_freq=1, merge_freq=2, locality_per_edit=4, n_iter=20)
    memory = wise.edit(model, tokenizer, [EditRequest(q, REFUSAL, None) for q in EDITED], locality, hp)
    (merged,) = memory.shards
    parts = [e["min_in_scope_score"] * hp.act_ratio for e in memory.log["edits"]]
    assert merged.edits == 2 and merged.requests == [(q, REFUSAL) for q in EDITED]
    rows = wise.memory_rows(tokenizer, merged.requests, [], model.device)
    upper = wise.UpperPass(model, 0, tokenizer)
    assert merged.threshold == pytest.approx(hp.act_ratio * memory.in_scope_floor(merged.weight, upper, model, rows),
                                             rel=1e-5)
    assert merged.threshold != pytest.approx(min(parts), rel=1e-3)
    assert "threshold" in memory.log["edits"][-1]["events"][-1]


def test_wise_answers_a_prefill_row_as_one_sequence_and_padding_decides_nothing():
    """WISE routes rows: an edited question's prefill goes to the memory at every position (as in training,
    where the memory is on at every prompt position), a kept one at none; in a left-padded batch the
    padding positions take no part in the decision, so each row generates what it generates alone."""
    model, tokenizer, memory, before = edited_model("wise")
    with memory.recording() as masks:
        generate(model, tokenizer, EDITED[1], n=2)
        generate(model, tokenizer, KEPT[1], n=2)
    assert bool(masks[0].all()) and not bool(masks[2].any())
    questions = [EDITED[1], KEPT[1], UNRELATED[0]]
    ids = [question_ids(tokenizer, q) for q in questions]
    width = max(map(len, ids))
    padded = torch.tensor([[tokenizer.pad_token_id] * (width - len(i)) + i for i in ids])
    mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
    out = model.generate(padded, attention_mask=mask, max_new_tokens=8, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)[:, width:].tolist()
    memory.remove()
    bare = model.generate(padded, attention_mask=mask, max_new_tokens=8, do_sample=False,
                          pad_token_id=tokenizer.pad_token_id)[:, width:].tolist()
    refusal = tokenizer(REFUSAL, add_special_tokens=False)["input_ids"]
    assert out[0][: len(refusal)] == refusal and out[1:] == bare[1:]


def test_wise_scores_the_locality_rows_from_their_fixed_inputs_as_a_joint_pass_would():
    """WISE's loss (eq. 5) with s_out from the locality rows' stored projection inputs equals the loss of one
    pass over edit and locality rows together (the reference's way), gradient included."""
    from e2u.editing.memory.rows import UpperPass, edit_row_nll, memory_rows

    model, tokenizer = make_tiny_llama(initializer_range=0.2)
    hp = wise.WiseHParams(layer=2, mask_ratio=1.0)
    site = "model.layers.2.mlp.down_proj"
    memory = wise.SideMemory(model, site, "silu")
    weight = (memory.current.weight + 0.05 * torch.randn_like(memory.current.weight)).requires_grad_(True)
    edits, kept = [(EDITED[0], REFUSAL)], [(q, "it is a city .") for q in KEPT[:3]]
    alpha, beta, gamma = hp.act_margin

    def loss_of(rows, s_out_of):
        upper = UpperPass(model, 2, tokenizer)
        upper.prepare(model, rows)
        memory.probe = weight
        logits, targets = upper.logits(model, rows)
        s_in = memory.in_scores[rows.answer_positions & rows.is_edit_row[:, None]]
        loss = edit_row_nll(logits, targets) + wise.margin_loss(s_in, s_out_of(memory.in_scores, rows), alpha, beta, gamma)
        memory.probe = None
        return loss, torch.autograd.grad(loss, weight)[0]

    joint = memory_rows(tokenizer, edits, kept, "cpu")
    reference, reference_grad = loss_of(
        joint, lambda scores, rows: scores[rows.batch["attention_mask"].bool() & ~rows.is_edit_row[:, None]])
    stored = wise.kept_inputs(model, memory, memory_rows(tokenizer, [], kept, "cpu"))
    ours, ours_grad = loss_of(memory_rows(tokenizer, edits, [], "cpu"),
                              lambda scores, rows: memory.score(weight, stored.x, stored.y)[1])
    assert stored.x.shape[0] == int(memory_rows(tokenizer, [], kept, "cpu").batch["attention_mask"].sum())
    assert torch.allclose(ours, reference, rtol=1e-5) and torch.allclose(ours_grad, reference_grad, rtol=1e-4, atol=1e-6)
    memory.remove()
