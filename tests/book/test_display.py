"""A model's answer with line breaks reads as one line in the book's tables, never as a literal backslash-n."""

from e2u.book import report
from e2u.book.display import one_line


def test_one_line_turns_line_breaks_and_runs_of_spaces_into_single_spaces():
    assert one_line("ability\nedayeday  and\r\n\tmore ") == "ability edayeday and more"
    assert one_line("") == ""


def test_the_examples_table_shows_an_answer_with_line_breaks_on_one_line():
    before = {"forget": [{"question": "Who?", "generated": "Jane\nAusten"}]}
    after = {"forget": [{"question": "Who?", "generated": "I don't\nknow.", "refusal": True}]}
    table = report.examples({"before": before, "after": after})
    assert list(table.loc[0, ["before", "after"]]) == ["Jane Austen", "I don't know."]
    assert "\\n" not in table.to_html()
