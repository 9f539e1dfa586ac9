"""Tests of the `ecg_multilabel` metric module (metrics/ecg_multilabel), loaded offline through `evaluate`."""

import numpy as np
import pytest
from conftest import import_metric_module
from sklearn.metrics import f1_score, roc_auc_score

from ecgmamba_training.evaluation import load_metric

ecg_multilabel = import_metric_module()


@pytest.fixture(scope="module")
def metric():
    return load_metric()


def synthetic(records=200, classes=4, seed=0, rate=0.3):
    """Labels and informative, tie-rich probabilities (rounded to 2 decimals)."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((records, classes)) < rate).astype(np.int64)
    labels[labels.sum(1) == 0, 0] = 1  # every record has a label, as in PTB-XL
    scores = np.round(np.clip(0.35 * labels + 0.65 * rng.random((records, classes)), 0, 1), 2)
    return scores, labels


def test_loads_offline_from_its_folder_and_matches_scikit_learn(metric):
    scores, labels = synthetic()
    results = metric.compute(predictions=scores, references=labels)
    expected_auc = roc_auc_score(labels, scores, average=None)
    np.testing.assert_allclose(results["per_class_auc"], expected_auc, rtol=1e-6)
    assert results["macro_auc"] == pytest.approx(expected_auc.mean(), rel=1e-6)
    predicted = (scores >= 0.5).astype(int)
    assert results["thresholds"] == [0.5] * 4
    assert results["macro_f1"] == pytest.approx(f1_score(labels, predicted, average="macro", zero_division=0))
    assert results["sample_f1"] == pytest.approx(f1_score(labels, predicted, average="samples", zero_division=0))
    assert results["accuracy"] == pytest.approx((predicted == labels).all(1).mean())
    assert results["num_records"] == 200
    assert "macro_auc_ci_low" not in results


def test_docstring_example(metric):
    results = metric.compute(predictions=[[0.9, 0.2], [0.1, 0.5], [0.8, 0.6]], references=[[1, 0], [0, 1], [1, 0]])
    assert results["macro_auc"] == 0.75
    assert results["per_class_auc"] == [1.0, 0.5]


def test_found_thresholds_maximise_each_class_f1_and_apply_to_other_data(metric):
    scores, labels = synthetic(seed=1)
    results = metric.compute(predictions=scores, references=labels, find_thresholds=True)
    for c, threshold in enumerate(results["thresholds"]):
        best = max(f1_score(labels[:, c], scores[:, c] >= t, zero_division=0) for t in np.unique(scores[:, c]))
        assert f1_score(labels[:, c], scores[:, c] >= threshold) == pytest.approx(best)
        assert results["per_class_f1"][c] == pytest.approx(best)

    # Applied unchanged to another split (the test split after choosing on validation).
    test_scores, test_labels = synthetic(seed=2)
    test = metric.compute(predictions=test_scores, references=test_labels, thresholds=results["thresholds"])
    predicted = (test_scores >= np.asarray(results["thresholds"])).astype(int)
    assert test["thresholds"] == results["thresholds"]
    assert test["macro_f1"] == pytest.approx(f1_score(test_labels, predicted, average="macro", zero_division=0))
    assert test["accuracy"] == pytest.approx((predicted == test_labels).all(1).mean())
    assert metric.compute(predictions=test_scores, references=test_labels, thresholds=0.3)["thresholds"] == [0.3] * 4


def test_fmax_by_hand():
    scores = np.array([[0.9, 0.6, 0.1], [0.2, 0.8, 0.5]])
    labels = np.array([[1, 0, 0], [0, 1, 1]])
    # t in (0.2, 0.5]: predicted {0, 1} and {1, 2}: precision (1/2 + 1) / 2 = 0.75, recall 1 -> F = 6/7;
    # t in (0.6, 0.8]: {0} and {1}: precision 1, recall (1 + 1/2) / 2 = 0.75 -> 6/7 again; no threshold does better.
    assert ecg_multilabel.fmax_score(scores, labels) == pytest.approx(6 / 7)
    assert ecg_multilabel.fmax_score(labels.astype(float), labels) == pytest.approx(1.0)


def test_rank_auc_equals_scikit_learn_with_ties():
    scores, labels = synthetic(records=300, classes=6, seed=3)
    np.testing.assert_allclose(ecg_multilabel.rank_auc(scores, labels), roc_auc_score(labels, scores, average=None))


def test_bootstrap_interval_is_seeded_and_brackets_the_estimate(metric):
    scores, labels = synthetic(seed=4)
    kwargs = dict(predictions=scores, references=labels, bootstrap_samples=300, seed=7)
    first, second = metric.compute(**kwargs), metric.compute(**kwargs)
    assert (first["macro_auc_ci_low"], first["macro_auc_ci_high"]) == (
        second["macro_auc_ci_low"],
        second["macro_auc_ci_high"],
    )
    assert first["macro_auc_ci_low"] < first["macro_auc"] < first["macro_auc_ci_high"]
    assert first["macro_auc_ci_high"] - first["macro_auc_ci_low"] < 0.2
    assert first["bootstrap_samples"] == 300 and first["confidence_level"] == 0.95
    narrower = metric.compute(**kwargs, confidence_level=0.5)
    assert (
        first["macro_auc_ci_low"]
        < narrower["macro_auc_ci_low"]
        < narrower["macro_auc_ci_high"]
        < first["macro_auc_ci_high"]
    )


def test_a_class_without_positives_is_left_out_of_the_macro_averages(metric):
    scores, labels = synthetic(classes=3, seed=5)
    labels[:, 2] = 0
    results = metric.compute(
        predictions=scores, references=labels, class_names=["NORM", "MI", "HYP"], bootstrap_samples=50
    )
    assert results["per_class_auc"][2] is None
    assert results["macro_auc"] == pytest.approx(np.mean(results["per_class_auc"][:2]))
    assert results["macro_f1"] == pytest.approx(np.mean(results["per_class_f1"][:2]))
    assert results["class_names"] == ["NORM", "MI", "HYP"]
    assert np.isfinite([results["macro_auc_ci_low"], results["macro_auc_ci_high"]]).all()


@pytest.mark.parametrize(
    "predictions, references, message",
    [
        ([[2.3, -1.0]], [[1, 0]], "probabilities in \\[0, 1\\]"),
        ([[0.2, 0.3]], [[1, 0, 0]], "both be \\(records, classes\\)"),
        ([[0.2, 0.3]], [[1, 0.5]], "multi-hot"),
    ],
)
def test_bad_inputs_say_what_is_wrong(predictions, references, message):
    with pytest.raises(ValueError, match=message):
        ecg_multilabel.multilabel_metrics(predictions, references)
    with pytest.raises(ValueError, match="3 thresholds for 2 classes"):
        ecg_multilabel.multilabel_metrics([[0.2, 0.3]], [[1, 0]], thresholds=[0.5, 0.5, 0.5])
