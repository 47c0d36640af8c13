"""What the book's numbers rest on, in one line read from the result files: the model, and per setting the forget
and kept questions each seed asked and the seeds (plain cells: `claim_cells.recipe_kind`), beside the reminder that
the paper's protocol is reconstructed here, not copied.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from e2u.book.claim_cells import PLAIN, kept_split, recipe_kind
from e2u.book.readings import CHOSEN
from e2u.book.report import listing, questions_asked, shown_model
from e2u.model.source import EMBEDDED_MODEL

EMBEDDED_TITLE = "SmolLM2-135M-Instruct, the embedded default"  # how the caveat names `EMBEDDED_MODEL`
UNNAMED = "a model its result files do not name"


def scope(results: Sequence[dict]) -> dict:
    """{"models": [names as a page shows them], "settings": {setting: {"forget": sizes, "kept": sizes, "seeds":
    seeds}}} over the plain cells (sizes: the set of question counts a cell asked)."""
    models, settings = [], defaultdict(lambda: {"forget": set(), "kept": set(), "seeds": set()})
    for r in results:
        params = r["params"]
        if recipe_kind(params) != PLAIN:
            continue
        model = params.get("model")
        name = (UNNAMED if not model else EMBEDDED_TITLE if model.lower() == EMBEDDED_MODEL else shown_model(model))
        if name not in models:
            models.append(name)
        after, entry = r.get("after", {}), settings[params["setting"]]
        kept = kept_split(after, CHOSEN)
        entry["forget"].add(questions_asked(r, "forget") if "forget" in after else 0)
        entry["kept"].add(questions_asked(r, kept) if kept else 0)
        entry["seeds"].add(params["seed"])
    return {"models": models, "settings": dict(settings)}


def caveat_markdown(results: Sequence[dict]) -> str:
    """One line: the model, each setting's forget and kept questions per seed and its seeds, and that the
    protocol is reconstructed (a link to the protocol chapter)."""
    found = scope(results)
    if not found["settings"]:
        return "*Caveat:* no plain cell of this study has a result yet, so nothing above is measured."
    per_setting = "; ".join(
        f"{setting}: {listing(sorted(s['forget']), 'or')} forget and {listing(sorted(s['kept']), 'or')} kept "
        f"questions per seed, "
        f"{len(s['seeds'])} seed{'s' if len(s['seeds']) != 1 else ''}" for setting, s in sorted(
            found["settings"].items(), key=lambda item: not item[0].startswith("pretrained")))  # as the paper
    models = found["models"]
    return (f"*Caveat:* {'one model' if len(models) == 1 else f'{len(models)} models'}, {' and '.join(models)}; "
            f"{per_setting}; the paper's protocol reconstructed from what is known of it "
            "({doc}`the protocol chapter <protocol>`). These are this study's numbers, not the paper's.")
