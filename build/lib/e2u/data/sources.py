"""Data sources by name. Each returns `{split name: [QARecord, ...]}` (DESIGN section 3).

| source       | setting    | reads                                                                 |
| ------------ | ---------- | --------------------------------------------------------------------- |
| `factual`    | pretrained | TOFU's factual questions (hub, local file) or the embedded set; the known ones |
| `pistol`     | finetuned  | PISTOL's contract graph (hub, local file) or the seeded generator (embedded)  |
| `probe`      | pretrained | real-world entities' facts the model knows (embedded; closer-look style)   |
| `mini`       | pretrained | 12 forget + 12 neighbour real-world facts SmolLM2-135M knows (embedded) |
| `fictional`  | finetuned  | the seeded TOFU-style author generator (`fictional.py`, embedded)     |
| `tofu`       | finetuned  | `locuslab/TOFU` from the hub, or a local directory of its files        |
| `realworld`  | pretrained | a local directory in closer-look's real-world format                  |
| `jsonl`      | either     | a local directory with one `<split>.jsonl` per split (`forget` needed) |

`factual` and `pistol` are the paper's protocol (reference/paper-protocol.md); `probe`, `fictional`,
`tofu` and `realworld` the closer-look/TOFU protocol kept as the second study.
Options come from the study file's `data:` mapping; an unknown option is an error naming it.
(`probe` and `factual` keep only what the model under study knows, so they need the model and are
loaded by the cell itself; their options and defaults are `ProbeOptions` / `FactualOptions`, checked
here too.)
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from e2u.data.factual import FactualOptions, factual_files
from e2u.data.fictional import fictional_splits
from e2u.data.pistol import PistolOptions, pistol_files, pistol_splits
from e2u.data.probe import ProbeOptions
from e2u.data.realworld import load_realworld, realworld_files
from e2u.data.schema import QARecord, read_jsonl, record_from_json
from e2u.data.tofu import load_tofu, tofu_files
from e2u.errors import E2UError

MINI_FILE = Path(__file__).with_name("mini.jsonl")

# source -> the options it accepts beyond `path`, with their defaults
SOURCE_OPTIONS = MappingProxyType({
    "mini": MappingProxyType({}),
    "jsonl": MappingProxyType({}),
    "fictional": MappingProxyType({"seed": 0, "n_authors": 20, "forget_percent": 10, "retain_eval": 40}),
    "tofu": MappingProxyType({"forget_split": "forget10", "task_id": None}),
    "realworld": MappingProxyType({}),
    "probe": MappingProxyType(ProbeOptions.defaults()),
    "factual": MappingProxyType(FactualOptions.defaults()),
    "pistol": MappingProxyType(PistolOptions.defaults()),
})
NEEDS_THE_MODEL = ("probe", "factual")
# Whose protocol a source's setting follows (the book names it above every table).
PROTOCOL = MappingProxyType({"factual": "the paper's protocol", "pistol": "the paper's protocol",
                             "probe": "closer-look's protocol", "realworld": "closer-look's protocol",
                             "fictional": "TOFU's protocol", "tofu": "TOFU's protocol", "mini": "a smoke test",
                             "jsonl": "local data"})  # keep only what the model under study knows
OPTION_CLASSES = MappingProxyType({"probe": ProbeOptions, "factual": FactualOptions, "pistol": PistolOptions})


def source_options(source: str, options: dict | None) -> dict:
    """The source's defaults updated with `options`; unknown sources and options are errors."""
    if source not in SOURCE_OPTIONS:
        raise E2UError(f"unknown data source {source!r}: expected one of {sorted(SOURCE_OPTIONS)}")
    allowed = SOURCE_OPTIONS[source]
    unknown = sorted(set(options or {}) - set(allowed))
    if unknown:
        raise E2UError(f"data source {source!r}: unknown option(s) {unknown}; allowed: {sorted(allowed) or 'none'}")
    merged = {**allowed, **(options or {})}
    if source in OPTION_CLASSES:
        try:
            OPTION_CLASSES[source](**merged)
        except E2UError as exc:
            raise E2UError(f"data source {source!r}: {exc}") from None
    return merged


def load_mini() -> dict[str, list[QARecord]]:
    splits: dict[str, list[QARecord]] = {}
    for where, obj in read_jsonl(MINI_FILE):
        split = obj.get("split") if isinstance(obj, dict) else None
        if split not in ("forget", "neighbour"):
            raise E2UError(f"{where}: field 'split' must be 'forget' or 'neighbour'")
        splits.setdefault(split, []).append(record_from_json(obj, where))
    return splits


def load_jsonl_dir(path: str) -> dict[str, list[QARecord]]:
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise E2UError(f"data path {directory} is not a directory of <split>.jsonl files")
    files = sorted(directory.glob("*.jsonl"))
    if not any(f.stem == "forget" for f in files):
        raise E2UError(f"data directory {directory} has no forget.jsonl (found {[f.name for f in files]})")
    return {f.stem: [record_from_json(obj, where) for where, obj in read_jsonl(f)] for f in files}


def load_source(source: str, path: str | None = None, options: dict | None = None) -> dict[str, list[QARecord]]:
    """Load the data source named `source` (`path` for the file-based ones, `options` per source)."""
    options = source_options(source, options)
    if source == "mini":
        return load_mini()
    if source == "jsonl":
        if not path:
            raise E2UError("data source 'jsonl' needs data.path: a directory of <split>.jsonl files")
        return load_jsonl_dir(path)
    if source == "fictional":
        return fictional_splits(options["seed"], options["n_authors"], options["forget_percent"],
                                options["retain_eval"])
    if source == "tofu":
        return load_tofu(options["forget_split"], path or None, options["task_id"])
    if source == "pistol":
        return pistol_splits(path or None, **options)
    if source == "realworld":
        if not path:
            raise E2UError("data source 'realworld' needs data.path: a directory of closer-look real_world files")

        return load_realworld(path)
    raise E2UError(f"data source {source!r} needs the model under study; load it with e2u.data.probe")


def source_files(source: str, path: str | None = None, options: dict | None = None) -> list[Path]:
    """The files a source reads (or is generated from), whose hashes enter the cache keys."""
    here = Path(__file__).parent
    if source == "mini":
        return [MINI_FILE]
    if source == "jsonl" and path:
        return sorted(Path(path).expanduser().glob("*.jsonl"))
    if source == "fictional":
        return [here / "fictional.py", here / "utility_real_authors.jsonl", here / "utility_world_facts.jsonl"]
    if source == "tofu" and path:
        return sorted(tofu_files(source_options(source, options)["forget_split"], path).values())
    if source == "realworld" and path:
        return sorted(realworld_files(path).values())
    if source == "factual":
        return factual_files(path or None, source_options(source, options))
    if source == "pistol":
        return pistol_files(path or None, source_options(source, options))
    if source == "probe":
        entities = source_options(source, options)["entities_path"]
        return [here / "probe.py", Path(entities).expanduser() if entities else here / "probe_entities.jsonl"]
    return []
