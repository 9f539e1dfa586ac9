"""Record-level evaluation: window logits become record probabilities through the library's one inference function
(`modeling_ecgmamba.inference_ecgmamba.record_scores`, with the model's own `problem_type`, `window_aggregation` and
`thresholds`), then the `ecg_multilabel` metric module scores them."""

from pathlib import Path

import evaluate
import numpy as np

from modeling_ecgmamba.inference_ecgmamba import record_scores

REPO_ROOT = Path(__file__).resolve().parents[1]
METRIC_PATH = REPO_ROOT / "metrics" / "ecg_multilabel"
# Metrics logged at every evaluation; per-class AUCs are added as `auc_<class>`.
SCALAR_METRICS = ("macro_auc", "macro_f1", "sample_f1", "accuracy", "fmax")


class TrainingDivergedError(RuntimeError):
    """The model's outputs became NaN: the optimisation diverged, and no metric or checkpoint of it means anything."""


def load_metric():
    """The offline `ecg_multilabel` metric module (scikit-learn inside; `evaluate.load` of a local folder)."""
    return evaluate.load(str(METRIC_PATH), keep_in_memory=True)


def record_predictions(window_logits, window_labels, record_index, config):
    """Window logits and labels -> (`RecordScores` per record, labels per record), records in `record_index` order.

    The probabilities and decisions are exactly what `ECGPredictor`, the pipeline and the explanations give for the
    same windows: the same function computes them, from the same config.
    """
    window_labels = np.asarray(window_labels)
    if len(window_logits) != len(record_index):
        raise ValueError(
            f"{len(window_logits)} predictions for {len(record_index)} windows: the evaluation set changed."
        )
    try:
        scores = record_scores(window_logits, config, record_index)
    except FloatingPointError as err:
        raise TrainingDivergedError(
            f"{err}: training diverged (look for a NaN loss or grad_norm in the log). Lower --learning_rate, "
            "lengthen --warmup_steps, or keep --max_grad_norm and the LayerNorms on."
        ) from None
    _, first = np.unique(record_index, return_index=True)  # the same (sorted) record order as the scores
    return scores, window_labels[first]


def scalar_metrics(results: dict, class_names) -> dict:
    """The loggable part of the metric module's results: headline scalars plus `auc_<class>`."""
    flat = {name: results[name] for name in SCALAR_METRICS}
    for name in ("challenge_score", "macro_auc_ci_low", "macro_auc_ci_high"):
        if name in results:
            flat[name] = results[name]
    for name, auc in zip(class_names, results["per_class_auc"]):
        flat[f"auc_{name}"] = float("nan") if auc is None else auc
    return flat


class RecordMetrics:
    """`compute_metrics` for the Trainer's evaluations of the validation split: aggregates windows per record as the
    model's config says and scores with the `ecg_multilabel` metric, F1 at thresholds chosen on that same split (so
    optimistic; the test split is scored after training with the validation thresholds). `options` go to the metric
    (the Challenge metric's weights for cinc2021: `ecgmamba_training.data.metric_options`)."""

    def __init__(self, metric, record_index, config, options=None):
        self.metric = metric
        self.record_index = record_index
        self.config = config
        self.options = options or {}

    def __call__(self, eval_prediction) -> dict:
        scores, labels = record_predictions(
            eval_prediction.predictions, eval_prediction.label_ids, self.record_index, self.config
        )
        class_names = [str(self.config.id2label[i]) for i in range(self.config.num_labels)]
        results = self.metric.compute(
            predictions=scores.probabilities,
            references=labels,
            find_thresholds=True,
            class_names=class_names,
            **self.options,
        )
        return scalar_metrics(results, class_names)


def final_evaluation(trainer, metric, windows, class_names, bootstrap_samples: int, options=None) -> dict:
    """Per record: thresholds chosen on validation (into config.thresholds), then the test split once, with a
    bootstrap interval. Writes validation_results.json, test_results.json and test_probabilities.npz."""
    trainer.compute_metrics = None  # the Trainer's metrics are per window; these are per record
    results = {}
    for split, (dataset, record_index) in windows.items():
        output = trainer.predict(dataset.with_format("numpy"), metric_key_prefix=split)
        scores, labels = record_predictions(output.predictions, output.label_ids, record_index, trainer.model.config)
        probabilities = scores.probabilities
        if split == "validation":
            split_options = {"find_thresholds": True}
        elif trainer.is_world_process_zero():
            split_options = {"thresholds": trainer.model.config.thresholds, "bootstrap_samples": bootstrap_samples}
        else:
            continue
        results[split] = metric.compute(
            predictions=probabilities,
            references=labels,
            class_names=class_names,
            seed=trainer.args.seed,
            **split_options,
            **(options or {}),
        )
        results[split].update(positives=labels.sum(0).astype(int).tolist(), loss=output.metrics[f"{split}_loss"])
        if split == "test" and trainer.args.should_save:
            # Per-record probabilities: to compare models on the same records, or re-score with other thresholds.
            np.savez(
                Path(trainer.args.output_dir) / "test_probabilities.npz",
                probabilities=probabilities,
                decisions=scores.decisions,  # at the validation thresholds, as the saved checkpoint decides
                labels=labels,
                class_names=np.array(class_names),
            )
        if split == "validation":
            trainer.model.config.thresholds = results[split]["thresholds"]
        trainer.save_metrics(split, {f"{split}_{k}": v for k, v in results[split].items()}, combined=False)
    return results
