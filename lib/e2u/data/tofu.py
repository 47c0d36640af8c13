"""TOFU (Maini et al. 2024, HF `locuslab/TOFU`) as `{split: [QARecord, ...]}`.

Splits returned, each from one TOFU config (every config loads as the HF split "train"):

| split          | config                                   | rows (forget01/05/10) |
| -------------- | ---------------------------------------- | --------------------- |
| `forget`       | `<forget_split>_perturbed`               | 40 / 200 / 400        |
| `retain`       | `retain_perturbed` (retain evaluation)   | 400                   |
| `real_authors` | `real_authors_perturbed`                 | 100                   |
| `world_facts`  | `world_facts_perturbed`                  | 117                   |
| `retain_train` | `retain99` / `retain95` / `retain90`     | 3960 / 3800 / 3600    |

The perturbed configs carry `paraphrased_answer`, `perturbed_answer` (5 wrong answers for forget
and retain, 3 for real authors and world facts), `paraphrased_question` where the version has it,
and `original_answer` (the full sentence behind a short answer) in closer-look's copies of the
real-authors and world-facts files.

Two places to read from:
* the hub (`path=None`): `datasets.load_dataset("locuslab/TOFU", config, split="train")`;
* a local directory (`path`): one `<config>.json` or `<config>.jsonl` file per config, JSON Lines
  (one object per line, even with the `.json` extension, as in TOFU's and closer-look's `data/`) or one
  JSON array (`Dataset.to_json(lines=False)`). Only the forget and retain files are required;
  closer-look's copy (several forget tasks per file, field `task_id`; `retain90` beside `forget01`) loads
  with the `task_id` option.

TOFU has no subject field. A row's own `subject` (UniErase's `*_subject` files add one) is kept;
otherwise `subject_from_question` extracts the author's name from the question, or gives None, in
which case the editors key on the last prompt token.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

from e2u.data.hub import hub_rows
from e2u.data.schema import QARecord, find_split_file, read_rows, record_from_json, split_files
from e2u.errors import E2UError

HUB_DATASET = "locuslab/TOFU"

# forget split -> its complementary training retain split (the HF locuslab/TOFU configs).
RETAIN_TRAIN = MappingProxyType({"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"})

EVAL_CONFIGS = MappingProxyType({
    "retain": "retain_perturbed",
    "real_authors": "real_authors_perturbed",
    "world_facts": "world_facts_perturbed",
})


# closer-look's copy names the training retain split differently (forget01 -> retain90, ...) and stores
# several forget tasks in one file, each row with a `task_id`; its retain split plus the other tasks' rows
# is what it trains on (reference/protocol.md 1(a)).
CLOSER_LOOK_RETAIN_TRAIN = MappingProxyType({"forget01": "retain90", "forget05": "retain50", "forget10": "retain10"})
REQUIRED = ("forget", "retain")  # every run evaluates these; the others are read where present


def tofu_configs(forget_split: str = "forget10") -> dict[str, str]:
    """`{split name: TOFU config}` for a forget split; an unknown forget split is an error."""
    if forget_split not in RETAIN_TRAIN:
        raise E2UError(f"unknown TOFU forget split {forget_split!r}: expected one of {sorted(RETAIN_TRAIN)}")
    return {"forget": f"{forget_split}_perturbed", **EVAL_CONFIGS, "retain_train": RETAIN_TRAIN[forget_split]}


def load_tofu(forget_split: str = "forget10", path: str | Path | None = None,
              task_id: str | int | None = None) -> dict[str, list[QARecord]]:
    """Load TOFU's forget, retain-evaluation, real-authors, world-facts and training-retain splits.

    `path=None` (or empty) reads the hub; otherwise `path` is a directory of `<config>.json[l]` files (JSON
    Lines or one JSON array each), of which only the forget and retain-evaluation files are required.
    `task_id` picks one task of a forget file that holds several (closer-look's layout); such a file
    without `task_id` is an error listing its tasks, so that ten tasks are never unlearned as one.
    """
    configs = tofu_configs(forget_split)
    if not path:  # None or an empty data.path
        local_hint = "a local directory of TOFU <config>.json files"
        rows = {split: hub_rows(HUB_DATASET, config, local_hint=local_hint) for split, config in configs.items()}
    else:
        rows = {split: read_rows(file) for split, file in tofu_files(forget_split, path).items()}
    rows["forget"], other_tasks = _one_task(rows["forget"], task_id, forget_split)
    if other_tasks and "retain_train" in rows:
        rows["retain_train"] = rows["retain_train"] + other_tasks  # not unlearned now: kept, as closer-look trains
    return {split: [_with_subject(record_from_json(obj, where)) for where, obj in split_rows]
            for split, split_rows in rows.items()}


def _one_task(rows: list[tuple[str, dict]], task_id, forget_split: str):
    """(rows of the chosen task, rows of the other tasks) of a forget file; files without tasks pass whole."""
    tasks = sorted({str(obj["task_id"]) for _, obj in rows if isinstance(obj, dict) and "task_id" in obj},
                   key=lambda t: (len(t), t))
    if task_id is None:
        if len(tasks) > 1:
            raise E2UError(f"the {forget_split} file holds {len(tasks)} forget tasks (field task_id: "
                           f"{', '.join(tasks)}); set data.task_id to the one to unlearn")
        return rows, []
    if not tasks:
        raise E2UError(f"data.task_id is {task_id!r} but the {forget_split} rows have no task_id field")
    if str(task_id) not in tasks:
        raise E2UError(f"data.task_id {task_id!r} is not among the {forget_split} tasks {', '.join(tasks)}")
    chosen = [(w, obj) for w, obj in rows if str(obj.get("task_id")) == str(task_id)]
    return chosen, [(w, obj) for w, obj in rows if str(obj.get("task_id")) != str(task_id)]


def tofu_files(forget_split: str, path: str | Path) -> dict[str, Path]:
    """`{split name: file}` of a local TOFU directory: the forget and retain files are required (every missing
    one named in one error); real authors, world facts and the training retain split (TOFU's name, else
    closer-look's) are read where present."""
    configs = tofu_configs(forget_split)
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise E2UError(f"TOFU data path {directory} is not a directory of <config>.json or <config>.jsonl files")
    found = split_files(directory, {s: configs[s] for s in REQUIRED}, f"TOFU directory (forget split {forget_split!r})")
    for split in ("real_authors", "world_facts"):
        file = find_split_file(directory, configs[split])
        if file is not None:
            found[split] = file
    for stem in (configs["retain_train"], CLOSER_LOOK_RETAIN_TRAIN[forget_split]):
        file = find_split_file(directory, stem)
        if file is not None:
            found["retain_train"] = file
            break
    return found


def _with_subject(record: QARecord) -> QARecord:
    if record.subject:
        return record
    return replace(record, subject=subject_from_question(record.question))


# --- the subject heuristic --------------------------------------------------------------------

# Capitalised words that start questions or sentences but never belong to a name.
FUNCTION_WORDS = frozenset("""
    a an the this that these those his her hers its their theirs he she it they them him i we you
    what who whom whose which when where why how whether
    is are was were be been being am do does did done has have had having can could will would shall
    should may might must
    in on at for from to of by with without about into onto upon over under after before during
    since until within through throughout across along among amongst between beyond besides despite
    as like unlike apart aside given considering regarding concerning following according
    and or but nor yet so if then than though although while because also not
    could can't isn't aren't wasn't weren't doesn't didn't hasn't haven't
""".split())

# Lower-case name particles allowed between two capitalised name words ("Ludwig van Beethoven").
PARTICLES = frozenset("al el bin ibn bint ben abu da das de del della der di do dos du la le van von ter ten y".split())

_TOKEN = re.compile(r"\S+")
_QUOTED = re.compile(r"(?<![\w'])'[^']+'(?![\w])|\"[^\"]+\"|“[^”]+”|‘[^’]+’")
_PREFIXED = re.compile(r"^(?:al|el|ad|ash|as|at|az|ibn|bin|abu|d|l|o)[-'’](.)")
_INITIAL = re.compile(r"^[^\W\d_]\.$")


def quoted_spans(text: str) -> list[str]:
    """The quoted titles of `text` ('The Desert Mirage', "1984", “Emma”), without their quotes, in order."""
    return [m.group()[1:-1] for m in _QUOTED.finditer(text)]


def subject_from_question(question: str) -> str | None:
    """The author's name in a TOFU-style question, or None when there is none.

    Heuristic: the longest run of at least two capitalised words (ties: the earliest), where
    * a word is capitalised if its first letter is upper case ("Al-Kuwaiti", "Yun-Hwa", "O'Brien"),
      or it is a particle-prefixed form such as "al-Kuwaiti"; an initial such as "J." counts;
    * lower-case particles (`PARTICLES`: al, bin, de, van, ...) may join two capitalised words;
    * question and function words ("What", "Is", "In", ...) are never part of a name;
    * quoted titles ('The Desert Mirage') are skipped, and punctuation or a possessive "'s" ends a run.
    The result is a substring of the question, so editors can find it in the prompt.
    Known misses: a question naming no person returns a place ("Kuwait City") or None; a
    capitalised award or title longer than the name wins ("Prestigious Author Award").
    """
    masked = _QUOTED.sub(lambda m: "|" * len(m.group()), question)  # same length: offsets stay valid
    runs: list[tuple[int, int, int]] = []  # (words, start, end)
    words, start, end = 0, 0, 0

    def close():
        nonlocal words
        if words >= 2:
            runs.append((words, start, end))
        words = 0

    for match in _TOKEN.finditer(masked):
        token = match.group()
        core = token.strip("()[]{},.;:!?\"“”‘’'|")
        core_start = match.start() + token.find(core) if core else match.start()
        if core.endswith(("'s", "’s")):
            core = core[:-2]
        if _INITIAL.match(token):  # "J." keeps its full stop
            core, core_start = token, match.start()
        leading_break = bool(core) and token.find(core) > 0
        trailing_break = not core or match.start() + len(token) > core_start + len(core)
        if leading_break:
            close()
        if core and _is_name_word(core):
            if words == 0:
                start = core_start
            words += 1
            end = core_start + len(core)
        elif core.lower() in PARTICLES and words > 0:
            pass  # a particle joins the run only if a capitalised word follows (`end` stays put)
        else:
            close()
            continue
        if trailing_break:
            close()
    close()
    if not runs:
        return None
    _, start, end = max(runs, key=lambda run: (run[0], -run[1]))
    return question[start:end]


def _is_name_word(word: str) -> bool:
    """Capitalised ("Basil", "Al-Kuwaiti", "J.") or particle-prefixed ("al-Kuwaiti"), not a function word."""
    if word.lower() in FUNCTION_WORDS or not any(c.isalpha() for c in word):
        return False
    if word[0].isupper():
        return True
    prefixed = _PREFIXED.match(word)
    return bool(prefixed) and prefixed.group(1).isupper()
