"""A cell chapter's data sentence says where the rephrased forget questions came from, and any note loudly."""

from e2u.book.paper_tables import data_report_markdown


def test_the_data_sentence_counts_the_rules_and_shows_the_note():
    para = {"from_data": 0, "written_by_model": {"written": 2, "rejected": 3}, "written_by_rules": {"written": 2},
            "without_paraphrase": 1, "dropped_identical": {},
            "note": "1 of 5 forget questions have no paraphrase (1 x (model: identical, rules: no_rule)); the "
                    "rephrase attack is measured on the other 4"}
    text = data_report_markdown({"data_report": {"paraphrases": para}})
    assert text.startswith("Data: 0 forget questions have a paraphrase from the data, 2 were rephrased by the model")
    assert ", 2 were rephrased by rules; **1 of 5 forget questions have no paraphrase" in text
    del para["note"]  # a result written before notes existed
    older = data_report_markdown({"data_report": {"paraphrases": para}})
    assert "; 1 have none and are not in the rephrased split" in older
