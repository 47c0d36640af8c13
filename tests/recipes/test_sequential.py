"""Sequential unlearning: the forget set in chunks, each unlearned from the model the previous one left; a
memory editor goes on editing its memory; the cell evaluates after every chunk."""

from __future__ import annotations

import pytest
from conftest import make_tiny_llama, tiny_tofu_cells
from test_memory_editors import EDITED, KEPT, REFUSAL, generate

from e2u.editing.memory import grace, wise
from e2u.editing.requests import EditRequest
from e2u.errors import E2UError
from e2u.recipes.sequential import forget_chunks


def test_chunks_cover_the_forget_set_once_in_order():
    records = list(range(10))
    parts = forget_chunks(records, 3)
    assert [len(p) for p in parts] == [4, 3, 3] and sum(parts, []) == records
    assert forget_chunks(records, 10) == [[r] for r in records]
    with pytest.raises(E2UError, match="11 chunks of a forget set of 10 questions; at most 10"):
        forget_chunks(records, 11)
    with pytest.raises(E2UError, match="parameter chunks: expected an integer >= 1, got 0"):
        forget_chunks(records, 0)


@pytest.mark.parametrize("method", ["grace", "wise"])
def test_a_memory_editor_continues_its_memory_and_keeps_the_earlier_edits(method):
    model, tokenizer = make_tiny_llama(initializer_range=0.2)
    locality = [(q, tokenizer.decode(generate(model, tokenizer, q), skip_special_tokens=True)) for q in KEPT]
    first, second = ([EditRequest(q, REFUSAL, None)] for q in EDITED)
    if method == "grace":
        hp = grace.GraceHParams(eps_ratio=0.2)
        memory = grace.edit(model, tokenizer, first, locality, hp)
        again = grace.edit(model, tokenizer, second, locality, hp, memory)
        assert len(again.log["edits"]) == 2 and set(again.edit_ids.tolist()) == {0, 1}
    else:
        hp = wise.WiseHParams(save_freq=1, merge_freq=1000, locality_per_edit=8, mask_ratio=1.0)
        memory = wise.edit(model, tokenizer, first, locality, hp)
        again = wise.edit(model, tokenizer, second, locality, hp, memory)
        assert again.edits_done == 2 and len(again.shards) == 2 and [e["edit"] for e in again.log["edits"]] == [0, 1]
    assert again is memory
    refusal = tokenizer(REFUSAL, add_special_tokens=False)["input_ids"]
    for question in EDITED:
        assert generate(model, tokenizer, question)[: len(refusal)] == refusal, question
    memory.remove()
    with pytest.raises(E2UError, match=f"{method}: the .* to continue sits at .*attached: False"):
        (grace.edit(model, tokenizer, first, locality, hp, memory) if method == "grace"
         else wise.edit(model, tokenizer, first, locality, hp, memory))


@pytest.mark.parametrize("method, hparams", [("grace", "{layer: 2, n_iter: 2, max_retain_routing: 1.0}"),
                                             ("gradient_ascent", "{epochs: 1, batch_size: 2, lr: 1.0e-3}")])
def test_a_cell_in_chunks_is_evaluated_after_every_chunk(tmp_path, method, hparams):
    from e2u.cell.run import run_cell

    (cell,) = tiny_tofu_cells(tmp_path, f"  - {{name: {method}, chunks: 2, hparams: {hparams}}}\n")
    result = run_cell(cell)
    n = len(result["after"]["forget"])
    chunks = result["chunks"]
    assert [c["chunk"] for c in chunks] == [0, 1] and chunks[-1]["questions_unlearned"] == n
    assert 0 < chunks[0]["questions_unlearned"] < n and chunks[0]["forget_rouge1_later"] is not None
    assert chunks[-1]["summary"]["forget"] == result["summary"]["after"]["forget"]
    assert result["timings_s"]["evaluate_chunks"] > 0
    if method == "grace":
        assert len(result["log"]["edits"]) == n  # one codebook, continued: every question's edit in its log
    else:  # the change recorded is both chunks' (each chunk's log kept)
        assert len(result["log"]["chunk_logs"]) == 2


def test_the_change_of_chunks_is_their_sum_and_reverting_it_gives_the_model_before_the_first():
    import torch

    from e2u.result import WeightDeltas

    model, _ = make_tiny_llama()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    path = "model.layers.0.mlp.down_proj.weight"
    first, second = torch.randn_like(before[path]), torch.randn_like(before[path])
    with torch.no_grad():
        model.get_parameter(path).add_(first)
        model.get_parameter(path).add_(second)
    total = WeightDeltas({path: first}, {"steps": 1}).followed_by(WeightDeltas({path: second}, {"steps": 2}))
    assert torch.allclose(total.deltas[path], first + second) and total.log["chunk_logs"] == [{"steps": 1}, {"steps": 2}]
    with total.reverted(model):
        assert torch.allclose(model.get_parameter(path), before[path], atol=1e-6)


def test_each_seed_draws_its_own_forget_set(tmp_path):
    """A data option written "{seed}" takes each study seed: the factual draw and the pistol forget edge."""
    from e2u.data.pistol import pistol_splits
    from e2u.study.grid import load_study

    study = tmp_path / "study.yaml"
    study.write_text("name: seeds\nseeds: [0, 1, 2]\nsettings:\n"
                     "  - {name: pretrained, data: {source: factual, n_forget: 4, n_retain: 4, seed: '{seed}'}}\n"
                     "  - {name: finetuned, data: {source: pistol, seed: 0, forget_draw: '{seed}'}}\n"
                     "methods: [rome]\n")
    cells = load_study(study).cells
    assert [c.data_options["seed"] for c in cells if c.setting == "pretrained"] == [0, 1, 2]
    drawn = [c.data_options["forget_draw"] for c in cells if c.setting == "finetuned"]
    assert drawn == [0, 1, 2] and all(c.data_options["seed"] == 0 for c in cells if c.setting == "finetuned")
    forgotten = [pistol_splits(forget_draw=d)["forget"][0].question for d in range(6)]
    assert len(set(forgotten)) > 1  # different edges for different seeds
    for d in range(6):
        splits = pistol_splits(forget_draw=d)
        assert splits["retain"], "a drawn edge always leaves a linked edge to retain"
    with pytest.raises(E2UError, match="forget_draw: expected an integer"):
        pistol_splits(forget_draw="x")


def test_a_chunked_editor_reads_the_unedited_models_statistics_for_every_chunk(tmp_path, monkeypatch):
    """The context templates, the statistics corpus and C are computed once, on the model before unlearning,
    as the reference editors compute them: chunk 2 edits the edited model with chunk 1's statistics."""
    from e2u.cell.run import run_cell
    from e2u.files import e2u_home

    monkeypatch.setenv("E2U_HOME", str(tmp_path / "home"))
    (cell,) = tiny_tofu_cells(tmp_path, "  - {name: rome, chunks: 2, hparams: {layer: 1, n_context_templates: 2, "
                                        "v_num_grad_steps: 3, mom2_n_tokens: 500, mom2_corpus_texts: 8}}\n")
    result = run_cell(cell)
    assert len(result["log"]["chunk_logs"]) == 2
    home = e2u_home()
    for kind in ("stats", "corpora", "templates"):
        assert len(list((home / kind).rglob("*.*"))) == 1, kind  # one entry: the unedited model's


def test_an_edited_model_cannot_fill_the_unedited_models_statistics():
    import torch

    from e2u.editing.corpus import Corpus
    from e2u.editing.stats import second_moments
    from e2u.model.arch import find_arch
    from e2u.model.load import model_fingerprint, statistics_of

    model, tokenizer = make_tiny_llama()
    named = model_fingerprint(model)
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight.add_(1.0)  # edited: its fingerprint is another
    with statistics_of(model, named), pytest.raises(E2UError, match=r"the key second moments of layers \[1\] of the "
                                                                     rf"unedited model {named} are not cached"):
        second_moments(model, tokenizer, find_arch(model), [1], Corpus("x", ("some text here",)), 50)
