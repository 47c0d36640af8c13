"""The cost chapter's tables and figures (`notebooks/cost.ipynb`), computed from files only.

Four sources, each read as the runs left it: the cells' result files (`timings_s` per stage, peak
memory, the method's log), the `make book` stages file (`stages.read_stages`), the scaling points'
files (`<results>/<study>/scaling/*.json`, `scaling.py`) and, where a GPU run has been made, the
file `bench/gpu_check.sh` writes (`<results>/gpu_check.json`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from e2u.book.display import or_note
from e2u.methods import get_method
from e2u.study.scaling import DEFAULT_METHODS, DEFAULT_N_FORGET, FAMILIES
from e2u.study.scaling import load_scaling as load
from e2u.study.stages import read_stages

STAGES = (("load", "load"), ("evaluate_before", "evaluate before"), ("unlearn", "unlearn"),
          ("evaluate_chunks", "evaluate after each chunk"), ("evaluate_after", "evaluate after"),
          ("human_aligned", "human-aligned checks"))
GPU_CHECK = "gpu_check.json"
GPU_COMMAND = "bash bench/gpu_check.sh"


def _cell_name(result: dict) -> str:
    return f"{result['params']['setting']}/{result['cell_id']}"


def _method_label(entry: dict) -> str:
    family = entry.get("family")
    return f"{entry['method_title']} ({family})" if family else entry["method_title"]


# --- the cells: time per stage, peak memory ---------------------------------------------------------

def cell_timings_table(results: list[dict]) -> pd.DataFrame:
    """Each cell's device and the seconds of each of its stages (load, evaluate, unlearn, evaluate), and their sum."""
    rows = [{"cell": _cell_name(r), "device": r.get("device"), **r["timings_s"],
             "total": round(sum(r["timings_s"].values()), 2)} for r in results]
    return pd.DataFrame(rows).set_index("cell") if rows else pd.DataFrame()


def stage_times_figure(results: list[dict]):
    """One horizontal bar per cell, stacked by stage (those some cell recorded): where a cell's wall time goes."""
    cells = [_cell_name(r) for r in results]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * max(len(cells), 1)), layout="constrained")
    left = [0.0] * len(cells)
    stages = [(stage, label) for stage, label in STAGES if any(stage in r["timings_s"] for r in results)]
    for (stage, label), colour in zip(stages, sns.color_palette("colorblind", len(stages))):
        seconds = [r["timings_s"].get(stage, 0.0) or 0.0 for r in results]
        ax.barh(cells, seconds, left=left, color=colour, label=label)
        left = [a + b for a, b in zip(left, seconds)]
    ax.invert_yaxis()  # the first cell on top, as in the tables
    ax.set_xlabel("wall time (s)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    plt.close(fig)
    return fig


def peak_memory_of(result: dict) -> float | None:
    """The cell's peak memory in GiB: the process's peak (`peak_memory_gb`: CUDA's maximum allocated, else
    peak resident memory) where recorded, else the GPU peak of unlearning (`peak_gpu_memory_gb`), else None."""
    for name in ("peak_memory_gb", "peak_gpu_memory_gb"):
        if result.get(name) is not None:
            return result[name]
    return None


def peak_memory_table(results: list[dict]) -> pd.DataFrame:
    """One row per cell: its device and the peak memory recorded in its result file (blank: not recorded)."""
    rows = []
    for r in results:
        row = {"cell": _cell_name(r), "device": r.get("device")}
        if "peak_memory_gb" in r:
            row["peak memory GiB (process)"] = r["peak_memory_gb"]
        if "peak_gpu_memory_gb" in r:
            row["peak GPU memory GiB (unlearning)"] = r["peak_gpu_memory_gb"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("cell") if rows else pd.DataFrame()


def peak_memory_note(results: list[dict]) -> str:
    """What the peak-memory table can and cannot say for these cells."""
    if not results:
        return "No results."
    if all(peak_memory_of(r) is None for r in results):
        devices = sorted({str(r.get("device")) for r in results})
        return (f"No peak memory was recorded for these cells (device: {', '.join(devices)}): these result files "
                "predate the process-peak measurement, and the GPU peak exists only on a GPU.")
    return ""


def stages_table(stages: dict) -> pd.DataFrame:
    """Seconds per `make book` stage, as recorded by the `e2u` commands."""
    order = {"install": 0, "prepare": 1, "study": 2}
    ordered = sorted(stages.items(), key=lambda item: order.get(item[0], len(order)))
    rows = [{"stage": stage, "seconds": seconds, "minutes": round(seconds / 60, 1)} for stage, seconds in ordered]
    return pd.DataFrame(rows).set_index("stage") if rows else pd.DataFrame()


def study_stages_table(results_dir: str | Path, study_name: str):
    """The recorded `make book` stages of the study whose results are in `results_dir` (`<results>/<study>`),
    or a note when none are recorded."""
    stages = read_stages(Path(results_dir).parent, study_name)
    return or_note(stages_table(stages), "No stage timings recorded yet.")


# --- scaling: cost against the number of forget questions -----------------------------------------

def load_scaling(results_dir: str | Path) -> list[dict]:
    """The study's scaling measurements, `<results>/<study>/scaling/*.json` (`results_dir` is `<results>/<study>`)."""
    directory = Path(results_dir)
    return load(directory.parent, directory.name)


def scaling_table(points: list[dict]) -> pd.DataFrame:
    """One row per measured point: method, family, n, unlearning seconds, seconds per question, edits or
    steps, and peak memory."""
    rows = [{"method": p["method_title"], "family": p.get("family"), "n_forget": p["point"]["n_forget"],
             "device": p.get("device"), "unlearn seconds": p["timings_s"]["unlearn"],
             "seconds per question": round(p["timings_s"]["unlearn"] / p["point"]["n_forget"], 2),
             "edits": p.get("edits"), "steps": p.get("steps"), "peak memory GiB": p.get("peak_memory_gb"),
             "load seconds": p["timings_s"].get("load")} for p in points]
    return pd.DataFrame(rows) if rows else pd.DataFrame()


def growth_exponent(points: list[dict]) -> float | None:
    """b in seconds ~ n^b, a least-squares fit of log seconds on log n (None with fewer than two sizes)."""
    pairs = [(math.log(p["point"]["n_forget"]), math.log(p["timings_s"]["unlearn"]))
             for p in points if p["timings_s"]["unlearn"] > 0]
    if len({x for x, _ in pairs}) < 2:
        return None
    mx, my = sum(x for x, _ in pairs) / len(pairs), sum(y for _, y in pairs) / len(pairs)
    return sum((x - mx) * (y - my) for x, y in pairs) / sum((x - mx) ** 2 for x, _ in pairs)


def _by_method(points: list[dict]) -> dict[str, list[dict]]:
    """Points grouped by method in the families' order (sequential, batch editing, training), each by n."""
    order = list(FAMILIES)

    def position(p: dict) -> tuple:
        method = p["point"]["method"]
        return (order.index(method) if method in order else len(order), method, p["point"]["n_forget"])

    groups: dict[str, list[dict]] = {}
    for p in sorted(points, key=position):
        groups.setdefault(_method_label(p), []).append(p)
    return groups


def scaling_figure(points: list[dict]):
    """Unlearning seconds (left) and peak memory (right) against the number of forget questions, one line per
    method; log-log axes when the seconds span more than a factor of ten."""
    groups = _by_method(points)
    fig, (time_ax, memory_ax) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for (label, group), colour in zip(groups.items(), sns.color_palette("colorblind", len(groups))):
        n = [p["point"]["n_forget"] for p in group]
        time_ax.plot(n, [p["timings_s"]["unlearn"] for p in group], marker="o", color=colour, label=label)
        memory = [(x, p.get("peak_memory_gb")) for x, p in zip(n, group) if p.get("peak_memory_gb") is not None]
        if memory:
            memory_ax.plot(*zip(*memory), marker="o", color=colour, label=label)
    seconds = [p["timings_s"]["unlearn"] for p in points if p["timings_s"]["unlearn"] > 0]
    sizes = sorted({p["point"]["n_forget"] for p in points})
    if seconds and max(seconds) > 10 * min(seconds):
        time_ax.set_yscale("log")
        time_ax.set_xscale("log")
    for ax in (time_ax, memory_ax):
        ax.set_xticks(sizes, [str(n) for n in sizes])
        if ax.get_xscale() == "log":
            ax.minorticks_off()
        ax.set_xlabel("forget questions")
        ax.grid(alpha=0.3)
    time_ax.set_ylabel("unlearning wall time (s)")
    memory_ax.set_ylabel("peak memory of the process (GiB)")
    memory_ax.set_ylim(bottom=0)
    handles, labels = time_ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 3), frameon=False)
    plt.close(fig)
    return fig


def scaling_markdown(points: list[dict]) -> str:
    """One bullet per method: the time at the smallest and largest n, their ratio, and the fitted exponent;
    or a note saying how to make the measurements when there are none."""
    if not points:
        methods = ", ".join(get_method(m).title for m in DEFAULT_METHODS)
        sizes = ", ".join(map(str, DEFAULT_N_FORGET))
        return ("No scaling measurement has been made for this study: add `scaling: {}` to the study file "
                f"(the default grid: {methods} at {sizes} forget questions) and run the study.")
    lines = []
    for label, group in _by_method(points).items():
        first, last = group[0], group[-1]
        n0, n1 = first["point"]["n_forget"], last["point"]["n_forget"]
        s0, s1 = first["timings_s"]["unlearn"], last["timings_s"]["unlearn"]
        line = f"- **{label}**: {s0:.0f} s for {n0} forget questions"
        if n1 != n0:
            line += f", {s1:.0f} s for {n1}: ×{s1 / s0:.1f} the time for ×{n1 / n0:.1f} the questions"
            exponent = growth_exponent(group)
            if exponent is not None:
                line += f" (time ∝ n^{exponent:.2f} over {len(group)} sizes)"
        lines.append(line + f", on {first.get('device')}.")
    return "\n".join(lines)


# --- the GPU check ----------------------------------------------------------------------------------

def gpu_check_path(results_dir: str | Path) -> Path | None:
    """The GPU check's file for the study in `results_dir` (`<results>/<study>`): in it, else in `<results>`."""
    for directory in (Path(results_dir), Path(results_dir).parent):
        if (directory / GPU_CHECK).is_file():
            return directory / GPU_CHECK
    return None


def read_gpu_check(results_dir: str | Path) -> dict | None:
    path = gpu_check_path(results_dir)
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _flat(values: dict) -> dict:
    """A cell's entry as one row: a nested `timings...` mapping contributes its stages as they are, any other
    nested mapping (e.g. `forget_after`'s metrics) its keys prefixed with its name."""
    row = {}
    for key, value in values.items():
        if isinstance(value, dict):
            prefix = "" if str(key).startswith("timings") else f"{key} "
            row.update({f"{prefix}{inner}": v for inner, v in _flat(value).items()})
        elif isinstance(value, (int, float, str)) or value is None:
            row[key] = value
    return row


def gpu_check_table(data: dict) -> pd.DataFrame:
    """One row per cell of the GPU check: any mapping `cell -> {stage: seconds, ...}` (found at the top level
    or under `cells`), nested mappings flattened; the file's other scalar fields are `gpu_check_markdown`'s."""
    cells = data.get("cells") if isinstance(data.get("cells"), dict) else data
    rows = {str(cell): _flat(values) for cell, values in cells.items() if isinstance(values, dict)}
    table = pd.DataFrame.from_dict(rows, orient="index")
    if len(table):
        table.index.name = "cell"
    return table


def gpu_check_markdown(results_dir: str | Path) -> str:
    """What the GPU check measured where (its scalar fields), or that none has been made and how to make one."""
    data = read_gpu_check(results_dir)
    if data is None:
        return (f"No GPU run has been made: on a machine with a CUDA GPU, `{GPU_COMMAND}` runs the study's cells "
                f"there and writes `{GPU_CHECK}` beside the results, and this section then shows its timings.")
    facts = {k: v for k, v in data.items() if not isinstance(v, (dict, list))}
    where = "; ".join(f"{k}: {v}" for k, v in facts.items())
    return f"Measured by `{GPU_COMMAND}` ({gpu_check_path(results_dir).name})" + (f" — {where}." if where else ".")


def gpu_check_section(results_dir: str | Path):
    """The GPU check's table, or None when there is none (then `gpu_check_markdown` says so)."""
    data = read_gpu_check(results_dir)
    table = gpu_check_table(data) if data is not None else pd.DataFrame()
    return table if len(table) else None
