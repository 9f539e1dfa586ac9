"""train_hf.py on the PhysioNet/CinC 2021 data: a short real run on the sample's 13 records reports the Challenge
metric beside macro AUC and F1; the dataset options reach the builder; wrong combinations stop before anything slow."""

import json

import numpy as np
import pytest
from conftest import import_metric_module, require_data
from huggingface_hub import ModelCard

import train_hf
from dataset_scripts.cinc2021 import CLASSES, challenge_weights
from ecgmamba_training import data

challenge_score = import_metric_module().challenge_score
TINY = [
    "--hidden_size", "32", "--num_hidden_layers", "2", "--state_size", "8", "--ffn_size", "64", "--use_cpu",
    "--disable_tqdm", "true", "--seed", "0",
]  # fmt: skip


@pytest.fixture(scope="module")
def cinc_dir(data_dir):
    return require_data(data_dir / "cinc2020", f"PhysioNet/CinC sample not found at {data_dir / 'cinc2020'}")


def test_a_run_reports_the_challenge_metric(cinc_dir, tmp_path):
    output_dir = tmp_path / "out"
    args = ["--dataset", "cinc2021", "--data_dir", str(cinc_dir), "--dataset_cache_dir", str(tmp_path / "cache")]
    args += ["--leave_out_source", "Georgia", "--output_dir", str(output_dir), *TINY]
    args += ["--max_steps", "2", "--eval_strategy", "no", "--save_strategy", "no", "--bootstrap_samples", "0"]
    final = train_hf.main(args)
    test = final["test"]
    assert test["class_names"] == list(CLASSES) and test["num_records"] == 2  # E00009, E00015: Georgia held out
    saved = np.load(output_dir / "test_probabilities.npz")
    expected = challenge_score(saved["labels"], saved["decisions"], challenge_weights(), CLASSES.index("NSR"))
    assert test["challenge_score"] == pytest.approx(expected)
    assert "challenge_score" in final["validation"]
    assert (
        json.loads((output_dir / "test_results.json").read_text())["test_challenge_score"] == test["challenge_score"]
    )
    card = ModelCard.load(output_dir / "README.md")
    assert card.data.eval_results[0].dataset_name == "PhysioNet/CinC Challenge 2021"
    assert "PhysioNet/CinC 2021 Challenge metric" in card.text and "reyna2021will" in card.text


def test_dataset_options_reach_the_builder(cinc_dir, tmp_path, monkeypatch):
    seen = {}

    def stop(*args, **kwargs):
        seen.update(kwargs)
        raise data.SetupError("stopped here")

    monkeypatch.setattr(train_hf, "load_splits", stop)
    args = ["--dataset", "cinc2021", "--data_dir", str(cinc_dir), "--output_dir", str(tmp_path), "--use_cpu"]
    with pytest.raises(data.SetupError, match="stopped here"):
        train_hf.main([*args, "--rebuild_dataset", "--drop_unscored", "--leave_out_source", "PTB-XL"])
    assert seen == {"rebuild": True, "drop_unscored": True, "leave_out_source": "PTB-XL"}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--dataset", "ptbxl", "--leave_out_source", "Georgia"], "--leave_out_source applies to --dataset cinc2021"),
        (["--dataset", "cinc2021", "--task", "rhythm"], "has one label set"),
        (["--dataset", "cinc2021", "--download"], "--download does not fetch PhysioNet/CinC Challenge 2021"),
    ],
)
def test_wrong_combinations_stop_with_a_message(cinc_dir, data_dir, tmp_path, extra, message):
    folder = cinc_dir if "cinc2021" in extra else data_dir / "ptb-xl"
    with pytest.raises(data.SetupError, match=message):
        train_hf.main([*extra, "--data_dir", str(folder), "--output_dir", str(tmp_path), "--use_cpu"])
