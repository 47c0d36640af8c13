"""How a generated chapter shows what may be empty: a table, or a sentence saying why there is none."""

from __future__ import annotations

import pandas as pd
from IPython.display import Markdown


def or_note(table: pd.DataFrame, note: str):
    """The table, or the note as Markdown when the table is empty (nothing of that kind in the study)."""
    return table if len(table) else Markdown(note)
