"""Multi-label ECG classification metrics (macro ROC-AUC, per-class AUC, F1 with per-class thresholds, Fmax, and the
PhysioNet/CinC Challenge 2021 metric) as an `evaluate` module that works offline.

```python
import evaluate

metric = evaluate.load("./metrics/ecg_multilabel")  # the folder; its name equals this file's name
val = metric.compute(predictions=val_probs, references=val_labels, find_thresholds=True)
test = metric.compute(predictions=test_probs, references=test_labels, thresholds=val["thresholds"],
                      bootstrap_samples=1000)
test["macro_auc"], test["macro_auc_ci_low"], test["macro_auc_ci_high"]
```

Computed with scikit-learn; the functions below can also be imported and called directly.
"""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import f1_score, precision_recall_curve, roc_auc_score

_DESCRIPTION = """\
Metrics for multi-label classification of ECG records (e.g. PTB-XL, CPSC2018), following the PTB-XL benchmark
(Strodthoff et al. 2020):

- `macro_auc`: the mean of the per-class ROC-AUCs over the classes that have both positive and negative references
  (the headline metric); `per_class_auc` lists every class (None where undefined).
- `macro_f1`, `sample_f1`, `per_class_f1`, `accuracy` (exact match of the label set): predictions are
  `probability >= threshold` per class. Thresholds are 0.5 by default, given per class with `thresholds`, or chosen
  per class to maximise F1 with `find_thresholds=True` (do this on a validation split, then pass the returned
  `thresholds` when scoring the test split). `macro_f1` averages over the classes with at least one positive reference.
- `fmax`: the sample-centric maximum F1 over one global threshold (0.00, 0.01, ..., 1.00): precision averaged over
  records with at least one predicted class, recall over records with at least one true class.
- With `bootstrap_samples=N`: a percentile confidence interval of `macro_auc` from N resamples of the records
  (resamples where an evaluable class has only positives or only negatives are drawn again).
- With `challenge_weights` (and `normal_class`): `challenge_score`, the PhysioNet/CinC Challenge 2021 metric of the
  thresholded predictions (Reyna et al. 2021). Each record spreads one unit of credit over the pairs (true class j,
  predicted class k), divided by the number of classes that are true or predicted for it; a pair earns
  `challenge_weights[j][k]` (1 for the right class, partial credit for a related one, 0 for an unrelated one). The
  sum is normalised so that predicting the true classes scores 1 and predicting `normal_class` (sinus rhythm) for
  every record scores 0: `(observed - inactive) / (correct - inactive)`, 0 when the two baselines are equal. It can
  be negative. A record with no true class earns nothing, whatever is predicted for it.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions (`list[list[float]]`): probabilities in [0, 1], one row per record, one column per class
        (apply a sigmoid to logits first).
    references (`list[list[float]]`): multi-hot labels (0 or 1) of the same shape.
    thresholds (`float` or `list[float]`, *optional*): decision threshold(s); defaults to 0.5 for every class.
    find_thresholds (`bool`, *optional*, defaults to `False`): choose each class's threshold to maximise its F1
        on these data (ignores `thresholds`); the chosen ones are returned.
    class_names (`list[str]`, *optional*): names of the columns, returned as `class_names` for readability.
    bootstrap_samples (`int`, *optional*, defaults to 0): resamples for the macro-AUC confidence interval (0: none).
    confidence_level (`float`, *optional*, defaults to 0.95): level of that interval.
    seed (`int`, *optional*, defaults to 0): seed of the resampling.
    challenge_weights (`list[list[float]]`, *optional*): the Challenge's reward matrix for these classes, in their
        order (`dataset_scripts.cinc2021.challenge_weights(class_names)`); adds `challenge_score`.
    normal_class (`int` or `str`, *optional*): the inactive class of `challenge_score` (sinus rhythm), as a column
        index or a name of `class_names`; required with `challenge_weights`.
Returns:
    `macro_auc`, `per_class_auc`, `macro_f1`, `sample_f1`, `per_class_f1`, `accuracy`, `fmax`, `thresholds`,
    `num_records`; `macro_auc_ci_low`, `macro_auc_ci_high`, `bootstrap_samples`, `confidence_level` with bootstrap;
    `challenge_score` with `challenge_weights`; `class_names` when given.
Example:
    >>> metric = evaluate.load("./metrics/ecg_multilabel")
    >>> metric.compute(predictions=[[0.9, 0.2], [0.1, 0.5], [0.8, 0.6]], references=[[1, 0], [0, 1], [1, 0]])["macro_auc"]
    0.75
"""

_CITATION = """\
@article{strodthoff2021deep,
  title={Deep Learning for {ECG} Analysis: Benchmarks and Insights from {PTB-XL}},
  author={Strodthoff, Nils and Wagner, Patrick and Schaeffter, Tobias and Samek, Wojciech},
  journal={IEEE Journal of Biomedical and Health Informatics},
  volume={25}, number={5}, pages={1519--1528}, year={2021}
}
@inproceedings{reyna2021will,
  title={Will Two Do? Varying Dimensions in Electrocardiography: The {PhysioNet/Computing in Cardiology} Challenge 2021},
  author={Reyna, Matthew A. and others},
  booktitle={2021 Computing in Cardiology (CinC)}, volume={48}, year={2021}
}
"""

FMAX_THRESHOLDS = np.linspace(0.0, 1.0, 101)


def check_inputs(predictions, references) -> tuple[np.ndarray, np.ndarray]:
    """As float arrays of shape `(records, classes)`; a ValueError saying what is wrong otherwise."""
    scores = np.asarray(predictions, dtype=np.float64)
    labels = np.asarray(references, dtype=np.float64)
    if scores.ndim != 2 or scores.shape != labels.shape:
        raise ValueError(
            f"predictions and references must both be (records, classes), got {scores.shape} and {labels.shape}."
        )
    if len(scores) == 0:
        raise ValueError("No records to score.")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("references must be multi-hot (0 or 1).")
    if not np.isfinite(scores).all() or scores.min() < 0 or scores.max() > 1:
        raise ValueError("predictions must be probabilities in [0, 1]: apply a sigmoid to logits first.")
    return scores, labels.astype(np.int64)


def evaluable_classes(labels: np.ndarray) -> np.ndarray:
    """Indices of the classes with both positive and negative references (where ROC-AUC is defined)."""
    positives = labels.sum(0)
    return np.flatnonzero((positives > 0) & (positives < len(labels)))


def per_class_auc(scores: np.ndarray, labels: np.ndarray) -> list[float | None]:
    aucs: list[float | None] = [None] * labels.shape[1]
    for c in evaluable_classes(labels):
        aucs[c] = float(roc_auc_score(labels[:, c], scores[:, c]))
    return aucs


def best_f1_thresholds(scores: np.ndarray, labels: np.ndarray, default: float = 0.5) -> list[float]:
    """Per class, the threshold (`score >= t`) with the highest F1; `default` for classes without positives."""
    thresholds = []
    for c in range(labels.shape[1]):
        if labels[:, c].sum() == 0:
            thresholds.append(default)
            continue
        precision, recall, candidates = precision_recall_curve(labels[:, c], scores[:, c])
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        thresholds.append(float(candidates[int(np.argmax(f1))]))
    return thresholds


def fmax_score(scores: np.ndarray, labels: np.ndarray) -> float:
    """Sample-centric Fmax (as in CAFA and the PTB-XL benchmark), over the thresholds 0.00..1.00."""
    positive_records = labels.sum(1) > 0
    best = 0.0
    for t in FMAX_THRESHOLDS:
        predicted = scores >= t
        true_positives = (predicted & (labels == 1)).sum(1)
        has_prediction = predicted.any(1)
        if not has_prediction.any() or not positive_records.any():
            continue
        precision = (true_positives[has_prediction] / predicted[has_prediction].sum(1)).mean()
        recall = (true_positives[positive_records] / labels[positive_records].sum(1)).mean()
        if precision + recall > 0:
            best = max(best, 2 * precision * recall / (precision + recall))
    return float(best)


def rank_auc(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ROC-AUC per column by the Mann-Whitney rank statistic, over axis -2 of `(..., records, classes)` arrays.

    The same value as `sklearn.metrics.roc_auc_score` (ties count one half), vectorised so that the bootstrap can
    score many resamples at once. Columns without both labels give NaN.
    """
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=-2)
    positives = labels.sum(-2)
    negatives = labels.shape[-2] - positives
    rank_sum = (ranks * labels).sum(-2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def bootstrap_macro_auc(
    scores: np.ndarray, labels: np.ndarray, samples: int, confidence_level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of the macro AUC over `samples` resamples of the records."""
    classes = evaluable_classes(labels)
    if len(classes) == 0:
        return float("nan"), float("nan")
    scores, labels = scores[:, classes], labels[:, classes]
    rng = np.random.default_rng(seed)
    values, drawn = [], 0
    chunk = max(1, min(samples, 2_000_000 // labels.size))  # resamples scored together (memory bound)
    while len(values) < samples:
        if drawn > 100 * samples:
            raise ValueError("Too few positives or negatives to bootstrap the macro AUC: most resamples lack a class.")
        index = rng.integers(0, len(labels), (chunk, len(labels)))
        drawn += chunk
        resampled_labels = labels[index]  # (chunk, records, classes)
        positives = resampled_labels.sum(1)
        usable = ((positives > 0) & (positives < len(labels))).all(1)
        aucs = rank_auc(scores[index[usable]], resampled_labels[usable])
        values.extend(aucs.mean(1)[: samples - len(values)].tolist())
    alpha = (1 - confidence_level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)


def challenge_score(labels, outputs, weights, normal_class: int) -> float:
    """The PhysioNet/CinC Challenge 2021 metric of binary `outputs` against `labels` (both `(records, classes)`)
    with the reward matrix `weights` `(classes, classes)`, normalised by the inactive baseline (every record
    predicted `normal_class` only) and the perfect one: see the module description."""
    labels, outputs = np.asarray(labels, dtype=bool), np.asarray(outputs, dtype=bool)
    weights = np.asarray(weights, dtype=np.float64)

    def reward(predicted):
        # A[j, k]: credit moved from true class j to predicted class k, each record's unit shared by its classes.
        union = np.maximum((labels | predicted).sum(1), 1)
        credit = (labels / union[:, None]).T @ predicted
        return float((weights * credit).sum())

    inactive = np.zeros_like(labels)
    inactive[:, normal_class] = True
    observed, correct, baseline = reward(outputs), reward(labels), reward(inactive)
    return (observed - baseline) / (correct - baseline) if correct != baseline else 0.0


def _challenge_inputs(weights, normal_class, class_names, num_classes: int) -> tuple[np.ndarray, int]:
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (num_classes, num_classes) or not np.isfinite(weights).all():
        raise ValueError(
            f"challenge_weights must be a finite {num_classes} x {num_classes} matrix, got {weights.shape}."
        )
    if isinstance(normal_class, str):
        if class_names is None or normal_class not in class_names:
            raise ValueError(f"normal_class {normal_class!r} is not among class_names {class_names}.")
        normal_class = list(class_names).index(normal_class)
    if normal_class is None or not 0 <= int(normal_class) < num_classes:
        raise ValueError(
            f"challenge_weights needs normal_class, a column index in 0..{num_classes - 1} or a class name."
        )
    return weights, int(normal_class)


def multilabel_metrics(
    predictions,
    references,
    thresholds=None,
    find_thresholds: bool = False,
    class_names=None,
    bootstrap_samples: int = 0,
    confidence_level: float = 0.95,
    seed: int = 0,
    challenge_weights=None,
    normal_class=None,
) -> dict:
    """All the metrics of this module as a dict (see the module's description)."""
    scores, labels = check_inputs(predictions, references)
    num_classes = labels.shape[1]
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class_names for {num_classes} classes.")
    if challenge_weights is not None:
        challenge_weights, normal_class = _challenge_inputs(challenge_weights, normal_class, class_names, num_classes)
    if find_thresholds:
        thresholds = best_f1_thresholds(scores, labels)
    elif thresholds is None:
        thresholds = [0.5] * num_classes
    elif np.ndim(thresholds) == 0:
        thresholds = [float(thresholds)] * num_classes
    thresholds = [float(t) for t in thresholds]
    if len(thresholds) != num_classes:
        raise ValueError(f"{len(thresholds)} thresholds for {num_classes} classes.")

    predicted = (scores >= np.asarray(thresholds)).astype(np.int64)
    aucs = per_class_auc(scores, labels)
    defined = [auc for auc in aucs if auc is not None]
    f1s = f1_score(labels, predicted, average=None, zero_division=0.0)
    with_positives = labels.sum(0) > 0
    results = {
        "macro_auc": float(np.mean(defined)) if defined else float("nan"),
        "per_class_auc": aucs,
        "macro_f1": float(f1s[with_positives].mean()) if with_positives.any() else float("nan"),
        "sample_f1": float(f1_score(labels, predicted, average="samples", zero_division=0.0)),
        "per_class_f1": [float(f) for f in f1s],
        "accuracy": float((predicted == labels).all(1).mean()),
        "fmax": fmax_score(scores, labels),
        "thresholds": thresholds,
        "num_records": int(len(labels)),
    }
    if challenge_weights is not None:
        results["challenge_score"] = challenge_score(labels, predicted, challenge_weights, normal_class)
    if bootstrap_samples:
        low, high = bootstrap_macro_auc(scores, labels, int(bootstrap_samples), confidence_level, seed)
        results.update(
            macro_auc_ci_low=low,
            macro_auc_ci_high=high,
            bootstrap_samples=int(bootstrap_samples),
            confidence_level=float(confidence_level),
        )
    if class_names is not None:
        results["class_names"] = [str(name) for name in class_names]
    return results


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class EcgMultilabel(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("float64")),
                }
            ),
            reference_urls=[
                "https://scikit-learn.org/stable/modules/model_evaluation.html",
                "https://github.com/helme/ecg_ptbxl_benchmarking",
                "https://physionetchallenges.org/2021/",
            ],
        )

    def _compute(self, predictions, references, **options):
        # options: thresholds, find_thresholds, class_names, bootstrap_samples, confidence_level, seed,
        # challenge_weights, normal_class
        return multilabel_metrics(predictions, references, **options)
