"""The question-answer record every setting produces, and strict reading of JSON Lines and JSON array files.

Data files are untrusted input: each line must be a JSON object with the required fields as
strings; any violation stops with the file, the line and the field named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from e2u.errors import E2UError

REQUIRED_FIELDS = ("question", "answer")


@dataclass(frozen=True)
class QARecord:
    """One question with its reference answer. `subject` keys the locate-then-edit methods."""
    question: str
    answer: str
    subject: str | None = None
    paraphrased_question: str | None = None
    paraphrased_answer: str | None = None
    perturbed_answer: tuple[str, ...] = field(default_factory=tuple)
    original_answer: str | None = None  # full-sentence answer when `answer` is short (TOFU real authors, world facts)
    golden_answer: str | None = None  # short ground truth when `answer` is a model's own generation (real world)


def require_strings(obj, names, where: str) -> None:
    """`obj` is a JSON object whose fields `names` are non-empty strings; else an error naming `where` and the field."""
    if not isinstance(obj, dict):
        raise E2UError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for name in names:
        if name not in obj:
            raise E2UError(f"{where}: missing required field {name!r}")
        if not isinstance(obj[name], str) or not obj[name].strip():
            raise E2UError(f"{where}: field {name!r} must be a non-empty string")


def record_from_json(obj, where: str) -> QARecord:
    """Validate one decoded JSON object; `where` names the file and line in error messages."""
    require_strings(obj, REQUIRED_FIELDS, where)
    optional = {}
    for name in ("subject", "paraphrased_question", "paraphrased_answer", "original_answer", "golden_answer"):
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            raise E2UError(f"{where}: field {name!r} must be a string")
        optional[name] = value or None
    perturbed = obj.get("perturbed_answer") or []
    if isinstance(perturbed, str):
        perturbed = [perturbed]
    if not isinstance(perturbed, list) or not all(isinstance(p, str) for p in perturbed):
        raise E2UError(f"{where}: field 'perturbed_answer' must be a list of strings")
    return QARecord(question=obj["question"], answer=obj["answer"], perturbed_answer=tuple(perturbed), **optional)


def read_jsonl(path: str | Path) -> list[tuple[str, dict]]:
    """(where, object) for every non-blank line; `where` is `file:line`."""
    path = Path(path)
    if not path.is_file():
        raise E2UError(f"data file {path} does not exist")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                rows.append((where, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise E2UError(f"{where}: not valid JSON ({exc.msg})") from None
    return rows


def read_rows(path: str | Path) -> list[tuple[str, dict]]:
    """(where, object) for every record of a JSON Lines file or of a file holding JSON arrays.

    Three layouts occur under the same `.json` extension: TOFU's and closer-look's files are JSON Lines,
    PISTOL's harness writes one array, and `Dataset.to_json(lines=False)` writes one array per batch of 1000
    rows, one after another. `where` is `file:line` for JSON Lines and `file[index]` (counted over all the
    arrays) otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise E2UError(f"data file {path} does not exist")
    with path.open(encoding="utf-8") as handle:
        head = handle.read(4096).lstrip()
    if not head.startswith("["):
        return read_jsonl(path)
    rows = [row for array in json_arrays(path) for row in array]
    return [(f"{path}[{index}]", row) for index, row in enumerate(rows)]


def json_arrays(path: Path) -> list[list]:
    """The JSON arrays in `path`, one after another (whitespace between them); anything else is an error
    naming the file and the line."""
    text = path.read_text(encoding="utf-8")
    decoder, arrays, position = json.JSONDecoder(), [], 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return arrays
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise E2UError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(value, list):
            line = text.count("\n", 0, position) + 1
            raise E2UError(f"{path}: expected JSON arrays of objects or JSON Lines, found a "
                           f"{type(value).__name__} ending at line {line}")
        arrays.append(value)


def find_split_file(directory: Path, stem: str) -> Path | None:
    """`<stem>.json` or `<stem>.jsonl` in `directory`, None if neither; both present is an error."""
    present = [c for c in (directory / f"{stem}.json", directory / f"{stem}.jsonl") if c.is_file()]
    if len(present) > 1:
        raise E2UError(f"directory {directory} has both {present[0].name} and {present[1].name}: keep one")
    return present[0] if present else None


def split_files(directory: Path, stems: dict[str, str], what: str) -> dict[str, Path]:
    """`{split: file}` for every `{split: stem}`; one error names every missing file.

    `what` describes the directory in messages ("TOFU directory", "real-world directory", ...).
    """
    found = {split: find_split_file(directory, stem) for split, stem in stems.items()}
    missing = [f"{stems[split]}.json" for split, file in found.items() if file is None]
    if missing:
        raise E2UError(f"{what} {directory} lacks {', '.join(missing)} (or the .jsonl equivalent)")
    return found
