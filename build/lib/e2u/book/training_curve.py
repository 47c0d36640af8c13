"""What a training baseline's chapter shows of its run, from the result file's `log`: the forget-vs-keep curve
(mean answer NLL of a few forget and retain items over the optimiser steps) and the per-step loss terms."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd


def is_training_run(result: dict) -> bool:
    return bool(result.get("log", {}).get("step_log"))


def curve_figure(result: dict):
    """Forget and retain NLL against the optimiser step (left); every loss term per step (right)."""
    log = result["log"]
    figure, (curve_ax, terms_ax) = plt.subplots(1, 2, figsize=(9, 3.2), constrained_layout=True)
    curve = pd.DataFrame(log.get("curve") or [])
    for column, label in (("forget_nll", "forget"), ("retain_nll", "retain")):
        if column in curve:
            curve_ax.plot(curve["step"], curve[column], marker="o", label=label)
    curve_ax.set(xlabel="optimiser step", ylabel="mean answer NLL (nats)", title="forget vs keep")
    curve_ax.legend(frameon=False)
    steps = pd.DataFrame(log["step_log"])
    for column in [c for c in steps.columns if c not in ("step", "lr")]:
        terms_ax.plot(steps["step"], steps[column], label=column)
    terms_ax.set(xlabel="optimiser step", ylabel="value", title="loss terms per step")
    terms_ax.legend(frameon=False, fontsize=8)
    plt.close(figure)
    return figure


def run_summary(result: dict) -> pd.DataFrame:
    """One row: steps, seconds, what trained, the reference model used, and why the run stopped early (if it did)."""
    log = result["log"]
    curve = log.get("curve") or [{}]
    row = {"steps": log["steps"], "seconds": log["seconds"], "adapter": log.get("adapter"),
           "trained parameters": log.get("trained_parameters"), "reference": log.get("reference") or "none",
           "forget NLL start → end": _span(curve, "forget_nll"), "retain NLL start → end": _span(curve, "retain_nll"),
           "stopped early": log.get("stopped", "no")}
    return pd.DataFrame([row]).T.rename(columns={0: "value"})


def _span(curve: list[dict], key: str) -> str:
    values = [point[key] for point in curve if key in point]
    return f"{values[0]:.2f} → {values[-1]:.2f}" if values else "not measured"
