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


# ------------------------------------------------------------------------------------------------ Challenge metric

# Three classes: A and B related (half credit), N the normal (inactive) class.
WEIGHTS = [[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]]


def official_definition(labels, outputs, weights, normal):
    """The Challenge metric as its evaluation code defines it, record by record and pair by pair."""
    labels, outputs, weights = np.asarray(labels, bool), np.asarray(outputs, bool), np.asarray(weights)

    def score(predicted):
        total = 0.0
        for truth, guess in zip(labels, predicted):
            shared = max(int((truth | guess).sum()), 1)
            total += sum(weights[j, k] / shared for j in np.flatnonzero(truth) for k in np.flatnonzero(guess))
        return total

    inactive = np.zeros_like(labels)
    inactive[:, normal] = True
    observed, correct, baseline = score(outputs), score(labels), score(inactive)
    return (observed - baseline) / (correct - baseline) if correct != baseline else 0.0


def test_challenge_score_by_hand():
    labels = [[1, 0, 0], [0, 0, 1], [1, 1, 0]]
    outputs = [[0, 1, 0], [0, 0, 1], [1, 0, 0]]
    # observed: 0.5 * 0.5 (A read as B, two classes involved) + 1 (N) + (1 + 0.5) / 2 (A, B read as A) = 2.0
    # correct: 1 + 1 + (1 + 0.5 + 0.5 + 1) / 2 = 3.5; inactive (N everywhere): 0 + 1 + 0 = 1 -> (2 - 1) / 2.5
    assert ecg_multilabel.challenge_score(labels, outputs, WEIGHTS, 2) == pytest.approx(0.4)
    assert ecg_multilabel.challenge_score(labels, labels, WEIGHTS, 2) == pytest.approx(1.0)
    assert ecg_multilabel.challenge_score(labels, [[0, 0, 1]] * 3, WEIGHTS, 2) == pytest.approx(0.0)
    # Worse than the inactive baseline is negative; a record with no true class earns and costs nothing.
    assert ecg_multilabel.challenge_score(labels, [[0, 0, 0]] * 3, WEIGHTS, 2) == pytest.approx(-1 / 2.5)
    extra = ecg_multilabel.challenge_score([*labels, [0, 0, 0]], [*outputs, [1, 1, 1]], WEIGHTS, 2)
    assert extra == pytest.approx(0.4)
    # Only normal records: the two baselines agree and the score is 0 by definition.
    assert ecg_multilabel.challenge_score([[0, 0, 1]] * 2, [[1, 0, 0]] * 2, WEIGHTS, 2) == 0.0


def test_challenge_score_matches_the_official_definition_with_the_challenge_weights():
    from dataset_scripts.cinc2021 import CLASSES, challenge_weights

    weights = challenge_weights()
    normal = CLASSES.index("NSR")
    rng = np.random.default_rng(0)
    labels = rng.random((300, 26)) < 0.08
    outputs = labels ^ (rng.random((300, 26)) < 0.05)  # mostly right, with misses and false alarms
    expected = official_definition(labels, outputs, weights, normal)
    assert ecg_multilabel.challenge_score(labels, outputs, weights, normal) == pytest.approx(expected, abs=1e-12)
    assert 0 < expected < 1
    # Partial credit: AF read as atrial flutter earns the table's 0.5 where an unrelated class earns less.
    af, afl, pvc = CLASSES.index("AF"), CLASSES.index("AFL"), CLASSES.index("PVC|VPB")
    truth = np.zeros((1, 26), bool)
    truth[0, af] = True
    near, far = truth.copy(), truth.copy()
    near[0, [af, afl]] = False, True
    far[0, [af, pvc]] = False, True
    assert ecg_multilabel.challenge_score(truth, near, weights, normal) > ecg_multilabel.challenge_score(
        truth, far, weights, normal
    )


def test_challenge_score_through_the_metric_module(metric):
    scores, labels = synthetic(classes=3, seed=6)
    names = ["A", "B", "N"]
    results = metric.compute(
        predictions=scores, references=labels, class_names=names, challenge_weights=WEIGHTS, normal_class="N"
    )
    predicted = scores >= 0.5
    assert results["challenge_score"] == pytest.approx(official_definition(labels, predicted, WEIGHTS, 2))
    assert "challenge_score" not in metric.compute(predictions=scores, references=labels)
    with pytest.raises(ValueError, match="finite 3 x 3 matrix"):
        ecg_multilabel.multilabel_metrics(scores, labels, challenge_weights=[[1.0]], normal_class=0)
    with pytest.raises(ValueError, match="needs normal_class"):
        ecg_multilabel.multilabel_metrics(scores, labels, challenge_weights=WEIGHTS)
    with pytest.raises(ValueError, match="'X' is not among class_names"):
        ecg_multilabel.multilabel_metrics(
            scores, labels, class_names=names, challenge_weights=WEIGHTS, normal_class="X"
        )
