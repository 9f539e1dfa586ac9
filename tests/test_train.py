"""Tests of train_hf.py: short real runs on the PTB-XL sample with a tiny model.

One shared prepared dataset cache; runs happen in this process except where a test needs another one (a fresh process
that loads the checkpoint with trust_remote_code only, a run that gets killed, two gloo ranks).
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import import_metric_module
from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi, ModelCard, RepoUrl
from huggingface_hub.utils import filter_repo_objects

import train_hf
from dataset_scripts import load_ptbxl
from ecgmamba_training import checkpoints, data, evaluation, trainer, windows
from modeling_ecgmamba import ECGMambaConfig, ECGMambaForSequenceClassification

REPO_ROOT = Path(__file__).resolve().parents[1]
multilabel_metrics = import_metric_module().multilabel_metrics

MODEL_FILES = {
    "configuration_ecgmamba.py",
    "modeling_ecgmamba.py",
    "selective_scan.py",
    "feature_extraction_ecgmamba.py",
}
LOADABLE = {"config.json", "model.safetensors", "preprocessor_config.json"} | MODEL_FILES
TINY = [
    "--hidden_size", "32", "--num_hidden_layers", "2", "--state_size", "8", "--ffn_size", "64",
    "--hidden_dropout", "0", "--head_dropout", "0",
]  # fmt: skip
# 2.5 s windows from the 10 s PTB-XL records: training crops at random, evaluation slides 7 windows per record.
SHORT_RUN = [
    "--window_seconds", "2.5", "--max_steps", "4", "--per_device_train_batch_size", "8",
    "--eval_strategy", "steps", "--eval_steps", "2", "--save_strategy", "steps", "--save_steps", "2",
    "--max_eval_samples", "16", "--bootstrap_samples", "200", "--logging_steps", "1",
]  # fmt: skip
DDP_RUN = [
    "--use_encoder", "false", "--window_seconds", "2.5", "--max_steps", "3", "--max_train_samples", "24", "--max_eval_samples", "4", "--logging_steps", "1",
    "--eval_strategy", "no", "--save_strategy", "no", "--bootstrap_samples", "0",
]  # fmt: skip


@pytest.fixture(scope="session")
def dataset_cache(tmp_path_factory, ptbxl_dir):
    """The PTB-XL sample prepared once; every run below reads this cache."""
    cache = tmp_path_factory.mktemp("ptbxl_cache")
    load_ptbxl(ptbxl_dir, cache_dir=str(cache))
    return cache


def run_args(ptbxl_dir, cache, output_dir, *extra) -> list[str]:
    common = ["--data_dir", str(ptbxl_dir), "--dataset_cache_dir", str(cache), "--output_dir", str(output_dir)]
    return [*common, *TINY, "--use_cpu", "--seed", "0", "--disable_tqdm", "true", *extra]


def train(*args) -> dict:
    return train_hf.main(list(args))


def losses(output_dir) -> dict[int, float]:
    history = json.loads((Path(output_dir) / "trainer_state.json").read_text())["log_history"]
    return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, ptbxl_dir, dataset_cache):
    output_dir = tmp_path_factory.mktemp("short_run")
    final = train(*run_args(ptbxl_dir, dataset_cache, output_dir, *SHORT_RUN))
    return output_dir, final


# ------------------------------------------------------------------------------------------------ the main job


def test_a_run_leaves_a_loadable_checkpoint(short_run):
    output_dir, final = short_run
    files = {p.name for p in output_dir.iterdir()}
    assert LOADABLE | {"README.md", "test_results.json", "training_curves.png"} <= files
    config = json.loads((output_dir / "config.json").read_text())
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForSequenceClassification"}
    assert list(config["id2label"].values()) == ["CD", "HYP", "MI", "NORM", "STTC"]
    assert set(config["custom_pipelines"]) == {"ecg-classification"}  # pipeline("ecg-classification", model=dir)
    assert config["window_seconds"] == 2.5 and config["hidden_size"] == 32
    # Thresholds chosen on validation travel in the config, in class order.
    assert config["thresholds"] == pytest.approx(final["validation"]["thresholds"])
    assert len(config["thresholds"]) == 5 and config["thresholds"] != [0.5] * 5
    preprocessor = json.loads((output_dir / "preprocessor_config.json").read_text())
    assert preprocessor["auto_map"]["AutoFeatureExtractor"].startswith("feature_extraction_ecgmamba.")
    # Every checkpoint folder loads on its own too.
    for checkpoint in ("checkpoint-2", "checkpoint-4"):
        assert LOADABLE | {"pipeline_ecgmamba.py"} <= {p.name for p in (output_dir / checkpoint).iterdir()}
        # ... and says which run it belongs to, and that its save finished.
        assert checkpoints.is_complete(output_dir / checkpoint)
        assert checkpoints.read_run_arguments(output_dir / checkpoint) == checkpoints.read_run_arguments(output_dir)
        assert (
            "ecg-classification"
            in json.loads((output_dir / checkpoint / "config.json").read_text())["custom_pipelines"]
        )

    results = json.loads((output_dir / "test_results.json").read_text())
    assert results["test_num_records"] == 16 and results["test_bootstrap_samples"] == 200
    assert results["test_macro_auc_ci_low"] <= results["test_macro_auc"] <= results["test_macro_auc_ci_high"]
    assert results["test_thresholds"] == config["thresholds"]
    assert sum(results["test_positives"]) >= 16
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    assert [h["step"] for h in history if "eval_macro_auc" in h] == [2, 4]


def test_the_checkpoint_gives_the_same_test_metrics_in_a_fresh_process(short_run, dataset_cache, ptbxl_dir, tmp_path):
    """A process with transformers and trust_remote_code only: the feature extractor's own windows, averaged."""
    output_dir, _ = short_run
    test = load_ptbxl(ptbxl_dir, cache_dir=str(dataset_cache))["test"].select(range(16)).with_format("numpy")
    labels = np.stack(test["labels"])
    np.save(tmp_path / "signals.npy", np.stack(test["input_values"]))
    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np, torch
        from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained({str(output_dir)!r}, trust_remote_code=True).eval()
        extractor = AutoFeatureExtractor.from_pretrained({str(output_dir)!r}, trust_remote_code=True)
        assert "modeling_ecgmamba" not in sys.modules, "the repository's package must not be imported"
        inputs = extractor(list(np.load("signals.npy")), sampling_rate=100, return_windows=True, return_tensors="pt")
        with torch.no_grad():
            probabilities = torch.sigmoid(model(inputs["input_values"], attention_mask=inputs["attention_mask"]).logits)
        index = inputs["record_index"].numpy()
        per_record = [probabilities[index == i].mean(0).tolist() for i in range(index.max() + 1)]
        print(json.dumps({{"probabilities": per_record, "thresholds": model.config.thresholds}}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = json.loads(result.stdout.strip().splitlines()[-1])
    saved = json.loads((output_dir / "test_results.json").read_text())
    assert fresh["thresholds"] == saved["test_thresholds"]
    # The run's own per-record test probabilities: the fresh process reproduces them. (The metrics themselves are
    # not compared: after 4 steps the model's outputs differ across records by ~1e-6, so float rounding reorders
    # them and moves the AUC.)
    run_output = np.load(output_dir / "test_probabilities.npz")
    np.testing.assert_array_equal(run_output["labels"], labels)
    assert run_output["class_names"].tolist() == ["CD", "HYP", "MI", "NORM", "STTC"]
    np.testing.assert_allclose(fresh["probabilities"], run_output["probabilities"], rtol=0, atol=1e-6)
    # And those probabilities are what test_results.json scored.
    scores = multilabel_metrics(run_output["probabilities"], labels, thresholds=saved["test_thresholds"])
    for name in ("macro_auc", "macro_f1", "sample_f1", "accuracy", "fmax"):
        assert scores[name] == pytest.approx(saved[f"test_{name}"], abs=1e-9), name
    assert scores["per_class_auc"] == pytest.approx(saved["test_per_class_auc"], abs=1e-9)


def test_the_model_card_carries_the_measured_results(short_run):
    output_dir, final = short_run
    card = ModelCard.load(output_dir / "README.md")
    assert card.data.license == "apache-2.0" and card.data.library_name == "transformers"
    assert "ptb-xl" in card.data.datasets and "ecg" in card.data.tags
    results = {r.metric_name: r for r in card.data.eval_results}
    assert set(results) == {"Macro ROC-AUC", "Macro F1", "Sample F1", "Accuracy (exact match)", "Fmax"}
    auc = results["Macro ROC-AUC"]
    assert auc.metric_value == pytest.approx(final["test"]["macro_auc"], abs=1e-4)
    assert (auc.dataset_name, auc.dataset_config, auc.dataset_split) == ("PTB-XL", "superdiagnostic", "test")
    assert auc.task_type == "time-series-classification" and auc.metric_type == "roc_auc"
    assert results["Fmax"].metric_value == pytest.approx(final["test"]["fmax"], abs=1e-4)
    text = card.text
    low, high = final["test"]["macro_auc_ci_low"], final["test"]["macro_auc_ci_high"]
    assert f"**{final['test']['macro_auc']:.3f}** ({low:.3f}-{high:.3f})" in text  # the results table
    assert "Not for clinical use" in text and "2406.10098" in text and "CC BY 4.0" in text
    assert "Small training set" in text and "![Training curves](training_curves.png)" in text
    state = json.loads((output_dir / "trainer_state.json").read_text())
    best = state["best_global_step"]
    assert f"Weights kept: step {best} (epoch" in text and "of 2 evaluations (the dashed line in" in text
    assert f"{state['best_metric']:.4f}" in text
    assert "Training in progress" not in text


def test_no_weight_decay_on_ssm_parameters_biases_and_norms():
    model = ECGMambaForSequenceClassification(ECGMambaConfig(hidden_size=32, num_hidden_layers=1))
    ecg_trainer = object.__new__(trainer.ECGTrainer)  # only the method under test
    decayed = set(ecg_trainer.get_decay_parameter_names(model))
    names = {name for name, _ in model.named_parameters()}
    assert not {n for n in decayed if n.endswith(("A_log", ".D", "bias"))}
    assert not {n for n in decayed if "norm" in n}  # LayerNorm and the encoder's BatchNorm
    assert "ecgmamba.layers.0.mixer.in_proj.weight" in decayed and "classifier.weight" in decayed
    assert "ecgmamba.layers.0.mixer.forward_mixer.A_log" in names - decayed


def test_cpsc2018_variable_length_records_train_and_evaluate(data_dir, tmp_path):
    """Records of 6-60 s: random 10 s crops for training, padded or slid windows averaged per record for evaluation."""
    if not (data_dir / "cpsc2018").is_dir():
        pytest.skip(f"no CPSC2018 sample in {data_dir}")
    output_dir = tmp_path / "cpsc"
    args = ["--dataset", "cpsc2018", "--data_dir", str(data_dir), "--dataset_cache_dir", str(tmp_path / "cache")]
    quick = ["--max_steps", "1", "--eval_strategy", "no", "--save_strategy", "no"]
    final = train(*args, "--output_dir", str(output_dir), *TINY, "--use_cpu", "--disable_tqdm", "true", *quick)
    names = ["Normal", "AF", "I-AVB", "LBBB", "RBBB", "PAC", "PVC", "STD", "STE"]
    assert final["test"]["class_names"] == names and final["test"]["num_records"] >= 1
    assert json.loads((output_dir / "config.json").read_text())["id2label"] == {str(i): n for i, n in enumerate(names)}
    card = ModelCard.load(output_dir / "README.md")
    assert card.data.eval_results[0].dataset_name == "CPSC2018" and "label-stratified" in card.text


# ------------------------------------------------------------------------------------------------ every model type

# A fresh process that may run only the checkpoints' own code: the repository's packages are blocked.
LOAD_ANYWHERE = """
import json, sys
for name in ("modeling_ecgmamba", "ecgmamba_apps", "ecgmamba_training", "dataset_scripts", "benchmarks", "train_hf"):
    sys.modules[name] = None
import numpy as np, torch
from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification
out = {}
for folder in sys.argv[1:]:
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
    extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
    with torch.no_grad():
        logits = model(torch.from_numpy(np.load("inputs.npy"))).logits
    out[folder] = {"model": type(model).__module__, "extractor": type(extractor).__name__, "logits": logits.tolist()}
print(json.dumps(out))
"""


def test_every_model_type_saves_a_checkpoint_that_loads_anywhere(ptbxl_dir, dataset_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("ECGMAMBA_SCAN_BACKEND", "torch")  # the same scan here and in the fresh process
    quick = [
        "--max_steps", "1", "--window_seconds", "2.5", "--per_device_train_batch_size", "4", "--eval_strategy", "no",
        "--save_strategy", "no", "--max_eval_samples", "4", "--bootstrap_samples", "0",
    ]  # fmt: skip
    common = ["--data_dir", str(ptbxl_dir), "--dataset_cache_dir", str(dataset_cache), "--use_cpu"]
    common += ["--disable_tqdm", "true", *quick]
    with pytest.raises(data.SetupError, match="--hidden_size do\\(es\\) not apply to --model_type xresnet1d101"):
        train(*common, "--model_type", "xresnet1d101", "--hidden_size", "32", "--output_dir", str(tmp_path / "no"))
    architectures = {
        "ecgmamba": ("ECGMambaForSequenceClassification", "An **ECGMamba** model"),
        "transformer": ("ECGTransformerForSequenceClassification", "A **Transformer baseline**"),
        "xresnet1d101": ("XResNet1dForSequenceClassification", "An **xresnet1d101** model"),
    }
    folders = {}
    for model_type, (class_name, card_line) in architectures.items():
        folder = tmp_path / model_type
        # xresnet1d101 keeps its own defaults (it takes none of these options); the Transformer has no SSM state.
        sizes = {"ecgmamba": TINY, "transformer": [a for a in TINY if a not in ("--state_size", "8")]}.get(
            model_type, []
        )
        train(*common, *sizes, "--model_type", model_type, "--output_dir", str(folder))
        config = json.loads((folder / "config.json").read_text())
        assert config["architectures"] == [class_name] and config["window_aggregation"] == "mean"
        assert {"AutoConfig", "AutoModelForSequenceClassification"} <= set(config["auto_map"])
        assert "ecg-classification" in config["custom_pipelines"] and len(config["thresholds"]) == 5
        assert card_line in (folder / "README.md").read_text()
        folders[model_type] = folder

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    inputs = np.random.default_rng(0).normal(0, 0.3, (2, 250, 12)).astype(np.float32)
    np.save(elsewhere / "inputs.npy", inputs)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    command = [sys.executable, "-P", "-c", LOAD_ANYWHERE, *map(str, folders.values())]
    result = subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])

    from transformers import AutoModelForSequenceClassification

    from ecgmamba_apps.predict import main as predict_main

    record = ptbxl_dir / "records100" / "00000" / "00008_lr.hea"
    for model_type, folder in folders.items():
        fresh = loaded[str(folder)]
        assert fresh["model"].startswith("transformers_modules.") and fresh["extractor"] == "ECGMambaFeatureExtractor"
        model = AutoModelForSequenceClassification.from_pretrained(folder).eval()  # the installed package's classes
        with torch.no_grad():
            expected = model(torch.from_numpy(inputs)).logits.numpy()
        np.testing.assert_allclose(fresh["logits"], expected, rtol=0, atol=1e-6, err_msg=model_type)
        # The command line on a real record, with the checkpoint's own code (as for a downloaded Hub repo).
        out = tmp_path / f"{model_type}.json"
        assert predict_main(["--model", str(folder), str(record), "--json", str(out), "--no-progress"]) == 0
        prediction = json.loads(out.read_text())["records"][0]
        assert prediction["ok"] and set(prediction["probabilities"]) == {"CD", "HYP", "MI", "NORM", "STTC"}


# ------------------------------------------------------------------------------------------------ resume

# train_hf.py in a process that kills itself (SIGKILL, as `kill -9` would): "step:N" as step N+1 begins, "save:N" in
# the middle of writing checkpoint-N (its model file written, its optimizer state, trainer state and marker not yet).
KILL = """
import os, signal, sys
from transformers import TrainerCallback
import train_hf
from ecgmamba_training.trainer import ECGTrainer

moment, step = sys.argv[1].split(":")

def kill():
    os.kill(os.getpid(), signal.SIGKILL)

class KillAtStep(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        if moment == "step" and state.global_step == int(step):
            kill()

original_init, original_save = ECGTrainer.__init__, ECGTrainer._save_optimizer_and_scheduler

def init(self, *args, **kwargs):
    original_init(self, *args, **kwargs)
    self.add_callback(KillAtStep())

def save_optimizer_and_scheduler(self, output_dir):
    if moment == "save" and self.state.global_step == int(step):
        kill()
    original_save(self, output_dir)

ECGTrainer.__init__, ECGTrainer._save_optimizer_and_scheduler = init, save_optimizer_and_scheduler
train_hf.main(sys.argv[2:])
"""
# With the thread count of this process: `accelerate launch` would give it 1 on a CPU, and a resumed run is bitwise the
# uninterrupted one only on as many threads (LayerNorm's backward splits its sums by thread).
ONE_PROCESS = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO_ROOT / "configs" / "accelerate" / "one_process.yaml"), "--num_cpu_threads_per_process", str(torch.get_num_threads())]  # fmt: skip


def run_killed(moment: str, args: list[str], log: Path) -> None:
    with open(log, "w") as out:
        process = subprocess.run([sys.executable, "-c", KILL, moment, *args], cwd=log.parent, stdout=out, stderr=out)
    assert process.returncode == -signal.SIGKILL, log.read_text()[-3000:]


def weights(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(Path(folder) / "model.safetensors")


def assert_same_run(resumed, uninterrupted) -> None:
    """Bitwise the same weights (every checkpoint and the final model) and training losses."""
    for folder in ("checkpoint-4", "."):
        expected, got = weights(uninterrupted / folder), weights(resumed / folder)
        assert expected.keys() == got.keys()
        assert all(torch.equal(got[name], expected[name]) for name in expected), folder
    assert losses(resumed) == losses(uninterrupted)


def test_a_run_killed_during_training_continues_when_rerun(short_run, ptbxl_dir, dataset_cache, tmp_path):
    output_dir = tmp_path / "killed"
    args = run_args(ptbxl_dir, dataset_cache, output_dir, *SHORT_RUN)
    run_killed("step:2", args, tmp_path / "killed.log")  # as step 3 begins: checkpoint-2 is saved
    assert checkpoints.is_complete(output_dir / "checkpoint-2")
    assert not (output_dir / "checkpoint-4").exists(), "the run ended before it could be interrupted"
    assert not (output_dir / "test_results.json").exists()

    # The same command again: it continues (same optimizer, schedule, batches and crops) to the same weights.
    train(*args)
    assert_same_run(output_dir, short_run[0])
    resumed = json.loads((output_dir / "test_results.json").read_text())
    assert resumed["test_macro_auc"] == json.loads((short_run[0] / "test_results.json").read_text())["test_macro_auc"]

    # Other arguments: refused with the differences listed, before any data is read ...
    with pytest.raises(data.SetupError) as error:
        train(*args, "--max_steps", "6", "--seed", "1", "--logging_steps", "2")
    message = str(error.value)
    assert "checkpoint-4 belongs to a run with other arguments" in message
    assert "--max_steps: 4 there, 6 now" in message and "--seed: 0 there, 1 now" in message
    assert "--logging_steps" not in message  # logging does not change the run
    assert "--resume_with_changed_args" in message and "--overwrite_output_dir" in message
    # ... the optimizer's settings even with --resume_with_changed_args (the checkpoint would restore the old ones) ...
    with pytest.raises(data.SetupError, match="--learning_rate: 0.001 there, 0.01 now"):
        train(*args, "--learning_rate", "0.01", "--resume_with_changed_args")
    # ... and the others continue when asked to.
    train(*args, "--max_steps", "6", "--resume_with_changed_args")
    assert sorted(losses(output_dir)) == [1, 2, 3, 4, 5, 6] and checkpoints.is_complete(output_dir / "checkpoint-6")
    assert checkpoints.read_run_arguments(output_dir / "checkpoint-6")["max_steps"] == 6


def test_a_run_killed_while_saving_a_checkpoint_continues_from_the_last_complete_one(
    short_run, ptbxl_dir, dataset_cache, tmp_path
):
    output_dir = tmp_path / "killed"
    args = run_args(ptbxl_dir, dataset_cache, output_dir, *SHORT_RUN)
    run_killed("save:4", args, tmp_path / "killed.log")
    interrupted = {p.name for p in (output_dir / "checkpoint-4").iterdir()}
    assert "model.safetensors" in interrupted and not {"optimizer.pt", checkpoints.COMPLETE_MARKER} & interrupted
    assert checkpoints.is_complete(output_dir / "checkpoint-2")

    # The README's command, in a process of its own: what a user sees, then the same weights as without the kill.
    result = subprocess.run([*ONE_PROCESS, "train_hf.py", *args], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "Skipping checkpoint-4" in output and "the save was interrupted" in output
    assert f"start      resuming from {output_dir / 'checkpoint-2'}" in output  # the run's settings, printed
    assert f"results in {output_dir}" in output and "ECGMambaForSequenceClassification (" in output
    for noise in ("Writing model shards", "pin_memory", "were not passed to `accelerate launch`", "mtime", "Warning"):
        assert noise not in output, noise
    assert_same_run(output_dir, short_run[0])


def _fake_checkpoint(folder: Path, arguments: dict | None, complete: bool = True) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    if complete:
        checkpoints.mark_complete(folder, arguments, step=int(folder.name.split("-")[1]))
    return folder


def test_choosing_the_checkpoint_to_resume(tmp_path, caplog):
    arguments = {"learning_rate": 0.001, "max_steps": 4, "logging_steps": 1, "output_dir": "a"}
    _fake_checkpoint(tmp_path / "checkpoint-2", arguments)
    _fake_checkpoint(tmp_path / "checkpoint-10", arguments)
    _fake_checkpoint(tmp_path / "checkpoint-12", arguments, complete=False)  # killed while saving
    (tmp_path / "checkpoint-7-old").mkdir()  # not a checkpoint name: ignored
    assert [p.name for p in checkpoints.list_checkpoints(tmp_path)] == [
        "checkpoint-2",
        "checkpoint-10",
        "checkpoint-12",
    ]

    # The same run (output_dir and logging may differ): the newest complete checkpoint; the interrupted one is named.
    same = {**arguments, "logging_steps": 5, "output_dir": "b"}
    assert checkpoints.choose_checkpoint(tmp_path, same) == str(tmp_path / "checkpoint-10")
    assert "Skipping checkpoint-12" in caplog.text and "the save was interrupted" in caplog.text
    assert not (tmp_path / "checkpoint-12").exists()  # removed: it would count towards save_total_limit

    changed = {**arguments, "max_steps": 8}
    with pytest.raises(data.SetupError, match="--max_steps: 4 there, 8 now"):
        checkpoints.choose_checkpoint(tmp_path, changed)
    assert checkpoints.choose_checkpoint(tmp_path, changed, accept_changes=True) == str(tmp_path / "checkpoint-10")
    assert "Continuing" in caplog.text and "--max_steps: 4 there, 8 now" in caplog.text
    with pytest.raises(data.SetupError, match="optimizer settings"):
        checkpoints.choose_checkpoint(tmp_path, {**arguments, "learning_rate": 0.01}, accept_changes=True)

    # An explicit checkpoint: the same checks, and it must be complete.
    explicit = str(tmp_path / "checkpoint-2")
    assert checkpoints.choose_checkpoint(tmp_path, same, resume_from_checkpoint=explicit) == explicit
    with pytest.raises(data.SetupError, match="--max_steps: 4 there, 8 now"):
        checkpoints.choose_checkpoint(tmp_path, changed, resume_from_checkpoint=explicit)
    _fake_checkpoint(tmp_path / "checkpoint-14", arguments, complete=False)
    with pytest.raises(data.SetupError, match="its save did not finish"):
        checkpoints.choose_checkpoint(tmp_path, same, resume_from_checkpoint=str(tmp_path / "checkpoint-14"))
    with pytest.raises(data.SetupError, match="no such folder"):
        checkpoints.choose_checkpoint(tmp_path, same, resume_from_checkpoint=str(tmp_path / "checkpoint-99"))
    with pytest.raises(data.SetupError, match="pass one of them"):
        checkpoints.choose_checkpoint(tmp_path, same, resume_from_checkpoint=explicit, overwrite=True)

    # Starting over removes the earlier run's checkpoints and results, and nothing else.
    checkpoints.write_run_arguments(tmp_path, arguments)
    for name in ("test_results.json", "trainer_state.json", "training_curves.png", "notes.txt"):
        (tmp_path / name).write_text("x")
    assert checkpoints.choose_checkpoint(tmp_path, changed, overwrite=True) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-7-old", "notes.txt"]

    # A folder with a run's outputs but no checkpoint (stopped before its first save, or saving none).
    checkpoints.write_run_arguments(tmp_path, arguments)
    assert checkpoints.choose_checkpoint(tmp_path, same) is None  # the same run: it starts again
    with pytest.raises(data.SetupError, match="outputs of a run with other arguments"):
        checkpoints.choose_checkpoint(tmp_path, changed, accept_changes=True)
    assert checkpoints.choose_checkpoint(tmp_path / "new", arguments) is None


def parsed(*argv) -> dict:
    model_args, overrides, data_args, training_args, notes = train_hf.parse_args(list(argv))
    values = {**vars(data_args), **{k: getattr(v, "value", v) for k, v in vars(training_args).items()}}
    return {**values, "notes": notes}


def test_a_given_step_cadence_takes_effect_or_is_refused(capsys):
    default = parsed()
    assert (default["save_strategy"], default["eval_strategy"], default["logging_strategy"]) == (
        "epoch",
        "epoch",
        "steps",
    )
    # Saving every N steps: checkpoints every N steps, and so evaluations (the best is chosen at each save) ...
    given = parsed("--save_steps", "10")
    assert (given["save_strategy"], given["save_steps"], given["eval_strategy"], given["eval_steps"]) == (
        "steps", 10, "steps", 10
    )  # fmt: skip
    assert given["notes"] == [
        "--save_steps 10 given: --save_strategy steps",
        "evaluating every 10 steps too: the best checkpoint is chosen at each save",
    ]
    # ... unless there is no best to choose, or the evaluation cadence is given too.
    assert parsed("--save_steps", "10", "--load_best_model_at_end", "false")["eval_strategy"] == "epoch"
    assert parsed("--save_steps", "10", "--eval_strategy", "no")["eval_strategy"] == "no"
    both = parsed("--save-steps", "10", "--eval_steps", "5")  # dashes are the same option
    assert (both["save_strategy"], both["save_steps"], both["eval_strategy"], both["eval_steps"]) == (
        "steps",
        10,
        "steps",
        5,
    )
    evaluations = parsed("--eval_steps", "4")
    assert (evaluations["eval_strategy"], evaluations["save_strategy"], evaluations["save_steps"]) == (
        "steps",
        "steps",
        4,
    )
    assert parsed("--logging_steps", "3")["logging_steps"] == 3
    # A cadence its strategy would ignore: refused with the reason, not dropped.
    for argv, reason in [
        (
            ["--save_steps", "10", "--save_strategy", "epoch"],
            "--save_steps 10 has no effect with --save_strategy epoch",
        ),
        (["--eval_steps", "5", "--eval_strategy", "no"], "--eval_steps 5 has no effect with --eval_strategy no"),
        (["--logging_steps", "5", "--logging_strategy", "epoch"], "--logging_steps 5 has no effect with"),
    ]:
        with pytest.raises(SystemExit):
            train_hf.parse_args(argv)
        assert reason in capsys.readouterr().err


def test_help_shows_the_projects_options_first_with_one_default_each(capsys):
    with pytest.raises(SystemExit) as exit_code:
        train_hf.parse_args(["--help"])
    assert exit_code.value.code == 0
    short = capsys.readouterr().out
    assert "(default: None)" not in short and "(default 128)" not in short
    assert not [line for line in short.splitlines() if line.count("default") > 1]
    assert short.index("--hidden_size") < short.index("--window_seconds") < short.index("--learning_rate")
    assert "Width of the token embeddings and of every BiSSM block. (default: 128)" in " ".join(short.split())
    for option in ("--model_type", "--max_steps", "--save_steps", "--overwrite_output_dir", "--resume_with_changed_args",
                   "--help-all", "--push_to_hub", "--bf16"):  # fmt: skip
        assert option in short, option
    assert "--neftune_noise_alpha" not in short and "--hidden-size" not in short and len(short.splitlines()) < 260

    with pytest.raises(SystemExit):
        train_hf.parse_args(["--help-all"])
    everything = capsys.readouterr().out
    assert "--neftune_noise_alpha" in everything and "--hidden_size" in everything
    assert len(everything.splitlines()) > 2 * len(short.splitlines())
    # And every option it lists is accepted.
    assert parsed("--neftune_noise_alpha", "5", "--hidden-size", "64")["neftune_noise_alpha"] == 5


def test_training_curves_mark_the_kept_step_and_draw_no_empty_legend(tmp_path):
    import warnings

    from ecgmamba_training.reporting import plot_training_curves

    history = [{"step": 1, "loss": 0.7}, {"step": 2, "eval_loss": 0.6, "eval_macro_auc": 0.8}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "No artists with labels found to put in legend" was one
        plot_training_curves([], tmp_path / "empty.png")
        plot_training_curves(history, tmp_path / "curves.png", kept_step=2)
    assert (tmp_path / "curves.png").stat().st_size > 10_000


# ------------------------------------------------------------------------------------------------ several processes


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(ptbxl_dir, dataset_cache, tmp_path):
    two = tmp_path / "two_processes"
    launch = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file",
        str(REPO_ROOT / "configs" / "accelerate" / "cpu_2proc.yaml"), "train_hf.py",
    ]  # fmt: skip
    args = run_args(ptbxl_dir, dataset_cache, two, *DDP_RUN, "--per_device_train_batch_size", "4")
    result = subprocess.run([*launch, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Process 0/2 on cpu" in result.stderr and (two / "test_results.json").exists()

    one = tmp_path / "one_process"
    train(*run_args(ptbxl_dir, dataset_cache, one, *DDP_RUN, "--per_device_train_batch_size", "8"))
    assert sorted(losses(two)) == sorted(losses(one)) == [1, 2, 3]
    # Without the encoder's BatchNorm (whose statistics would come from 4 records per rank instead of 8) the two
    # runs compute the same thing: same records, crops, gradients (averaged over ranks) and updates.
    for step in (1, 2, 3):
        assert losses(two)[step] == pytest.approx(losses(one)[step], rel=1e-4), step


# ------------------------------------------------------------------------------------------------ the Hub, offline


@pytest.fixture
def fake_hub(monkeypatch):
    """Patch the Hub's network boundary only; record which files each commit carries."""
    commits = []

    def commit(repo_id, message, files):
        commits.append({"repo_id": repo_id, "message": message, "files": sorted(files)})
        oid = f"{len(commits):040x}"
        return CommitInfo(f"https://huggingface.co/{repo_id}/commit/{oid}", message, "", oid)

    def create_commit(self, repo_id, operations, *, commit_message, **kwargs):
        return commit(
            repo_id, commit_message, [op.path_in_repo for op in operations if isinstance(op, CommitOperationAdd)]
        )

    def upload_folder(
        self, *, repo_id, folder_path, commit_message, ignore_patterns=(), run_as_future=False, **kwargs
    ):
        paths = [p.relative_to(folder_path).as_posix() for p in Path(folder_path).rglob("*") if p.is_file()]
        files = filter_repo_objects(paths, ignore_patterns=list(ignore_patterns))
        info = commit(repo_id, commit_message, files)  # what the folder holds when the push starts
        if not run_as_future:
            return info
        future = Future()
        future.set_result(info)
        return future

    monkeypatch.setattr(HfApi, "whoami", lambda self, token=None, **kwargs: {"name": "tester"})
    monkeypatch.setattr(
        HfApi, "create_repo", lambda self, repo_id, **kwargs: RepoUrl(f"https://huggingface.co/{repo_id}")
    )
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return commits


def test_push_to_hub_publishes_loadable_revisions(fake_hub, ptbxl_dir, dataset_cache, tmp_path):
    push = ["--push_to_hub", "--hub_model_id", "tester/ecgmamba-tiny", "--hub_token", "hf_test"]
    steps = ["--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1", "--eval_strategy", "no"]
    quick = ["--max_eval_samples", "8", "--bootstrap_samples", "0"]
    train(*run_args(ptbxl_dir, dataset_cache, tmp_path / "out", "--window_seconds", "2.5", *push, *steps, *quick))

    assert len(fake_hub) >= 2 and {c["repo_id"] for c in fake_hub} == {"tester/ecgmamba-tiny"}
    assert fake_hub[0]["message"].startswith("Training in progress")
    assert fake_hub[-1]["message"] == "End of training"
    for commit in fake_hub:  # every revision loads: code, config, weights and preprocessor from the first push on
        assert LOADABLE <= set(commit["files"]), commit
        assert not [f for f in commit["files"] if f.startswith("checkpoint-")], commit
    assert {"README.md", "test_results.json", "training_curves.png"} <= set(fake_hub[-1]["files"])
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert card.data.eval_results and "tester/ecgmamba-tiny" in card.text


def test_push_without_a_token_fails_before_training(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    with pytest.raises(data.SetupError, match="needs a Hugging Face token"):
        train("--push_to_hub", "--output_dir", str(tmp_path), "--data_dir", str(tmp_path / "absent"))


def test_push_without_the_hub_fails_before_training(tmp_path):
    # HF_HUB_OFFLINE=1 (conftest): the real whoami refuses, as it would without a network.
    with pytest.raises(data.SetupError, match="cannot reach the Hugging Face Hub"):
        train("--push_to_hub", "--hub_token", "hf_test", "--output_dir", str(tmp_path), "--data_dir", str(tmp_path))


# ------------------------------------------------------------------------------------------------ missing data


def test_a_missing_data_folder_says_where_to_put_the_data(tmp_path):
    with pytest.raises(data.SetupError) as error:
        train("--data_dir", str(tmp_path / "nowhere"), "--output_dir", str(tmp_path / "out"))
    message = str(error.value)
    assert str(tmp_path / "nowhere") in message and "https://physionet.org/content/ptb-xl/" in message
    assert "--download" in message and "ECGMAMBA_DATA_DIR" in message


def test_data_dir_defaults_to_the_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("ECGMAMBA_DATA_DIR", str(tmp_path))
    assert data.resolve_data_dir("ptbxl", None) == tmp_path / "ptb-xl"
    assert data.resolve_data_dir("cpsc2018", None) == tmp_path / "cpsc2018"
    assert data.resolve_data_dir("ptbxl", str(tmp_path / "mine")) == tmp_path / "mine"


def test_download_fetches_what_is_missing_with_wfdb(monkeypatch, ptbxl_dir, tmp_path):
    """PhysioNet replaced by the shared sample: only the files missing locally are requested."""
    requested = []

    def dl_pn_file(inputs):
        name, subdir, database, target, keep_subdirs, overwrite = inputs
        requested.append(f"{subdir}/{name}".lstrip("/"))
        assert database == "ptb-xl/1.0.3" and keep_subdirs
        (Path(target) / subdir / name).write_bytes((ptbxl_dir / subdir / name).read_bytes())

    monkeypatch.setattr("wfdb.io.download.dl_pn_file", dl_pn_file)
    target = tmp_path / "ptb-xl"
    assert data.ensure_data("ptbxl", target, download=True, sampling_rate=100) == target
    assert "ptbxl_database.csv" in requested and "records100/00000/00001_lr.dat" in requested
    assert not [f for f in requested if f.startswith("records500")]
    assert len(requested) == 3 + 2 * 400
    requested.clear()
    data.ensure_data("ptbxl", target, download=True, sampling_rate=100)  # complete: nothing to fetch
    assert requested == []


def test_download_without_a_network_says_what_to_do(monkeypatch, tmp_path):
    def offline(inputs):
        raise ConnectionError("Failed to resolve 'physionet.org'")

    monkeypatch.setattr("wfdb.io.download.dl_pn_file", offline)
    with pytest.raises(data.SetupError, match="Could not download PTB-XL from PhysioNet") as error:
        data.ensure_data("ptbxl", tmp_path / "ptb-xl", download=True, sampling_rate=100)
    assert "physionet.org/content/ptb-xl/1.0.3" in str(error.value) and "ConnectionError" in str(error.value)


# ------------------------------------------------------------------------------------------------ windows


def test_training_crops_random_windows_that_survive_a_resume_and_pads_short_records():
    long_record = np.arange(1000 * 12, dtype=np.float32).reshape(1000, 12)
    short_record = np.ones((100, 12), dtype=np.float32)
    collator = windows.WindowCollator(window=250, seed=3)

    def crop_of(index, epoch):
        collator.epoch = epoch
        batch = collator([{"input_values": long_record, "labels": [1.0, 0.0], "index": index}])
        start = int(batch["input_values"][0, 0, 0]) // 12
        np.testing.assert_array_equal(batch["input_values"][0].numpy(), long_record[start : start + 250])
        assert "attention_mask" not in batch  # nothing padded: no mask
        return start

    starts = {(index, epoch): crop_of(index, epoch) for index in range(5) for epoch in range(4)}
    assert len(set(starts.values())) > 10  # new crops for other records and other epochs ...
    assert all(crop_of(index, epoch) == start for (index, epoch), start in starts.items())  # ... the same on replay

    batch = collator(
        [
            {"input_values": short_record, "labels": [0.0, 1.0], "index": 0},
            {"input_values": long_record, "labels": [1.0, 1.0]},
        ]
    )
    assert batch["input_values"].shape == (2, 250, 12) and batch["labels"].tolist() == [[0, 1], [1, 1]]
    assert batch["attention_mask"].sum(1).tolist() == [100, 250] and (batch["input_values"][0, 100:] == 0).all()
    np.testing.assert_array_equal(batch["input_values"][1].numpy(), long_record[:250])  # no index: the start


def test_evaluation_slides_windows_and_averages_per_record():
    import datasets

    features = datasets.Features(
        {
            "input_values": datasets.Array2D((None, 12), "float32"),
            "labels": datasets.List(datasets.Value("float32"), length=2),
        }
    )
    records = [np.zeros((1000, 12), np.float32), np.zeros((600, 12), np.float32), np.zeros((200, 12), np.float32)]
    dataset = datasets.Dataset.from_dict(
        {"input_values": records, "labels": [[1, 0], [0, 1], [1, 1]]}, features=features
    )
    slid, record_index = windows.sliding_windows(dataset, window=250, stride=125)
    # 1000: starts 0..750 every 125 (7); 600: 0..250 + the end-aligned 350 (4); 200: one short window.
    assert record_index.tolist() == [0] * 7 + [1] * 4 + [2]
    assert len(slid[-1]["input_values"]) == 200 and slid[7]["labels"] == [0, 1]

    logits = np.log(np.array([[1, 3]] * 7 + [[1, 1]] * 3 + [[1, 9]] + [[3, 1]], dtype=float))  # sigmoid = p / (1 + p)
    labels = np.array([[1, 0]] * 7 + [[0, 1]] * 4 + [[1, 1]])
    config = ECGMambaConfig(id2label={0: "A", 1: "B"})
    mean, per_record_labels = evaluation.record_predictions(logits, labels, record_index, config)
    np.testing.assert_allclose(mean.probabilities, [[0.5, 0.75], [0.5, (3 * 0.5 + 0.9) / 4], [0.75, 0.5]])
    assert per_record_labels.tolist() == [[1, 0], [0, 1], [1, 1]]
    config.window_aggregation = "max"  # what `--window_aggregation max` writes into the model's config
    maximum, _ = evaluation.record_predictions(logits, labels, record_index, config)
    np.testing.assert_allclose(maximum.probabilities[1], [0.5, 0.9])
    with pytest.raises(ValueError, match="evaluation set changed"):
        evaluation.record_predictions(logits[:5], labels[:5], record_index, config)
    diverged = logits.copy()
    diverged[[2, 3], 1] = np.nan  # a diverged model: say so, not "predictions must be probabilities"
    with pytest.raises(
        evaluation.TrainingDivergedError, match="NaN or infinite for 2 of 12 windows: training diverged"
    ):
        evaluation.record_predictions(diverged, labels, record_index, config)
