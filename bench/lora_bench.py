"""LoRA finetuning of the embedded model on the default PISTOL graph, against full-weight finetuning.

Each variant trains a fresh SmolLM2-135M-Instruct on every edge of the `pistol` source's default graph (what
the finetuned setting's target model learns), then measures the greedy Rouge1/ROUGE-L recall of its
training answers. Prints seconds, recall and the ratio of seconds against the full-weight baseline.

    OMP_NUM_THREADS=1 python bench/lora_bench.py [--epochs N] [--lr X] [--layers N] [--skip-full]
"""

from __future__ import annotations

import argparse
import time

from e2u.data.sources import load_source
from e2u.evaluation import memorisation
from e2u.model.load import load_model
from e2u.training import finetune


def run(name: str, hp: dict, records, report_splits) -> dict:
    model, tokenizer = load_model("smollm2-135m-instruct")
    started = time.perf_counter()
    log = finetune.finetune(model, tokenizer, records, hp, desc=name)
    seconds = time.perf_counter() - started
    report = memorisation.memorisation_report(model, tokenizer, report_splits, size=40)
    recall = {split: values["rouge_l_recall"] for split, values in report.items()}
    print(f"{name:>12}: {seconds:6.1f} s, final loss {log['final_loss']:.3f}, trained parameters "
          f"{log['trained_parameters']:,}, ROUGE-L recall of training answers {recall}", flush=True)
    return {"seconds": seconds, "recall": recall}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=finetune.EMBEDDED_LORA_HPARAMS["epochs"])
    parser.add_argument("--lr", type=float, default=finetune.EMBEDDED_LORA_HPARAMS["lr"])
    parser.add_argument("--layers", type=int, default=finetune.EMBEDDED_LORA_HPARAMS["train_layers"])
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args()
    splits = load_source("pistol", None, {})
    records = splits["target_train"]
    report_splits = {"forget": splits["forget"], "retain": splits["retain"]}
    lora_hp = {**finetune.EMBEDDED_LORA_HPARAMS, "epochs": args.epochs, "lr": args.lr, "train_layers": args.layers}
    lora = run("lora", lora_hp, records, report_splits)
    if not args.skip_full:
        full = run("full weights", {"epochs": args.epochs}, records, report_splits)
        print(f"lora / full-weight seconds: {lora['seconds'] / full['seconds']:.2f}x")


if __name__ == "__main__":
    main()
