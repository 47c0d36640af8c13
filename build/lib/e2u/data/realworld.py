"""The real-world unlearning set of closer-look (Yuan et al. 2025, `data/real_world/`) as `{split: [QARecord]}`.

20 forget entities and 20 + 20 neighbour entities, 20 questions each, asked of Llama-3-8B-Instruct.
Every file is JSON Lines (one object per line) despite its `.json` extension; `.jsonl` is accepted too.

| split             | file                      | use                          |
| ----------------- | ------------------------- | ---------------------------- |
| `forget`          | `forget_perturbed.json`   | edit targets and forget eval |
| `neighbour`       | `neighbor_perturbed.json` | locality evaluation          |
| `neighbour_train` | `neighbor.json`           | retain training data         |

Fields: `name, question, answer, golden_answer` everywhere; the two `_perturbed` files add
`paraphrased_answer`, `perturbed_answer` (5), `paraphrased_question`, and forget a `task_id` (1..20).

`answer` is the target model's own generation (long, and sometimes wrong); `golden_answer` is the short
ground truth that closer-look scores ROUGE, probability and entailment against. Both are kept.
The subject is the row's `subject` when present (UniErase's `forget_subject.json` adds one), else `name`.
Required: `name`, `question`, `answer` on every row, and `golden_answer` in the two evaluation files;
missing perturbation fields only disable the metrics that need them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

from e2u.data.schema import QARecord, read_jsonl, record_from_json, split_files
from e2u.errors import E2UError

# split name -> (file stem, fields required beyond question and answer)
REALWORLD_FILES = MappingProxyType({
    "forget": ("forget_perturbed", ("name", "golden_answer")),
    "neighbour": ("neighbor_perturbed", ("name", "golden_answer")),
    "neighbour_train": ("neighbor", ("name",)),
})


def load_realworld(path: str | Path) -> dict[str, list[QARecord]]:
    """Load `forget`, `neighbour` and `neighbour_train` from a closer-look `real_world` directory."""
    files = realworld_files(path)
    splits = {}
    for split, (_, required) in REALWORLD_FILES.items():
        records = []
        for where, obj in read_jsonl(files[split]):
            record = record_from_json(obj, where)  # checks question/answer and the optional fields' types
            for name in required:
                value = obj.get(name)
                if value is None:
                    raise E2UError(f"{where}: missing required field {name!r}")
                if not isinstance(value, str) or not value.strip():
                    raise E2UError(f"{where}: field {name!r} must be a non-empty string")
            records.append(replace(record, subject=record.subject or obj["name"]))
        splits[split] = records
    return splits


def realworld_files(path: str | Path) -> dict[str, Path]:
    """`{split name: file}` of a real_world directory; every missing file is named in one error."""
    if path is None:
        raise E2UError("the real-world data set needs data.path: a directory with forget_perturbed.json, "
                       "neighbor_perturbed.json and neighbor.json (closer-look's data/real_world)")
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise E2UError(f"real-world data path {directory} is not a directory (expected closer-look's "
                       f"data/real_world with forget_perturbed.json, neighbor_perturbed.json, neighbor.json)")
    stems = {split: stem for split, (stem, _) in REALWORLD_FILES.items()}
    return split_files(directory, stems, "real-world directory")
