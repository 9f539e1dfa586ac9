"""Accuracy of ECGMamba against the Transformer and xresnet1d101 on PTB-XL, trained the same way, plus ablations.

    python -m benchmarks.accuracy --data_dir ../shared/data/ptb-xl --output_dir outputs/accuracy
    python -m benchmarks.accuracy --quick ...        # smoke run: tiny models, one epoch, a handful of records

Protocol (one `train_hf.py` run per model, learning rate and seed, so every difference is the model):
1. Learning-rate search: each model trains with every `--learning_rates` value and the first seed on folds 1-8; the
   value with the best validation (fold 9) macro ROC-AUC per record wins. The test split is not looked at.
2. Seeds: each model trains with its chosen rate and every `--seeds` value. Reported: test (fold 10) macro ROC-AUC
   per record with its 95% bootstrap interval for each seed, the mean and standard deviation over seeds, and the
   training time (the Trainer's train_runtime: epochs with their validation passes, no data preparation).
3. Ablations (`--ablations`): ECGMamba with one switch changed at a time (no encoder, no FFN, no LayerNorm,
   unidirectional, and other depths), same rate as the chosen ECGMamba, `--ablation_seeds`.

Every model gets the same budget: epochs, batch, window length (random crops for training, sliding windows with
probabilities averaged per record for evaluation), AdamW with a cosine schedule, best epoch by validation macro AUC.
ECGMamba and the Transformer share `--hidden_size`, `--num_hidden_layers` and `--ffn_size`; xresnet1d101 keeps the
PTB-XL benchmark's configuration. Finished runs are kept in `--output_dir/runs/` and reused when the script runs
again with the same settings (each run's arguments are stored beside its results), so an interrupted benchmark
resumes where it stopped. Arguments after `--` go to every `train_hf.py` run (for example `-- --bf16` on a GPU).

With the 400-record sample (53 test records) the intervals are wide: the point is a fair, reproducible comparison;
the same command with `--data_dir` pointing at the full PTB-XL, on a GPU, is the real benchmark.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from ecgmamba_training.data import has_data, resolve_data_dir  # the same data folder rules as train_hf.py
from ecgmamba_training.evaluation import TrainingDivergedError

REPO_ROOT = Path(__file__).resolve().parents[1]
# How a diverged run's traceback names its error in the run's log.
_DIVERGED = f"{TrainingDivergedError.__module__}.{TrainingDivergedError.__name__}"

MODELS = ("ecgmamba", "transformer", "xresnet1d101")
# name -> train_hf.py options; each changes one thing of the budget's ECGMamba (the paper's ablations).
ABLATIONS = {
    "no encoder": ["--use_encoder", "false"],
    "no FFN": ["--use_ffn", "false"],
    "no LayerNorm": ["--use_layer_norm", "false"],
    "unidirectional": ["--bidirectional", "false"],
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data_dir", default=None, help="PTB-XL folder, or one holding ptb-xl/ (default $ECGMAMBA_DATA_DIR/ptb-xl)"
    )
    parser.add_argument("--output_dir", default="outputs/accuracy", help="runs, results.json and RESULTS-style tables")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    # Wide on purpose: the sequence models' best rates sat at the low end of a narrower grid, xresnet1d101's high.
    parser.add_argument("--learning_rates", nargs="+", type=float, default=[3e-5, 1e-4, 3e-4, 1e-3, 3e-3])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=float, default=20)
    parser.add_argument("--batch_size", type=int, default=32, help="global batch (per process x processes)")
    parser.add_argument("--window_seconds", type=float, default=2.5, help="training crop and evaluation window")
    parser.add_argument("--hidden_size", type=int, default=64, help="ECGMamba and Transformer width")
    parser.add_argument("--num_hidden_layers", type=int, default=4, help="ECGMamba and Transformer depth")
    parser.add_argument("--ffn_size", type=int, default=128, help="ECGMamba and Transformer feed-forward width")
    parser.add_argument("--task", default="superdiagnostic")
    parser.add_argument("--bootstrap_samples", type=int, default=1000)
    parser.add_argument("--ablations", action="store_true", help="also run the paper's ablations of ECGMamba")
    parser.add_argument(
        "--ablation_names", nargs="+", choices=sorted(ABLATIONS), default=sorted(ABLATIONS), help="switches to ablate"
    )
    parser.add_argument("--ablation_layers", nargs="*", type=int, default=[1, 8], help="depths for the ablation")
    parser.add_argument("--ablation_seeds", nargs="+", type=int, default=None, help="default: --seeds")
    parser.add_argument("--launcher", default=f"{shlex.quote(sys.executable)}", help="e.g. 'accelerate launch'")
    parser.add_argument("--markdown", default=None, help="also write the tables to this Markdown file")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny models, 1 epoch, few records")
    args, extra = parser.parse_known_args(argv)
    if extra and extra[0] == "--":
        extra = extra[1:]
    args.extra = extra
    if args.quick:
        args.learning_rates = args.learning_rates[:2]
        args.seeds = args.seeds[:1]
        args.epochs, args.batch_size, args.hidden_size, args.num_hidden_layers, args.ffn_size = 1, 8, 16, 1, 32
        args.bootstrap_samples = 50
        args.ablation_layers = args.ablation_layers[:1]
    args.data_dir = str(resolve_data_dir("ptbxl", args.data_dir))
    if not has_data("ptbxl", Path(args.data_dir)):
        parser.error(
            f"--data_dir {args.data_dir!r} is not a PTB-XL folder (no ptbxl_database.csv): pass the folder that "
            "holds ptbxl_database.csv, scp_statements.csv and records100/, or set ECGMAMBA_DATA_DIR."
        )
    return args


def run_arguments(args, model: str, learning_rate: float, seed: int, options: list[str]) -> list[str]:
    """The train_hf.py options of one run (output folders excluded: they do not change the result)."""
    options_by_name = {
        "model_type": model,
        "data_dir": Path(args.data_dir).resolve(),
        "task": args.task,
        "learning_rate": f"{learning_rate:g}",
        "seed": seed,
        "num_train_epochs": f"{args.epochs:g}",
        "per_device_train_batch_size": args.batch_size,
        "window_seconds": f"{args.window_seconds:g}",
        "bootstrap_samples": args.bootstrap_samples,
        "save_total_limit": 1,
        "logging_steps": 5,
        "report_to": "none",
        "disable_tqdm": "true",
    }
    arguments = [part for name, value in options_by_name.items() for part in (f"--{name}", str(value))]
    if model != "xresnet1d101":  # the CNN keeps the PTB-XL benchmark's configuration
        arguments += ["--hidden_size", str(args.hidden_size), "--num_hidden_layers", str(args.num_hidden_layers)]
        arguments += ["--ffn_size", str(args.ffn_size)]
    if args.quick:
        arguments += ["--max_train_samples", "24", "--max_eval_samples", "12"]
    return arguments + list(options) + list(args.extra)


def run_name(model: str, learning_rate: float, seed: int, tag: str = "") -> str:
    return f"{model}{'-' + tag if tag else ''}-lr{learning_rate:g}-seed{seed}".replace(" ", "_")


def count_parameters(folder: Path) -> int:
    """Trainable parameters from the saved weights (BatchNorm's running statistics are buffers, not counted)."""
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), framework="pt") as weights:
        return sum(
            math.prod(weights.get_slice(name).get_shape())
            for name in weights.keys()
            if not name.endswith(("running_mean", "running_var", "num_batches_tracked"))
        )


def train(args, model: str, learning_rate: float, seed: int, tag: str = "", options=()) -> dict:
    """One train_hf.py run, or the stored result of the same run."""
    arguments = run_arguments(args, model, learning_rate, seed, options)
    folder = Path(args.output_dir) / "runs" / run_name(model, learning_rate, seed, tag)
    summary_path = folder / "benchmark_run.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        if summary["arguments"] == arguments:
            outcome = "diverged" if summary.get("diverged") else f"validation {summary['validation_macro_auc']:.3f}"
            print(f"  reused {folder.name}: {outcome}", flush=True)
            return summary
    if folder.exists():
        shutil.rmtree(folder)  # an interrupted or differently configured run starts again
    command = [
        *shlex.split(args.launcher),
        str(REPO_ROOT / "train_hf.py"),
        *arguments,
        "--output_dir",
        str(folder),
        "--dataset_cache_dir",
        str(Path(args.output_dir) / "dataset_cache"),
    ]
    print(f"  training {folder.name} ...", flush=True)
    started = time.time()
    log_path = Path(args.output_dir) / "runs" / f"{folder.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        completed = subprocess.run(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    if completed.returncode != 0:
        lines = log_path.read_text(errors="replace").splitlines()
        diverged = [line for line in lines if line.startswith(_DIVERGED)]
        if not diverged:
            tail = "\n".join(lines[-30:])
            raise RuntimeError(f"{folder.name} failed (exit {completed.returncode}); end of {log_path}:\n{tail}")
        # A diverged run is a result (this learning rate or ablation does not train), not a broken benchmark.
        summary = {
            "model": model, "tag": tag, "learning_rate": learning_rate, "seed": seed, "arguments": arguments,
            "diverged": diverged[-1].split(": ", 1)[-1], "validation_macro_auc": float("-inf"),
        }  # fmt: skip
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"  diverged {folder.name} (see {log_path})", flush=True)
        return summary
    test = json.loads((folder / "test_results.json").read_text())
    validation = json.loads((folder / "validation_results.json").read_text())
    train_metrics = json.loads((folder / "train_results.json").read_text())
    summary = {
        "model": model,
        "tag": tag,
        "learning_rate": learning_rate,
        "seed": seed,
        "arguments": arguments,
        "validation_macro_auc": validation["validation_macro_auc"],
        "test_macro_auc": test["test_macro_auc"],
        "test_macro_auc_ci": [test["test_macro_auc_ci_low"], test["test_macro_auc_ci_high"]],
        "test_macro_f1": test["test_macro_f1"],
        "test_accuracy": test["test_accuracy"],
        "test_num_records": test["test_num_records"],
        "train_runtime_s": train_metrics["train_runtime"],
        "wall_s": time.time() - started,
        "parameters": count_parameters(folder),
    }
    for checkpoint in folder.glob("checkpoint-*"):  # the final folder holds the best epoch's weights
        shutil.rmtree(checkpoint)
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"  done {folder.name}: validation {summary['validation_macro_auc']:.3f}, {summary['train_runtime_s']:.0f} s",
        flush=True,
    )
    return summary


def choose_learning_rate(runs: list[dict]) -> float:
    """The rate with the best validation macro AUC (ties: the smaller rate, the safer choice)."""
    return max(runs, key=lambda run: (run["validation_macro_auc"], -run["learning_rate"]))["learning_rate"]


def summarise(all_runs: list[dict]) -> dict:
    """Mean and spread over the seeds that trained; diverged runs are counted, not averaged."""
    runs = [run for run in all_runs if not run.get("diverged")]
    if not runs:
        return {"seeds": [], "diverged_seeds": [run["seed"] for run in all_runs]}
    aucs = [run["test_macro_auc"] for run in runs]
    return {
        "seeds": [run["seed"] for run in runs],
        "test_macro_auc": aucs,
        "test_macro_auc_ci": [run["test_macro_auc_ci"] for run in runs],
        "mean_test_macro_auc": statistics.fmean(aucs),
        "std_test_macro_auc": statistics.stdev(aucs) if len(aucs) > 1 else 0.0,
        "mean_test_macro_f1": statistics.fmean(run["test_macro_f1"] for run in runs),
        "mean_test_accuracy": statistics.fmean(run["test_accuracy"] for run in runs),
        "mean_validation_macro_auc": statistics.fmean(run["validation_macro_auc"] for run in runs),
        "mean_train_runtime_s": statistics.fmean(run["train_runtime_s"] for run in runs),
        "parameters": runs[0]["parameters"],
        "test_num_records": runs[0]["test_num_records"],
        "diverged_seeds": [run["seed"] for run in all_runs if run.get("diverged")],
    }


def _seed_cells(summary: dict) -> str:
    cells = [
        f"{auc:.3f} ({low:.3f}-{high:.3f})"
        for auc, (low, high) in zip(summary.get("test_macro_auc", []), summary.get("test_macro_auc_ci", []))
    ]
    return "; ".join(cells + [f"seed {seed} diverged" for seed in summary.get("diverged_seeds", [])])


def _validation_cell(auc: float) -> str:
    return "diverged" if auc == float("-inf") else f"{auc:.3f}"


def tables(results: dict) -> str:
    lines = [
        "| Model | Parameters | LR (validation macro AUC per LR) | Test macro AUC, mean ± sd over seeds | Per seed (95% CI) "
        "| Test macro F1 | Test accuracy | Train time per run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, entry in results["models"].items():
        search = ", ".join(
            f"{lr:g}: {_validation_cell(auc)}" for lr, auc in entry["validation_by_learning_rate"].items()
        )
        summary = entry["summary"]
        if not summary["seeds"]:
            lines.append(f"| {model} | - | {search} | every seed diverged | | | | |")
            continue
        lines.append(
            f"| {model} | {summary['parameters']:,} | **{entry['learning_rate']:g}** ({search}) | "
            f"**{summary['mean_test_macro_auc']:.3f}** ± {summary['std_test_macro_auc']:.3f} | {_seed_cells(summary)} | "
            f"{summary['mean_test_macro_f1']:.3f} | {summary['mean_test_accuracy']:.3f} | "
            f"{summary['mean_train_runtime_s']:.0f} s |"
        )
    if results.get("ablations"):
        lines += [
            "",
            "| ECGMamba ablation | Parameters | Test macro AUC, mean ± sd | Per seed (95% CI) | Validation macro AUC | "
            "Train time per run |",
            "|---|---|---|---|---|---|",
        ]
        for name, summary in results["ablations"].items():
            if not summary["seeds"]:
                lines.append(f"| {name} | - | diverged (NaN) | {_seed_cells(summary)} | - | - |")
                continue
            lines.append(
                f"| {name} | {summary['parameters']:,} | **{summary['mean_test_macro_auc']:.3f}** ± "
                f"{summary['std_test_macro_auc']:.3f} | {_seed_cells(summary)} | "
                f"{summary['mean_validation_macro_auc']:.3f} | {summary['mean_train_runtime_s']:.0f} s |"
            )
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(
            shlex.quote(part) for part in ["python", "-m", "benchmarks.accuracy", *(argv or sys.argv[1:])]
        ),
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs, {platform.python_version()}",
        "budget": {
            key: getattr(args, key)
            for key in (
                "epochs",
                "batch_size",
                "window_seconds",
                "hidden_size",
                "num_hidden_layers",
                "ffn_size",
                "learning_rates",
                "seeds",
                "task",
                "bootstrap_samples",
            )
        },
        "models": {},
        "ablations": {},
    }
    first_seed = args.seeds[0]
    for model in args.models:
        print(f"{model}: learning-rate search on validation", flush=True)
        search = {lr: train(args, model, lr, first_seed) for lr in args.learning_rates}
        best = choose_learning_rate(list(search.values()))
        print(f"{model}: learning rate {best:g}; seeds {args.seeds}", flush=True)
        runs = [search[best] if seed == first_seed else train(args, model, best, seed) for seed in args.seeds]
        results["models"][model] = {
            "learning_rate": best,
            "validation_by_learning_rate": {lr: run["validation_macro_auc"] for lr, run in search.items()},
            "summary": summarise(runs),
            "runs": runs,
        }
    if args.ablations:
        if "ecgmamba" not in results["models"]:
            raise SystemExit("--ablations needs ecgmamba among --models (its learning rate is reused).")
        rate = results["models"]["ecgmamba"]["learning_rate"]
        seeds = args.ablation_seeds or args.seeds
        base_runs = [run for run in results["models"]["ecgmamba"]["runs"] if run["seed"] in seeds]
        variants = {name: ABLATIONS[name] for name in args.ablation_names}
        variants.update(
            {f"{n} layer{'s' if n != 1 else ''}": ["--num_hidden_layers", str(n)] for n in args.ablation_layers}
        )
        layers = args.num_hidden_layers
        base_name = f"full model ({layers} layer{'s' if layers != 1 else ''})"
        if len(base_runs) == len(seeds):
            results["ablations"][base_name] = summarise(base_runs)
        for name, options in variants.items():
            if options[:1] == ["--num_hidden_layers"] and int(options[1]) == args.num_hidden_layers:
                continue  # that is the full model
            print(f"ablation: {name}", flush=True)
            runs = [train(args, "ecgmamba", rate, seed, tag=name, options=options) for seed in seeds]
            results["ablations"][name] = summarise(runs)
    results["wall_s"] = time.time() - started
    (output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    text = tables(results)
    print()
    print(text)
    if args.markdown:
        header = (
            f"Accuracy benchmark, {results['date']}, {results['machine']}.\n\nCommand: `{results['command']}`\n\n"
            f"Budget: {json.dumps(results['budget'])}\n\n"
        )
        Path(args.markdown).write_text(header + text + "\n")
    return results


if __name__ == "__main__":
    main()
