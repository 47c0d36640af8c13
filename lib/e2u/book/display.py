"""How a generated chapter shows what may be empty (a table, or a sentence saying why there is none) and a model's
answer in a table cell."""

from __future__ import annotations

import pandas as pd
from IPython.display import Markdown


def or_note(table: pd.DataFrame, note: str):
    """The table, or the note as Markdown when the table is empty (nothing of that kind in the study)."""
    return table if len(table) else Markdown(note)


def one_line(answer: str) -> str:
    """A model's answer as a table cell shows it: line breaks and runs of spaces as one space. pandas writes a line
    break inside a cell as a literal backslash-n, which a reader cannot tell from the model's text (and which reads
    as a TeX command to the site check)."""
    return " ".join(str(answer).split())
