"""benchmarks/accuracy.py: the protocol's choices on stored results, and one real smoke run on the PTB-XL sample
(tiny models, one epoch) that trains through train_hf.py, resumes from its stored runs and writes the tables."""

import json

import pytest

from benchmarks import accuracy

pytestmark = pytest.mark.slow  # a benchmark's smoke run: deselect with -m 'not slow'


def run(model="ecgmamba", lr=1e-3, seed=0, validation=0.7, test=0.8, ci=(0.7, 0.9), runtime=10.0):
    return {
        "model": model,
        "learning_rate": lr,
        "seed": seed,
        "validation_macro_auc": validation,
        "test_macro_auc": test,
        "test_macro_auc_ci": list(ci),
        "test_macro_f1": 0.5,
        "test_accuracy": 0.4,
        "test_num_records": 53,
        "train_runtime_s": runtime,
        "parameters": 1000,
    }


def test_the_learning_rate_is_chosen_on_validation_only():
    runs = [run(lr=3e-4, validation=0.70, test=0.99), run(lr=1e-3, validation=0.80, test=0.60), run(lr=3e-3)]
    assert accuracy.choose_learning_rate(runs) == 1e-3  # the test AUC of 0.99 plays no part
    tied = [run(lr=3e-3, validation=0.8), run(lr=1e-3, validation=0.8)]
    assert accuracy.choose_learning_rate(tied) == 1e-3  # a tie goes to the smaller rate


def test_summary_over_seeds():
    summary = accuracy.summarise([run(seed=0, test=0.80, runtime=10), run(seed=1, test=0.70, runtime=20)])
    assert summary["seeds"] == [0, 1]
    assert summary["mean_test_macro_auc"] == pytest.approx(0.75)
    assert summary["std_test_macro_auc"] == pytest.approx(0.0707107, rel=1e-5)
    assert summary["mean_train_runtime_s"] == pytest.approx(15)
    assert accuracy.summarise([run()])["std_test_macro_auc"] == 0.0


def test_diverged_runs_are_reported_not_averaged():
    diverged = {"learning_rate": 1e-2, "seed": 1, "diverged": "NaN", "validation_macro_auc": float("-inf")}
    assert accuracy.choose_learning_rate([diverged, run(lr=3e-4, validation=0.5)]) == 3e-4
    summary = accuracy.summarise([run(seed=0, test=0.8), diverged])
    assert summary["seeds"] == [0] and summary["diverged_seeds"] == [1] and summary["mean_test_macro_auc"] == 0.8
    ablations = {"no LayerNorm": accuracy.summarise([dict(diverged, seed=0)]), "unidirectional": summary}
    table = accuracy.tables({"models": {}, "ablations": ablations})
    assert "| no LayerNorm | - | diverged (NaN) | seed 0 diverged |" in table
    assert "0.800 (0.700-0.900); seed 1 diverged" in table


def test_a_folder_without_ptbxl_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        accuracy.parse_args(["--data_dir", str(tmp_path)])
    assert "not a PTB-XL folder (no ptbxl_database.csv)" in capsys.readouterr().err


def test_quick_run_trains_compares_and_resumes(ptbxl_dir, tmp_path, capsys):
    argv = [
        "--quick",
        "--data_dir", str(ptbxl_dir),
        "--output_dir", str(tmp_path / "accuracy"),
        "--models", "ecgmamba", "xresnet1d101",
        "--learning_rates", "1e-3",
        "--ablations", "--ablation_names", "unidirectional", "--ablation_layers",
        "--markdown", str(tmp_path / "accuracy.md"),
    ]  # fmt: skip
    results = accuracy.main(argv)
    runs_dir = tmp_path / "accuracy" / "runs"
    assert {p.name for p in runs_dir.iterdir() if p.is_dir()} == {
        "ecgmamba-lr0.001-seed0",
        "xresnet1d101-lr0.001-seed0",
        "ecgmamba-unidirectional-lr0.001-seed0",
    }
    for name, entry in results["models"].items():
        summary = entry["summary"]
        low, high = summary["test_macro_auc_ci"][0]
        assert 0.0 <= low <= summary["test_macro_auc"][0] <= high <= 1.0
        assert summary["test_num_records"] == 12 and summary["mean_train_runtime_s"] > 0
        # The folder of each run is a checkpoint of that model, trained with the benchmark's budget.
        config = json.loads((runs_dir / f"{name}-lr0.001-seed0" / "config.json").read_text())
        assert config["model_type"] == {"ecgmamba": "ecgmamba", "xresnet1d101": "xresnet1d"}.get(name, name)
    assert results["models"]["xresnet1d101"]["summary"]["parameters"] == 1_872_261
    ablated = json.loads((runs_dir / "ecgmamba-unidirectional-lr0.001-seed0" / "config.json").read_text())
    assert ablated["bidirectional"] is False and ablated["hidden_size"] == 16
    assert set(results["ablations"]) == {"full model (1 layer)", "unidirectional"}
    markdown = (tmp_path / "accuracy.md").read_text()
    assert "| xresnet1d101 | 1,872,261 |" in markdown and "| unidirectional |" in markdown
    assert (
        json.loads((tmp_path / "accuracy" / "results.json").read_text())["models"].keys() == results["models"].keys()
    )

    capsys.readouterr()
    again = accuracy.main(argv)  # every run is stored: nothing trains twice
    printed = capsys.readouterr().out
    assert "training " not in printed and printed.count("reused ") == 3
    assert again["models"]["ecgmamba"]["summary"] == results["models"]["ecgmamba"]["summary"]
