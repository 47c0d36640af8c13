"""Numbers the hand-written chapters quote from benchmarks, read from the files the benchmarks write.

A benchmark that a chapter quotes writes its numbers with `write_measurement` to `bench/results/<name>.json`
(the command that measured them, when, the package versions, and the values). A chapter quotes a value with
the `measured` role (Sphinx extension `e2u.book.measured_role`):

    the leakage is {measured}`rome_leakage:layers.5.with_c|.2f` of one edit

`<name>:<dotted key>|<format>`: the key walks the `values` mapping (list items by index), the format is
Python's (`.2f`, `.0%`; none: the value as written). A missing file or key fails the book's build, so no
number in prose is typed by hand and none outlives the measurement it came from.
"""

from __future__ import annotations

import datetime
import json
import platform
import shlex
import sys
from pathlib import Path

from e2u.cell.record import package_versions
from e2u.errors import E2UError
from e2u.files import SOURCE_ROOT, write_json_atomic

FOLDER = Path("bench") / "results"  # under the repository (the book's root)


def write_measurement(name: str, values: dict, root: Path | None = None) -> Path:
    """Write `values` as `bench/results/<name>.json` (atomically), with the command line that measured them."""
    if not name.replace("-", "").replace("_", "").isalnum():
        raise E2UError(f"measurement name {name!r}: expected letters, digits, '-' or '_'")
    path = (root or SOURCE_ROOT) / FOLDER / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {
        "command": " ".join(["python", *map(shlex.quote, [_relative(sys.argv[0]), *sys.argv[1:]])]),
        "measured": datetime.date.today().isoformat(), "python": platform.python_version(),
        "packages": package_versions(), "values": values})
    return path


def _relative(script: str) -> str:
    try:
        return str(Path(script).resolve().relative_to(SOURCE_ROOT))
    except ValueError:
        return Path(script).name


def measured_value(root: Path, reference: str) -> tuple[str, str]:
    """(the value as text, where it comes from) of `<name>:<dotted key>|<format>` under `root`."""
    spec, _, fmt = reference.partition("|")
    name, sep, key = spec.partition(":")
    if not sep or not key:
        raise E2UError(f"measured {reference!r}: expected <name>:<dotted key>[|<format>], e.g. rome_leakage:layers.5.with_c|.2f")
    path = root / FOLDER / f"{name.strip()}.json"
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise E2UError(f"measured {reference!r}: no file {FOLDER / (name.strip() + '.json')} (run the benchmark that "
                       "writes it)") from None
    except json.JSONDecodeError as exc:
        raise E2UError(f"measured {reference!r}: {path.name} is not JSON ({exc})") from None
    value = record.get("values", {})
    for part in key.strip().split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            keys = sorted(value) if isinstance(value, dict) else f"a list of {len(value)}" if isinstance(value, list) \
                else "a value"
            raise E2UError(f"measured {reference!r}: {path.name} has no {part!r} at {key!r} (there: {keys})")
    if isinstance(value, (dict, list)):
        raise E2UError(f"measured {reference!r}: {key!r} in {path.name} is not a number or text")
    try:
        text = format(value, fmt) if fmt else str(value)
    except (ValueError, TypeError) as exc:
        raise E2UError(f"measured {reference!r}: format {fmt!r} does not fit {value!r} ({exc})") from None
    return text, f"{FOLDER / path.name}: `{record.get('command', '?')}`, {record.get('measured', '?')}"
