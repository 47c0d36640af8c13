"""Editors next to unlearning baselines, from result files only: one compact row per method (the paper's headline
numbers and what kind of method it is), and the answers every method gives to the same questions side by side."""

from __future__ import annotations

import pandas as pd

from e2u.book.display import one_line
from e2u.evaluation.paper_metrics import retain_split
from e2u.methods import get_method


def method_kind(result: dict) -> str:
    """"editor", "baseline (paper)" or "baseline (beyond the paper)", from the method registry."""
    method = get_method(result["params"]["method"])
    if method.kind == "editing":
        return "editor"
    return "baseline (paper)" if method.in_paper else "baseline (beyond the paper)"


def side_by_side(results: list[dict], setting: str) -> pd.DataFrame:
    """Per cell of `setting`: kind, Rouge1 on forget / rephrased forget / retain, combined score, forget refusal
    rate and, for training runs, how long it trained; best combined score first."""
    rows = []
    for r in (r for r in results if r["params"]["setting"] == setting):
        after = r["summary"]["after"]
        keep = retain_split(after)
        combined = (r.get("aggregates", {}).get("after", {}).get("combined_score") or {}).get("value")
        rows.append({"method": f"{r['method_title']} ({r['cell_id']})", "kind": method_kind(r),
                     "forget Rouge1": (after.get("forget") or {}).get("rouge1_recall"),
                     "rephrased Rouge1": (after.get("forget_paraphrased") or {}).get("rouge1_recall"),
                     f"{keep} Rouge1" if keep else "kept Rouge1": (after.get(keep) or {}).get("rouge1_recall"),
                     "combined": combined, "forget refusal": (after.get("forget") or {}).get("refusal_rate"),
                     "unlearn s": r.get("timings_s", {}).get("unlearn")})
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows).set_index("method").sort_values("combined", ascending=False)
    return table.round(3)


def answers_side_by_side(results: list[dict], setting: str, split: str = "forget", n: int = 2) -> pd.DataFrame:
    """The first `n` questions of `split`: the unedited model's answer, then every method's, one column each."""
    cells = [r for r in results if r["params"]["setting"] == setting and r["after"].get(split)]
    if not cells:
        return pd.DataFrame()
    first = cells[0]
    rows = []
    for i, item in enumerate(first["before"][split][:n]):
        row = {"question": item["question"], "truth": item.get("reference", ""), "unedited": one_line(item["generated"])}
        for r in cells:
            answers = r["after"][split]
            row[f"{r['method_title']} ({r['cell_id']})"] = one_line(answers[i]["generated"]) if i < len(answers) else ""
        rows.append(row)
    return pd.DataFrame(rows).set_index("question").T
