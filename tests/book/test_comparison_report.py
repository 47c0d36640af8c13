"""The book's editors-next-to-baselines tables and a training run's curve, from result-shaped dicts."""

import matplotlib

from e2u.book import comparison, training_curve

matplotlib.use("Agg")


def result(method, title, forget, retain, combined, answers, log=None):
    items = lambda split, texts: [{"question": f"{split} q{i}", "reference": f"truth {i}", "generated": t}  # noqa: E731
                                  for i, t in enumerate(texts)]
    return {"params": {"setting": "pretrained", "method": method}, "method_title": title, "cell_id": method,
            "summary": {"after": {"forget": {"rouge1_recall": forget, "refusal_rate": 1 - forget},
                                  "neighbour": {"rouge1_recall": retain}}},
            "aggregates": {"after": {"combined_score": {"value": combined}}}, "timings_s": {"unlearn": 3.0},
            "before": {"forget": items("forget", ["Paris", "Tokyo"]), "neighbour": items("neighbour", ["Rome"])},
            "after": {"forget": items("forget", answers), "neighbour": items("neighbour", ["Rome"])},
            "log": log or {}}


LOG = {"steps": 2, "seconds": 4.0, "adapter": "lora", "trained_parameters": 10, "reference": None,
       "step_log": [{"step": 1, "lr": 1e-3, "loss": -1.0, "forget": -1.0}, {"step": 2, "lr": 5e-4, "loss": -2.0,
                                                                           "forget": -2.0}],
       "curve": [{"step": 0, "forget_nll": 1.0, "retain_nll": 1.0}, {"step": 2, "forget_nll": 3.0, "retain_nll": 1.2}]}
RESULTS = [result("rome", "ROME", 0.1, 0.9, 1.8, ["I don't know.", "I don't know."]),
           result("npo", "NPO", 0.5, 0.8, 1.3, ["Lyon", "Tokyo"], LOG),
           result("gradient_ascent", "GA", 0.6, 0.3, 0.7, ["the the", "the"], LOG)]


def test_side_by_side_ranks_by_combined_score_and_names_each_kind():
    table = comparison.side_by_side(RESULTS, "pretrained")
    assert list(table.index) == ["ROME (rome)", "NPO (npo)", "GA (gradient_ascent)"]
    assert list(table["kind"]) == ["editor", "baseline (beyond the paper)", "baseline (paper)"]
    assert list(table["neighbour Rouge1"]) == [0.9, 0.8, 0.3]
    assert comparison.side_by_side(RESULTS, "finetuned").empty


def test_answers_side_by_side_shows_every_method_on_the_same_questions():
    table = comparison.answers_side_by_side(RESULTS, "pretrained", "forget")
    assert list(table.columns) == ["forget q0", "forget q1"]
    assert list(table.index) == ["truth", "unedited", "ROME (rome)", "NPO (npo)", "GA (gradient_ascent)"]
    assert table.loc["NPO (npo)", "forget q0"] == "Lyon" and table.loc["unedited", "forget q1"] == "Tokyo"


def test_a_training_run_has_its_curve_and_summary_and_an_editor_has_none():
    assert training_curve.is_training_run(RESULTS[1]) and not training_curve.is_training_run(RESULTS[0])
    summary = training_curve.run_summary(RESULTS[1])
    assert summary.loc["forget NLL start → end", "value"] == "1.00 → 3.00"
    figure = training_curve.curve_figure(RESULTS[1])
    curve_ax, terms_ax = figure.axes
    assert [line.get_label() for line in curve_ax.get_lines()] == ["forget", "retain"]
    assert [line.get_label() for line in terms_ax.get_lines()] == ["loss", "forget"]
