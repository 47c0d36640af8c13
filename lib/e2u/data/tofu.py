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
  (one object per line, even with the `.json` extension, as in TOFU's and closer-look's `data/`;
  `Dataset.to_json` writes this format too).

TOFU has no subject field. A row's own `subject` (UniErase's `*_subject` files add one) is kept;
otherwise `subject_from_question` extracts the author's name from the question, or gives None, in
which case the editors key on the last prompt token.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

from ..errors import E2UError
from .schema import QARecord, read_jsonl, record_from_json, split_files

HUB_DATASET = "locuslab/TOFU"

# forget split -> its complementary training retain split (the HF locuslab/TOFU configs).
RETAIN_TRAIN = MappingProxyType({"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"})

EVAL_CONFIGS = MappingProxyType({
    "retain": "retain_perturbed",
    "real_authors": "real_authors_perturbed",
    "world_facts": "world_facts_perturbed",
})


def tofu_configs(forget_split: str = "forget10") -> dict[str, str]:
    """`{split name: TOFU config}` for a forget split; an unknown forget split is an error."""
    if forget_split not in RETAIN_TRAIN:
        raise E2UError(f"unknown TOFU forget split {forget_split!r}: expected one of {sorted(RETAIN_TRAIN)}")
    return {"forget": f"{forget_split}_perturbed", **EVAL_CONFIGS, "retain_train": RETAIN_TRAIN[forget_split]}


def load_tofu(forget_split: str = "forget10", path: str | Path | None = None) -> dict[str, list[QARecord]]:
    """Load TOFU's forget, retain-evaluation, real-authors, world-facts and training-retain splits.

    `path=None` (or empty) reads the hub; otherwise `path` is a directory of `<config>.json[l]` files.
    """
    configs = tofu_configs(forget_split)
    if not path:  # None or an empty data.path
        rows = {split: _hub_rows(config) for split, config in configs.items()}
    else:
        files = tofu_files(forget_split, path)
        rows = {split: read_jsonl(files[split]) for split in configs}
    return {split: [_with_subject(record_from_json(obj, where)) for where, obj in split_rows]
            for split, split_rows in rows.items()}


def tofu_files(forget_split: str, path: str | Path) -> dict[str, Path]:
    """`{split name: file}` of a local TOFU directory; every missing file is named in one error."""
    configs = tofu_configs(forget_split)
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise E2UError(f"TOFU data path {directory} is not a directory of <config>.json or <config>.jsonl files")
    return split_files(directory, configs, f"TOFU directory (forget split {forget_split!r})")


def _hub_rows(config: str) -> list[tuple[str, dict]]:
    """(where, row) for every row of one hub config; an unreachable hub points to `data.path`."""
    try:
        import datasets
    except ImportError:
        raise E2UError("reading TOFU from the hub needs the `datasets` package; install it or set data.path "
                       "to a local directory of TOFU <config>.json files") from None
    try:
        table = datasets.load_dataset(HUB_DATASET, config, split="train")
    except _network_errors() as exc:
        raise E2UError(f"could not reach the Hugging Face hub for {HUB_DATASET} config {config!r} "
                       f"({type(exc).__name__}); set data.path to a local directory of TOFU "
                       f"<config>.json files instead") from exc
    except Exception as exc:  # datasets' own errors (unknown config, bad cache) become one line
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise E2UError(f"could not load {HUB_DATASET} config {config!r} from the hub: "
                       f"{type(exc).__name__}: {first_line}") from exc
    return [(f"{HUB_DATASET}/{config} row {i}", dict(row)) for i, row in enumerate(table)]


def _network_errors() -> tuple[type[BaseException], ...]:
    """Exception types meaning "the hub cannot be reached" (offline mode, DNS, timeouts)."""
    # datasets' own OfflineModeIsEnabled, and its "Couldn't reach ... on the Hub", are ConnectionErrors
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled
        errors += [LocalEntryNotFoundError, OfflineModeIsEnabled]
    except ImportError:
        pass
    try:
        import requests
        errors += [requests.ConnectionError, requests.Timeout]
    except ImportError:
        pass
    try:
        import httpx
        errors += [httpx.TransportError]
    except ImportError:
        pass
    return tuple(errors)


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
