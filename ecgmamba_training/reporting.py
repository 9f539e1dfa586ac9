"""What a run reports: the settings printed at the start, the training curves, the model card (from the repository's
`model_card.md`), the hyperparameter table and the summary printed at the end."""

import math
import os
from pathlib import Path

import numpy as np
import torch

from .data import SOURCES
from .evaluation import scalar_metrics

MODEL_CARD_TEMPLATE = Path(__file__).resolve().parents[1] / "model_card.md"
CURVES_FILE = "training_curves.png"


def plot_training_curves(
    log_history: list[dict], path, metric: str = "eval_macro_auc", kept_step: int | None = None
) -> Path:
    """Training and validation loss against steps, and the validation metric, as one PNG; a dashed line marks the
    step whose weights the run kept."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h]
    evals = [(h["step"], h["eval_loss"], h.get(metric, np.nan)) for h in log_history if "eval_loss" in h]
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    if train:
        loss_ax.plot(*zip(*train), label="training loss")
    if evals:
        steps, losses, values = zip(*evals)
        loss_ax.plot(steps, losses, "o-", label="validation loss")
        metric_ax.plot(steps, values, "o-", color="tab:green")
    if kept_step is not None:
        for ax in (loss_ax, metric_ax):
            ax.axvline(kept_step, color="tab:red", linestyle="--", linewidth=1, label=f"kept (step {kept_step})")
        metric_ax.legend()
    loss_ax.set(xlabel="step", ylabel="BCE loss", title="Loss")
    if loss_ax.get_legend_handles_labels()[0]:  # nothing logged (a run too short to log): no empty legend
        loss_ax.legend()
    metric_ax.set(xlabel="step", ylabel=metric.removeprefix("eval_"), title="Validation (per record)")
    for ax in (loss_ax, metric_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def kept_checkpoint(state, training_args) -> dict:
    """Which weights the run kept (its final model): the best evaluation's with `load_best_model_at_end`, else the
    last step's. `text` says so for the model card."""
    evaluations = [entry for entry in state.log_history if "eval_loss" in entry]
    if training_args.load_best_model_at_end and state.best_global_step:
        metric = training_args.metric_for_best_model.removeprefix("eval_")
        step = state.best_global_step
        epoch = next((entry["epoch"] for entry in evaluations if entry["step"] == step), None)
        where = f"step {step}" + (f" (epoch {epoch:.3g})" if epoch is not None else "")
        text = (
            f"{where} of {state.global_step}, the best validation {metric} ({state.best_metric:.4f}) of "
            f"{len(evaluations)} evaluations"
        )
        return {"step": step, "epoch": epoch, "metric": metric, "value": state.best_metric, "text": text}
    text = f"the last step, {state.global_step} (epoch {state.epoch:.3g}); no best checkpoint was selected"
    return {"step": state.global_step, "epoch": state.epoch, "metric": None, "value": None, "text": text}


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def results_tables(test: dict, validation: dict | None) -> tuple[str, str]:
    """Markdown: the headline metrics (test with its interval, validation beside it) and the per-class table."""
    ci = f" ({_fmt(test['macro_auc_ci_low'])}-{_fmt(test['macro_auc_ci_high'])})" if "macro_auc_ci_low" in test else ""
    rows = [
        ("Macro ROC-AUC", f"**{_fmt(test['macro_auc'])}**{ci}", "macro_auc"),
        ("Macro F1", _fmt(test["macro_f1"]), "macro_f1"),
        ("Sample F1", _fmt(test["sample_f1"]), "sample_f1"),
        ("Accuracy (exact match)", _fmt(test["accuracy"]), "accuracy"),
        ("Fmax", _fmt(test["fmax"]), "fmax"),
    ]
    if "challenge_score" in test:
        rows.append(("PhysioNet/CinC 2021 Challenge metric", _fmt(test["challenge_score"]), "challenge_score"))
    header = "| Metric | Test (95% CI) | Validation |\n|---|---|---|\n"
    summary = header + "\n".join(
        f"| {name} | {value} | {_fmt(validation[key]) if validation else 'n/a'} |" for name, value, key in rows
    )
    per_class = "| Class | Test AUC | Test F1 | Threshold | Test positives |\n|---|---|---|---|---|\n" + "\n".join(
        f"| {name} | {_fmt(auc)} | {_fmt(f1)} | {_fmt(threshold)} | {positives} |"
        for name, auc, f1, threshold, positives in zip(
            test["class_names"], test["per_class_auc"], test["per_class_f1"], test["thresholds"], test["positives"]
        )
    )
    return summary, per_class


def write_model_card(
    output_dir, *, model_name: str, dataset: str, task: str, context: dict, test=None, validation=None
):
    """Render `model_card.md` into `output_dir/README.md`: YAML metadata (with a `model-index` of the test results
    once they exist) and the sections of the template."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    source = SOURCES[dataset]
    eval_results = None
    if test is not None:
        common = dict(
            task_type="time-series-classification",
            task_name="Multi-label ECG classification" + (f" ({task})" if dataset == "ptbxl" else ""),
            dataset_type=source.folder,
            dataset_name=source.name,
            dataset_config=task,
            dataset_split="test",
        )
        names = {
            "macro_auc": "Macro ROC-AUC",
            "macro_f1": "Macro F1",
            "sample_f1": "Sample F1",
            "accuracy": "Accuracy (exact match)",
            "fmax": "Fmax",
        }
        types = {"macro_auc": "roc_auc", "macro_f1": "f1", "sample_f1": "f1", "accuracy": "accuracy", "fmax": "fmax"}
        if "challenge_score" in test:
            names["challenge_score"] = "PhysioNet/CinC 2021 Challenge metric"
            types["challenge_score"] = "challenge_score"
        eval_results = [
            EvalResult(metric_type=types[key], metric_name=name, metric_value=round(float(test[key]), 4), **common)
            for key, name in names.items()
        ]
    card_data = ModelCardData(
        model_name=model_name,
        license="apache-2.0",
        library_name="transformers",
        tags=["ecg", "electrocardiography", "mamba", "state-space-model", "time-series", "medical", source.folder],
        datasets=[source.folder],
        metrics=["roc_auc", "f1", "accuracy"],
        eval_results=eval_results,
        base_model=context.get("base_model"),
    )
    summary_table = per_class_table = None
    if test is not None:
        summary_table, per_class_table = results_tables(test, validation)
    card = ModelCard.from_template(
        card_data,
        template_path=str(MODEL_CARD_TEMPLATE),
        model_name=model_name,
        dataset_name=source.name,
        dataset_url=source.url,
        dataset_license=source.license,
        dataset_key=dataset,
        task=task,
        summary_table=summary_table,
        per_class_table=per_class_table,
        test=test,
        **context,
    )
    path = Path(output_dir) / "README.md"
    card.save(path)
    return path


def hyperparameter_table(training_args, data_args, world_size: int) -> str:
    schedule = training_args.lr_scheduler_type
    rows = {
        "optimizer": f"AdamW (betas {training_args.adam_beta1}, {training_args.adam_beta2}), weight decay "
        f"{training_args.weight_decay} (none on A_log, D, biases, norms)",
        "learning rate": f"{training_args.learning_rate:g}, {getattr(schedule, 'value', schedule)} after "
        f"{training_args.warmup_steps:g} warmup",
        "epochs": f"{training_args.num_train_epochs:g}"
        + (f" (max_steps {training_args.max_steps})" if training_args.max_steps > 0 else ""),
        "batch size": f"{training_args.per_device_train_batch_size} x {world_size} process(es) x "
        f"{training_args.gradient_accumulation_steps} accumulation",
        "precision": "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "fp32",
        "window": f"{data_args.window_seconds:g} s at {data_args.sampling_rate} Hz, "
        f"{'standardised leads' if data_args.normalize else 'raw mV'}",
        "seed": training_args.seed,
    }
    return "| Hyperparameter | Value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows.items())


def device_text(device) -> str:
    """The device, and on a CPU the threads it computes on: `accelerate launch` sets OMP_NUM_THREADS=1 unless told
    otherwise, which halves a 2-core machine's speed without a word."""
    if getattr(device, "type", str(device)) != "cpu":
        return str(device)
    threads = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    text = f"cpu, {threads} of {cores} core(s)"
    if threads < cores and os.environ.get("OMP_NUM_THREADS"):
        text += (
            f" (OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; `accelerate launch` sets 1 on a CPU unless given "
            "--num_cpu_threads_per_process N)"
        )
    return text


def print_run_settings(trainer, data_args, task, split_sizes, window, stride, num_parameters, checkpoint):
    """What this run will do and where its results go, printed before training starts."""
    args, model = trainer.args, trainer.model
    per_step = args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps
    batches = math.ceil(math.ceil(split_sizes["train"] / args.world_size) / args.per_device_train_batch_size)
    steps_per_epoch = max(batches // args.gradient_accumulation_steps, 1)
    length = (
        f"{args.max_steps} steps"
        if args.max_steps > 0
        else f"{args.num_train_epochs:g} epochs of {steps_per_epoch} steps"
    )
    evaluation = getattr(args.eval_strategy, "value", args.eval_strategy)
    saving = getattr(args.save_strategy, "value", args.save_strategy)
    kept = f"the best validation {args.metric_for_best_model}" if args.load_best_model_at_end else "the last step"
    dataset = SOURCES[data_args.dataset].name + (f" {task}" if data_args.dataset == "ptbxl" else "")
    rate = data_args.sampling_rate
    lines = [
        f"{type(model).__name__} ({num_parameters:,} parameters) on {dataset}: {split_sizes['train']} train / "
        f"{split_sizes['validation']} validation / {split_sizes['test']} test records",
        f"  training   {length}, batch {per_step} ({args.per_device_train_batch_size} per process x "
        f"{args.world_size} process(es) x {args.gradient_accumulation_steps} accumulation), learning rate {args.learning_rate:g}, "
        f"seed {args.seed}, on {device_text(args.device)}",
        f"  windows    {window / rate:g} s at {rate} Hz: random crops for training; evaluation every {stride / rate:g} s, "
        f"{data_args.window_aggregation} per record",
        f"  evaluation {evaluation}{f' (every {args.eval_steps:g} steps)' if evaluation == 'steps' else ''}; "
        f"checkpoints {saving}{f' (every {args.save_steps:g} steps)' if saving == 'steps' else ''}; kept: {kept}",
        f"  start      {f'resuming from {checkpoint}' if checkpoint else 'from scratch'}",
        f"  results in {args.output_dir}",
    ]
    print("\n".join(lines), flush=True)


def print_summary(model, results, class_names, output_dir, seconds, split_sizes, task, data_args):
    test, validation = results["test"], results["validation"]
    flat = scalar_metrics(test, class_names)
    lines = [
        "",
        f"{type(model).__name__} on {SOURCES[data_args.dataset].name}{f' {task}' if data_args.dataset == 'ptbxl' else ''} "
        f"({data_args.sampling_rate} Hz, "
        f"{data_args.window_seconds:g} s windows): {split_sizes['train']} train / {split_sizes['validation']} "
        f"validation / {split_sizes['test']} test records, {seconds / 60:.1f} min",
        f"Test, per record, thresholds from validation ({test['num_records']} records):",
        f"  macro ROC-AUC  {test['macro_auc']:.3f}"
        + (
            f"  (95% CI {test['macro_auc_ci_low']:.3f}-{test['macro_auc_ci_high']:.3f}, "
            f"{test['bootstrap_samples']} bootstrap resamples)"
            if "macro_auc_ci_low" in test
            else ""
        ),
        *(
            f"  {name:<14} {flat[name]:.3f}   (validation {validation[name]:.3f})"
            for name in ("macro_f1", "sample_f1", "accuracy", "fmax", "challenge_score")
            if name in flat
        ),
        "  per-class AUC  " + ", ".join(f"{n} {flat['auc_' + n]:.3f}" for n in class_names),
        f"Saved in {output_dir}: {', '.join(sorted(p.name for p in output_dir.iterdir() if p.is_file()))}",
        f'Load: AutoModelForSequenceClassification.from_pretrained("{output_dir}", trust_remote_code=True)',
    ]
    print("\n".join(lines), flush=True)
