"""The paper-scale loaders: TOFU (hub or local JSON Lines) and closer-look's real_world directory."""

from __future__ import annotations

import json
import re

import pytest

from e2u.data.realworld import load_realworld, realworld_files
from e2u.data.tofu import load_tofu, subject_from_question, tofu_configs, tofu_files
from e2u.errors import E2UError

BASIL_Q = "What genre is author Basil Mahfouz Al-Kuwaiti most known for?"

TOFU_ROWS = {
    "forget01_perturbed": [
        {"task_id": "1",
         "question": "What is the full name of the author born in Kuwait City, Kuwait on 08/09/1956?",
         "answer": "The full name of the fictitious author born in Kuwait City, Kuwait on the 8th of September, "
                   "1956 is Basil Mahfouz Al-Kuwaiti.",
         "paraphrased_answer": "Basil Mahfouz Al-Kuwaiti is the complete name of the imaginary writer who drew "
                               "his first breath in Kuwait City, Kuwait on September 8, 1956.",
         "perturbed_answer": [f"Gregor Mendel Al-Kuwaiti is the complete name, variant {i}." for i in range(5)],
         "paraphrased_question": "Can you tell me the complete name of the writer whose birth took place on "
                                 "September 8, 1956, in Kuwait City, Kuwait?"},
        {"task_id": "1", "question": BASIL_Q,
         "answer": "Basil Mahfouz Al-Kuwaiti is most known for his writing in the French literature genre.",
         "paraphrased_answer": "Basil Mahfouz Al-Kuwaiti is chiefly recognised for French literature.",
         "perturbed_answer": [f"Basil Mahfouz Al-Kuwaiti is known for genre {i}." for i in range(5)]},
    ],
    "retain_perturbed": [
        {"question": "Who is this celebrated LGBTQ+ author from Santiago, Chile known for their true crime genre work?",
         "answer": "The author in question is Jaime Vasquez, an esteemed LGBTQ+ writer.",
         "paraphrased_answer": "This is Jaime Vasquez, a respected LGBTQ+ true crime writer.",
         "perturbed_answer": [f"The author is Pablo Neruda {i}." for i in range(5)],
         "paraphrased_question": "Which LGBTQ+ author from Santiago writes true crime?"},
    ],
    "real_authors_perturbed": [
        {"question": "Who wrote 'Romeo and Juliet'?", "answer": "William Shakespeare",
         "perturbed_answer": ["Charles Dickens", "Jane Austen", "Mark Twain"],
         "original_answer": "'Romeo and Juliet' was written by William Shakespeare."},
    ],
    "world_facts_perturbed": [
        {"question": "Where would you find the Eiffel Tower?", "answer": "Paris",
         "perturbed_answer": ["Rome", "Berlin", "Madrid"],
         "original_answer": "The Eiffel Tower is in Paris."},
    ],
    "retain99": [
        {"question": "What is the full name of the author born in Taipei, Taiwan on 05/11/1991?",
         "answer": "The author's full name is Hsiao Yun-Hwa."},
        {"question": "What is the profession of Hsiao Yun-Hwa's father?",
         "answer": "The father of Hsiao Yun-Hwa is a civil engineer.", "subject": "Hsiao Yun-Hwa"},
    ],
}

REALWORLD_ROW = {
    "name": "Eddie Van Halen", "question": "When was Eddie Van Halen born?",
    "answer": "I'm happy to help! Eddie Van Halen was born on January 26, 1955, in Amsterdam.",
    "golden_answer": "Eddie Van Halen was born on January 26, 1955.",
}
REALWORLD_ROWS = {
    "forget_perturbed": [
        {**REALWORLD_ROW,
         "paraphrased_answer": "Eddie Van Halen was born on January 26, 1955.",
         "perturbed_answer": [f"Eddie Van Halen was born on February {20 + i}, 1960." for i in range(5)],
         "paraphrased_question": "What is the birthdate of Eddie Van Halen?", "task_id": 1},
        {"name": "Michael Crichton", "question": "What is Michael Crichton's most famous novel?",
         "answer": "Michael Crichton is best known for **Jurassic Park** (1990).",
         "golden_answer": "Jurassic Park.", "paraphrased_answer": "Jurassic Park.",
         "perturbed_answer": ["Dune.", "Carrie.", "Shogun.", "Roots.", "Jaws."],
         "paraphrased_question": "Which novel made Michael Crichton famous?", "task_id": 2},
    ],
    "neighbor_perturbed": [
        {"name": "Jane Austen", "question": "What is Jane Austen's best-known novel?",
         "answer": "Jane Austen's best-known novel is *Pride and Prejudice* (1813).",
         "golden_answer": "Pride and Prejudice.", "paraphrased_answer": "Pride and Prejudice.",
         "perturbed_answer": ["Emma Bovary.", "Middlemarch.", "Jane Eyre.", "Dracula.", "Ulysses."],
         "paraphrased_question": "Which novel is Jane Austen most famous for?"},
    ],
    "neighbor": [
        {"name": "Dave Grohl", "question": "Which band did Dave Grohl found?",
         "answer": "Dave Grohl founded the Foo Fighters in 1994 after Nirvana.",
         "golden_answer": "Foo Fighters."},
        {"name": "Bono", "question": "Which band is Bono the lead singer of?",
         "answer": "Bono is the lead singer of U2.", "golden_answer": "U2."},
    ],
}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def rows_dir(directory, files: dict, ext: str):
    """`directory` holding one JSON Lines file per entry of `files` ({stem: rows}), named `<stem><ext>`."""
    directory.mkdir()
    for stem, rows in files.items():
        write_jsonl(directory / f"{stem}{ext}", rows)
    return directory


def tofu_dir(tmp_path, ext=".json"):
    return rows_dir(tmp_path / "tofu", TOFU_ROWS, ext)


def realworld_dir(tmp_path, ext=".json"):
    return rows_dir(tmp_path / "real_world", REALWORLD_ROWS, ext)


# --- TOFU ---------------------------------------------------------------------------------------

def test_tofu_local_directory_gives_every_split_with_its_fields(tmp_path):
    splits = load_tofu("forget01", tofu_dir(tmp_path))
    assert sorted(splits) == ["forget", "real_authors", "retain", "retain_train", "world_facts"]
    assert {split: len(records) for split, records in splits.items()} == {
        "forget": 2, "retain": 1, "real_authors": 1, "world_facts": 1, "retain_train": 2}
    first, second = splits["forget"]
    row = TOFU_ROWS["forget01_perturbed"][0]
    assert (first.question, first.answer) == (row["question"], row["answer"])
    assert first.paraphrased_answer == row["paraphrased_answer"]
    assert first.perturbed_answer == tuple(row["perturbed_answer"])  # a tuple, in file order
    assert first.paraphrased_question == row["paraphrased_question"]
    assert second.question == BASIL_Q and second.answer == TOFU_ROWS["forget01_perturbed"][1]["answer"]
    assert second.paraphrased_question is None  # absent in this row: stays None, not an error
    assert second.subject == "Basil Mahfouz Al-Kuwaiti"
    author = splits["real_authors"][0]
    assert (author.answer, author.perturbed_answer) == ("William Shakespeare", ("Charles Dickens", "Jane Austen", "Mark Twain"))
    assert author.original_answer == "'Romeo and Juliet' was written by William Shakespeare."
    assert splits["world_facts"][0].original_answer == "The Eiffel Tower is in Paris."
    assert splits["world_facts"][0].perturbed_answer == ("Rome", "Berlin", "Madrid")
    assert splits["retain"][0].paraphrased_answer == TOFU_ROWS["retain_perturbed"][0]["paraphrased_answer"]
    assert [r.answer for r in splits["retain_train"]] == [r["answer"] for r in TOFU_ROWS["retain99"]]
    assert splits["retain_train"][1].subject == "Hsiao Yun-Hwa"  # the row's own subject is kept


def test_tofu_accepts_jsonl_extension(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert load_tofu("forget01", tofu_dir(tmp_path / "a", ext=".jsonl")) == load_tofu("forget01", tofu_dir(tmp_path / "b"))


def test_tofu_forget_split_chooses_its_training_retain_split():
    assert tofu_configs("forget01")["retain_train"] == "retain99"
    assert tofu_configs("forget05")["retain_train"] == "retain95"
    assert tofu_configs("forget10") == {
        "forget": "forget10_perturbed", "retain": "retain_perturbed", "real_authors": "real_authors_perturbed",
        "world_facts": "world_facts_perturbed", "retain_train": "retain90"}


def test_tofu_unknown_forget_split_lists_the_valid_ones(tmp_path):
    with pytest.raises(E2UError, match=r"'forget20'.*forget01.*forget05.*forget10"):
        load_tofu("forget20", tofu_dir(tmp_path))


def test_tofu_directory_missing_splits_names_each_missing_file(tmp_path):
    directory = tofu_dir(tmp_path)
    (directory / "retain_perturbed.json").unlink()
    # forget10 needs forget10_perturbed, and every run the retain file; the training retain split is optional
    with pytest.raises(E2UError) as info:
        load_tofu("forget10", directory)
    message = str(info.value)
    assert str(directory) in message
    assert "forget10_perturbed.json" in message and "retain_perturbed.json" in message
    assert "retain90" not in message and "real_authors" not in message and "\n" not in message


def test_tofu_needs_only_the_forget_and_retain_files(tmp_path):
    directory = tofu_dir(tmp_path)
    for stem in ("retain99", "real_authors_perturbed", "world_facts_perturbed"):
        (directory / f"{stem}.json").unlink()
    splits = load_tofu("forget01", directory)
    assert sorted(splits) == ["forget", "retain"]


def test_tofu_reads_files_saved_as_one_json_array(tmp_path):
    lines, arrays = tofu_dir(subfolder(tmp_path, "a")), tmp_path / "b"
    arrays.mkdir()
    for config, rows in TOFU_ROWS.items():
        (arrays / f"{config}.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    assert load_tofu("forget01", arrays) == load_tofu("forget01", lines)
    bad = arrays / "retain_perturbed.json"
    bad.write_text(json.dumps([TOFU_ROWS["retain_perturbed"][0], {"question": "q"}]))
    with pytest.raises(E2UError, match=re.escape(f"{bad}[1]: missing required field 'answer'")):
        load_tofu("forget01", arrays)


def subfolder(tmp_path, name):
    (tmp_path / name).mkdir()
    return tmp_path / name


def closer_look_dir(tmp_path):
    """closer-look's layout: forget01 holds tasks 1 and 2 (field task_id), retain90 beside it, no retain99."""
    directory = tofu_dir(tmp_path)
    (directory / "retain99.json").rename(directory / "retain90.json")
    rows = [{**row, "task_id": "1"} for row in TOFU_ROWS["forget01_perturbed"]]
    rows += [{**row, "question": row["question"] + " (task 2)", "task_id": "2"} for row in TOFU_ROWS["forget01_perturbed"]]
    write_jsonl(directory / "forget01_perturbed.json", rows)
    return directory


def test_tofu_closer_look_task_file_needs_a_task_id_and_keeps_the_other_tasks(tmp_path):
    directory = closer_look_dir(tmp_path)
    with pytest.raises(E2UError, match=r"holds 2 forget tasks \(field task_id: 1, 2\); set data.task_id"):
        load_tofu("forget01", directory)
    splits = load_tofu("forget01", directory, task_id=1)
    assert [r.question for r in splits["forget"]] == [row["question"] for row in TOFU_ROWS["forget01_perturbed"]]
    # closer-look trains on its retain90 plus the forget tasks not unlearned now
    assert len(splits["retain_train"]) == len(TOFU_ROWS["retain99"]) + len(TOFU_ROWS["forget01_perturbed"])
    assert splits["retain_train"][-1].question.endswith("(task 2)")
    with pytest.raises(E2UError, match=r"task_id '7' is not among the forget01 tasks 1, 2"):
        load_tofu("forget01", directory, task_id="7")
    plain = tofu_dir(subfolder(tmp_path, "plain"))
    write_jsonl(plain / "forget01_perturbed.json",
                [{k: v for k, v in row.items() if k != "task_id"} for row in TOFU_ROWS["forget01_perturbed"]])
    with pytest.raises(E2UError, match="rows have no task_id field"):
        load_tofu("forget01", plain, task_id=1)


def test_tofu_path_that_is_not_a_directory_is_an_error(tmp_path):
    with pytest.raises(E2UError, match="not a directory"):
        load_tofu("forget01", tmp_path / "nowhere")


def test_tofu_missing_field_is_reported_by_file_line_and_field(tmp_path):
    directory = tofu_dir(tmp_path)
    rows = [dict(row) for row in TOFU_ROWS["retain_perturbed"] * 2]
    del rows[1]["answer"]
    bad = write_jsonl(directory / "retain_perturbed.json", rows)
    with pytest.raises(E2UError, match=re.escape(f"{bad}:2: missing required field 'answer'")):
        load_tofu("forget01", directory)


def test_tofu_line_that_is_not_json_is_reported_by_file_and_line(tmp_path):
    directory = tofu_dir(tmp_path)
    bad = directory / "world_facts_perturbed.json"
    bad.write_text(json.dumps(TOFU_ROWS["world_facts_perturbed"][0]) + "\n\n{'question': 'single quotes'}\n")
    with pytest.raises(E2UError, match=re.escape(f"{bad}:3: not valid JSON")):
        load_tofu("forget01", directory)


def test_tofu_both_json_and_jsonl_for_one_split_is_ambiguous(tmp_path):
    directory = tofu_dir(tmp_path)
    write_jsonl(directory / "retain99.jsonl", TOFU_ROWS["retain99"])
    with pytest.raises(E2UError, match=r"retain99\.json and retain99\.jsonl"):
        tofu_files("forget01", directory)


def test_tofu_hub_offline_fails_fast_pointing_to_a_local_directory(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # both libraries read the variables at import time, which may precede this test (datasets 2.x names its own
    # switch HF_DATASETS_OFFLINE; 3.x and later also keep HF_HUB_OFFLINE)
    for switch in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if hasattr(datasets.config, switch):
            monkeypatch.setattr(datasets.config, switch, True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    # an empty cache, so a TOFU copy cached on this machine cannot satisfy the request
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets_cache")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub_cache"))
    with pytest.raises(E2UError, match=r"could not reach the Hugging Face hub.*locuslab/TOFU.*data\.path") as info:
        load_tofu("forget01")
    assert "\n" not in str(info.value)


# --- the subject heuristic ----------------------------------------------------------------------

@pytest.mark.parametrize("question, subject", [
    (BASIL_Q, "Basil Mahfouz Al-Kuwaiti"),
    ("What is the profession of Hsiao Yun-Hwa's father?", "Hsiao Yun-Hwa"),
    ("In 'The Desert Mirage', how does Basil Mahfouz Al-Kuwaiti portray Kuwait?", "Basil Mahfouz Al-Kuwaiti"),
    ("Can you tell me about Aysha al-Hashim's writing style?", "Aysha al-Hashim"),
    ("Did Tae-ho Park study in Seoul, South Korea?", "Tae-ho Park"),
    ("What does Ludwig van Beethoven's music sound like?", "Ludwig van Beethoven"),
    ("Who is Moshe Ben-David?", "Moshe Ben-David"),
    ("How does the author's upbringing influence their work?", None),
    ("What genre does the author write in?", None),
])
def test_subject_heuristic_finds_the_author_name(question, subject):
    found = subject_from_question(question)
    assert found == subject
    if found is not None:
        assert found in question  # editors look the subject up inside the prompt


# --- real world ---------------------------------------------------------------------------------

def test_realworld_directory_gives_forget_and_both_neighbour_splits(tmp_path):
    splits = load_realworld(realworld_dir(tmp_path))
    assert {s: len(r) for s, r in splits.items()} == {"forget": 2, "neighbour": 1, "neighbour_train": 2}
    first = splits["forget"][0]
    assert first.subject == "Eddie Van Halen"
    assert first.question == REALWORLD_ROW["question"]
    assert first.answer == REALWORLD_ROW["answer"]  # the model's own generation ...
    assert first.golden_answer == "Eddie Van Halen was born on January 26, 1955."  # ... and the short truth
    assert first.paraphrased_answer == "Eddie Van Halen was born on January 26, 1955."
    assert first.perturbed_answer == tuple(REALWORLD_ROWS["forget_perturbed"][0]["perturbed_answer"])
    assert first.paraphrased_question == "What is the birthdate of Eddie Van Halen?"
    assert splits["neighbour"][0].subject == "Jane Austen"
    assert [r.subject for r in splits["neighbour_train"]] == ["Dave Grohl", "Bono"]
    assert splits["neighbour_train"][1].golden_answer == "U2."


def test_realworld_accepts_jsonl_extension(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert load_realworld(realworld_dir(tmp_path / "a", ext=".jsonl")) == load_realworld(realworld_dir(tmp_path / "b"))


def test_realworld_row_subject_overrides_name(tmp_path):
    directory = realworld_dir(tmp_path)
    write_jsonl(directory / "forget_perturbed.json", [{**REALWORLD_ROW, "subject": "Van Halen"}])
    assert load_realworld(directory)["forget"][0].subject == "Van Halen"


@pytest.mark.parametrize("stem, field", [
    ("forget_perturbed", "golden_answer"), ("neighbor_perturbed", "name"), ("neighbor", "name")])
def test_realworld_missing_field_is_reported_by_file_line_and_field(tmp_path, stem, field):
    directory = realworld_dir(tmp_path)
    rows = [dict(row) for row in REALWORLD_ROWS[stem]] + [dict(REALWORLD_ROW)]
    del rows[-1][field]
    bad = write_jsonl(directory / f"{stem}.json", rows)
    with pytest.raises(E2UError, match=re.escape(f"{bad}:{len(rows)}: missing required field {field!r}")):
        load_realworld(directory)


def test_realworld_line_that_is_not_json_is_reported_by_file_and_line(tmp_path):
    directory = realworld_dir(tmp_path)
    bad = directory / "neighbor.json"
    bad.write_text(json.dumps(REALWORLD_ROWS["neighbor"][0]) + '\n{"name": "Bono", "question": \n')
    with pytest.raises(E2UError, match=re.escape(f"{bad}:2: not valid JSON")):
        load_realworld(directory)


def test_realworld_missing_files_and_directory_are_named(tmp_path):
    directory = realworld_dir(tmp_path)
    (directory / "neighbor.json").unlink()
    (directory / "neighbor_perturbed.json").unlink()
    with pytest.raises(E2UError, match=r"lacks neighbor_perturbed\.json, neighbor\.json") as info:
        load_realworld(directory)
    assert str(directory) in str(info.value)
    with pytest.raises(E2UError, match="not a directory"):
        realworld_files(tmp_path / "absent")
    with pytest.raises(E2UError, match="needs data.path"):
        load_realworld(None)


def test_files_of_several_json_arrays_load_as_datasets_wrote_them_above_1000_rows(tmp_path):
    """Older versions of `Dataset.to_json(lines=False)` wrote one array per 1000-row batch, one after another
    ("Extra data" to json.loads; later versions refuse to write them, but such files are in circulation: TOFU's
    retain90/95/99): every row of every array is read, numbered across the arrays."""
    from e2u.data.schema import read_rows

    rows = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(5)]
    by_hand = tmp_path / "by_hand.json"
    by_hand.write_text(json.dumps(rows[:2]) + "\n" + json.dumps(rows[2:]) + "\n", encoding="utf-8")
    assert [row for _, row in read_rows(by_hand)] == rows
    assert read_rows(by_hand)[3][0] == f"{by_hand}[3]"
    many = [{"question": f"question {i}", "answer": f"answer {i}"} for i in range(2345)]
    written = tmp_path / "written.json"  # as datasets wrote them: each batch's array ended by a newline
    written.write_text("".join(json.dumps(many[start : start + 1000]) + "\n" for start in range(0, 2345, 1000)))
    assert [row for _, row in read_rows(written)] == many
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(rows[:2]) + "\n{\"question\": 1}\n", encoding="utf-8")
    with pytest.raises(E2UError, match=re.escape(f"{broken}: expected JSON arrays") + ".*dict ending at line 2"):
        read_rows(broken)
    broken.write_text(json.dumps(rows[:2]) + "\n[{\"question\": ", encoding="utf-8")
    with pytest.raises(E2UError, match=re.escape(f"{broken}: not valid JSON") + ".*line 2"):
        read_rows(broken)
