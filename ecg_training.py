"""The pieces of `train_hf.py` that are not argument parsing: data on disk, windows, record-level metrics, checkpoint
files, Hub checks, training curves and the model card.

Nothing here is needed to *use* a trained model: a checkpoint loads with `trust_remote_code=True` alone.
"""

import logging
import os
import posixpath
from dataclasses import dataclass
from multiprocessing.pool import ThreadPool
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import Trainer, TrainerCallback

from dataset_scripts import load_cpsc2018, load_ptbxl
from dataset_scripts.common import signal_feature
from modeling_ecgmamba.feature_extraction_ecgmamba import _split_windows  # windows exactly as at inference

logger = logging.getLogger("train_hf")

REPO_ROOT = Path(__file__).resolve().parent
METRIC_PATH = REPO_ROOT / "metrics" / "ecg_multilabel"
MODEL_CARD_TEMPLATE = REPO_ROOT / "model_card.md"
DEFAULT_DATA_ROOT = "~/.cache/ecgmamba/data"
CURVES_FILE = "training_curves.png"
# Metrics logged at every evaluation; per-class AUCs are added as `auc_<class>`.
SCALAR_METRICS = ("macro_auc", "macro_f1", "sample_f1", "accuracy", "fmax")


class SetupError(RuntimeError):
    """Something to fix before training can start (data, Hub access). The message says what and how."""


class TrainingDivergedError(RuntimeError):
    """The model's outputs became NaN: the optimisation diverged, and no metric or checkpoint of it means anything."""


# ---------------------------------------------------------------------------------------------------------------
# Data on disk
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSource:
    name: str  # human-readable
    folder: str  # its folder below ECGMAMBA_DATA_DIR
    physionet: str  # PhysioNet database directory (with version) that --download fetches
    url: str
    license: str


SOURCES = {
    "ptbxl": DatasetSource(
        "PTB-XL", "ptb-xl", "ptb-xl/1.0.3", "https://physionet.org/content/ptb-xl/1.0.3/", "CC BY 4.0"
    ),
    "cpsc2018": DatasetSource(
        "CPSC2018",
        "cpsc2018",
        "challenge-2020/1.0.2",
        "https://physionet.org/content/challenge-2020/1.0.2/training/cpsc_2018/",
        "CC BY 4.0 (PhysioNet/CinC Challenge 2020 redistribution)",
    ),
}


def resolve_data_dir(dataset: str, data_dir: str | None) -> Path:
    """The dataset's folder: `data_dir` itself, or `data_dir/<ptb-xl|cpsc2018>` when it holds the dataset folders;
    without `data_dir`, `$ECGMAMBA_DATA_DIR/<folder>` (default root `~/.cache/ecgmamba/data`)."""
    source = SOURCES[dataset]
    if data_dir:
        path = Path(data_dir).expanduser()
        nested = path / source.folder
        return nested if nested.is_dir() else path
    return Path(os.environ.get("ECGMAMBA_DATA_DIR") or DEFAULT_DATA_ROOT).expanduser() / source.folder


def has_data(dataset: str, path: Path) -> bool:
    if dataset == "ptbxl":
        return (path / "ptbxl_database.csv").is_file()
    return path.is_dir() and any(p.suffix in (".hea", ".mat") for p in path.rglob("*"))


def ensure_data(dataset: str, path: Path, download: bool, sampling_rate: int) -> Path:
    """Return `path` if it holds the dataset; with `download`, fetch what is missing first; else a SetupError that
    says where to put the data."""
    source = SOURCES[dataset]
    if download and (dataset == "ptbxl" or not has_data(dataset, path)):
        try:
            (download_ptbxl if dataset == "ptbxl" else download_cpsc2018)(path, sampling_rate)
        except Exception as err:  # no network, PhysioNet down, disk full: say so before anything else happens
            raise SetupError(
                f"Could not download {source.name} from PhysioNet into {path} ({type(err).__name__}: {err}). "
                f"Download it yourself from {source.url} into that folder (or pass --data_dir), then run again."
            ) from err
    if not has_data(dataset, path):
        raise SetupError(
            f"{source.name} not found in {path}. Put your copy there (the PhysioNet layout, from {source.url}), "
            f"point --data_dir (or the ECGMAMBA_DATA_DIR environment variable, the folder holding "
            f"'{source.folder}/') at it, or add --download to fetch it from PhysioNet with wfdb."
        )
    return path


def _fetch(database: str, target: Path, files: list[str], desc: str):
    """Download PhysioNet files (relative paths) with wfdb's downloader, two connections, one progress bar."""
    from tqdm.auto import tqdm
    from wfdb.io import download as wfdb_download

    inputs = [(posixpath.basename(f), posixpath.dirname(f), database, str(target), True, False) for f in files]
    if not inputs:
        return
    wfdb_download.make_local_dirs(str(target), inputs, True)
    with ThreadPool(2) as pool:
        for _ in tqdm(pool.imap_unordered(wfdb_download.dl_pn_file, inputs), total=len(inputs), desc=desc):
            pass


def download_ptbxl(path: Path, sampling_rate: int):
    """The metadata tables and the records at `sampling_rate` that are not in `path` yet."""
    import pandas as pd

    database = SOURCES["ptbxl"].physionet
    tables = ["ptbxl_database.csv", "scp_statements.csv", "LICENSE.txt"]
    _fetch(database, path, [f for f in tables if not (path / f).is_file()], "PTB-XL tables")
    column = "filename_lr" if sampling_rate == 100 else "filename_hr"
    names = pd.read_csv(path / "ptbxl_database.csv", usecols=[column])[column]
    files = [f"{name}.{ext}" for name in names for ext in ("hea", "dat")]
    _fetch(database, path, [f for f in files if not (path / f).is_file()], f"PTB-XL records ({column})")


def download_cpsc2018(path: Path, sampling_rate: int):
    """The CPSC2018 part of the PhysioNet/CinC Challenge 2020 (WFDB headers with SNOMED codes + .mat signals)."""
    from wfdb.io import download as wfdb_download

    database = SOURCES["cpsc2018"].physionet
    files = []
    for group in range(1, 8):
        folder = f"training/cpsc_2018/g{group}"
        records = wfdb_download.get_record_list(f"{database}/{folder}")
        files += [f"{folder}/{record}.{ext}" for record in records for ext in ("hea", "mat")]
    _fetch(database, path, [f for f in files if not (path / f).is_file()], "CPSC2018 records")


def resolve_task(dataset: str, task: str | None) -> str:
    """PTB-XL's label task (default superdiagnostic); CPSC2018 has one label set, `default`."""
    if dataset == "ptbxl":
        return task or "superdiagnostic"
    if task not in (None, "default"):
        raise SetupError(f"CPSC2018 has one label set (nine classes); --task {task!r} applies to PTB-XL only.")
    return "default"


def load_splits(dataset: str, data_dir: Path, task: str, sampling_rate: int, cache_dir, num_proc):
    if dataset == "ptbxl":
        return load_ptbxl(data_dir, task=task, sampling_rate=sampling_rate, cache_dir=cache_dir, num_proc=num_proc)
    return load_cpsc2018(data_dir, sampling_rate=sampling_rate, cache_dir=cache_dir, num_proc=num_proc)


# ---------------------------------------------------------------------------------------------------------------
# Windows: random crops for training, sliding windows for evaluation
# ---------------------------------------------------------------------------------------------------------------


def _to_windows(batch, indices, window: int, stride: int):
    windows, owner = _split_windows([np.asarray(x, dtype=np.float32) for x in batch["input_values"]], window, stride)
    return {
        "input_values": windows,
        "labels": [batch["labels"][i] for i in owner],
        "record_index": [indices[i] for i in owner],
    }


def sliding_windows(dataset: datasets.Dataset, window: int, stride: int, num_proc=None):
    """Split each record into windows of `window` samples every `stride` (the last aligned to the record's end).

    Returns the windows (`input_values`, `labels`) and, per window, the index of its record. Records of exactly one
    window (PTB-XL at its native 10 s) are used as they are.
    """
    dataset = dataset.select_columns(["input_values", "labels"])
    if dataset.features["input_values"].shape[0] == window:
        return dataset, np.arange(len(dataset))
    features = datasets.Features(
        {
            "input_values": signal_feature(None),
            "labels": dataset.features["labels"],
            "record_index": datasets.Value("int64"),
        }
    )
    windows = dataset.map(
        _to_windows,
        batched=True,
        batch_size=64,
        with_indices=True,
        fn_kwargs={"window": window, "stride": stride},
        remove_columns=dataset.column_names,
        features=features,
        num_proc=num_proc,
        desc=f"Sliding {window}-sample windows",
    )
    record_index = np.asarray(windows["record_index"])
    return windows.select_columns(["input_values", "labels"]), record_index


class IndexedRecords(torch.utils.data.Dataset):
    """The training split, each record with its `index`: its random crop then depends on nothing else."""

    def __init__(self, dataset: datasets.Dataset):
        self.dataset = dataset.select_columns(["input_values", "labels"]).with_format("numpy")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return {**self.dataset[index], "index": index}


@dataclass
class WindowCollator:
    """Batches records into `(batch, window, leads)`.

    A record longer than the window is cropped: at a random start drawn from `(seed, epoch, index)` when the example
    carries its `index` (training: the same crop in any process or worker and after a resume, a new one every
    epoch), else at its start. Shorter records are zero-padded and get an `attention_mask`. With `mean`/`std` (the
    feature extractor's, `--normalize`) each lead is standardised as the feature extractor does at inference.
    """

    window: int
    seed: int = 0
    epoch: int = 0  # set by CropEpochCallback at every epoch's start
    mean: list[float] | None = None
    std: list[float] | None = None
    use_attention_mask: bool = True

    def crop_start(self, length: int, index) -> int:
        if index is None:
            return 0
        return int(np.random.default_rng([self.seed, self.epoch, int(index)]).integers(length - self.window + 1))

    def __call__(self, examples: list[dict]) -> dict:
        first = np.asarray(examples[0]["input_values"])
        values = np.zeros((len(examples), self.window, first.shape[-1]), dtype=np.float32)
        mask = np.zeros((len(examples), self.window), dtype=np.int64)
        for i, example in enumerate(examples):
            signal = np.asarray(example["input_values"], dtype=np.float32)
            if len(signal) > self.window:
                start = self.crop_start(len(signal), example.get("index"))
                signal = signal[start : start + self.window]
            values[i, : len(signal)] = signal
            mask[i, : len(signal)] = 1
        if self.mean is not None:
            values = (values - np.float32(self.mean)) / np.float32(self.std) * mask[..., None]
        batch = {
            "input_values": torch.from_numpy(values),
            "labels": torch.tensor(np.stack([np.asarray(e["labels"], dtype=np.float32) for e in examples])),
        }
        if self.use_attention_mask and not mask.all():
            batch["attention_mask"] = torch.from_numpy(mask)
        return batch


class CropEpochCallback(TrainerCallback):
    """Tells the collator which epoch starts (before the Trainer creates the epoch's data iterator and workers)."""

    def __init__(self, collator: WindowCollator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.epoch = int(state.epoch + 1e-6)  # also right when a run resumes in the middle of an epoch


# ---------------------------------------------------------------------------------------------------------------
# Record-level metrics
# ---------------------------------------------------------------------------------------------------------------


def record_probabilities(logits, labels, record_index, aggregation: str = "mean"):
    """Window logits -> per-record probabilities (mean or max of the windows' sigmoids) and per-record labels."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    if len(logits) != len(record_index):
        raise ValueError(f"{len(logits)} predictions for {len(record_index)} windows: the evaluation set changed.")
    nan_windows = int(np.isnan(logits).any(axis=1).sum())
    if nan_windows:
        raise TrainingDivergedError(
            f"The model's outputs are NaN for {nan_windows} of {len(logits)} windows: training diverged (look for a NaN "
            "loss or grad_norm in the log). Lower --learning_rate, lengthen --warmup_steps, or keep "
            "--max_grad_norm and the LayerNorms on."
        )
    probabilities = 1.0 / (1.0 + np.exp(-logits))
    _, first, inverse = np.unique(record_index, return_index=True, return_inverse=True)
    if aggregation == "max":
        per_record = np.full((len(first), logits.shape[1]), -np.inf)
        np.maximum.at(per_record, inverse, probabilities)
    else:
        per_record = np.zeros((len(first), logits.shape[1]))
        np.add.at(per_record, inverse, probabilities)
        per_record /= np.bincount(inverse)[:, None]
    return per_record, labels[first]


def scalar_metrics(results: dict, class_names) -> dict:
    """The loggable part of the metric module's results: headline scalars plus `auc_<class>`."""
    flat = {name: results[name] for name in SCALAR_METRICS}
    for name in ("macro_auc_ci_low", "macro_auc_ci_high"):
        if name in results:
            flat[name] = results[name]
    for name, auc in zip(class_names, results["per_class_auc"]):
        flat[f"auc_{name}"] = float("nan") if auc is None else auc
    return flat


class RecordMetrics:
    """`compute_metrics` for the Trainer's evaluations of the validation split: aggregates windows per record and
    scores with the `ecg_multilabel` metric, F1 at thresholds chosen on that same split (so optimistic; the test
    split is scored after training with the validation thresholds)."""

    def __init__(self, metric, record_index, class_names, aggregation: str = "mean"):
        self.metric = metric
        self.record_index = record_index
        self.class_names = class_names
        self.aggregation = aggregation

    def __call__(self, eval_prediction) -> dict:
        probabilities, labels = record_probabilities(
            eval_prediction.predictions, eval_prediction.label_ids, self.record_index, self.aggregation
        )
        results = self.metric.compute(predictions=probabilities, references=labels, find_thresholds=True)
        return scalar_metrics(results, self.class_names)


# ---------------------------------------------------------------------------------------------------------------
# Trainer, checkpoints and the Hub
# ---------------------------------------------------------------------------------------------------------------


class ECGTrainer(Trainer):
    """Trainer with the model's own no-weight-decay list and the repository's model card."""

    def __init__(self, *args, write_model_card=None, **kwargs):
        self.write_model_card = write_model_card
        super().__init__(*args, **kwargs)

    def get_decay_parameter_names(self, model) -> list[str]:
        # ECGMamba: no decay on A_log, D, biases and norms (BatchNorm too, which the default misses).
        no_decay = getattr(model, "no_weight_decay_parameter_names", None)
        if no_decay is None:
            return super().get_decay_parameter_names(model)
        excluded = set(no_decay())
        return [name for name, _ in model.named_parameters() if name not in excluded]

    def create_model_card(self, **kwargs):
        # Called by push_to_hub: render model_card.md with the measured results instead of the generic card.
        if self.write_model_card is None:
            return super().create_model_card(**kwargs)
        if self.is_world_process_zero():
            self.write_model_card()


def add_pipeline_helper(folder, config=None):
    """Add the custom pipeline to a saved checkpoint when the package provides one (the checkpoint loads without).
    With the model's `config`, the `custom_pipelines` entry is set in memory too, so every later save keeps it."""
    try:
        from modeling_ecgmamba.pipeline_ecgmamba import add_pipeline_to_checkpoint
    except ImportError:
        return
    try:
        add_pipeline_to_checkpoint(str(folder), config=config)
    except Exception as err:  # optional: a broken helper must not stop a training run
        logger.warning("Could not add the ECGMamba pipeline to %s (%s: %s)", folder, type(err).__name__, err)


def save_loading_files(model, feature_extractor, folder):
    """Model code, preprocessor and pipeline helper: what a folder needs, besides config and weights, to load with
    `trust_remote_code=True`. Written into output_dir before training, so that every pushed revision loads."""
    from transformers.dynamic_module_utils import custom_object_save

    os.makedirs(folder, exist_ok=True)
    if getattr(model, "_auto_class", None) is not None:
        custom_object_save(model, folder)
    feature_extractor.save_pretrained(folder)
    # config.json is written later (checkpoints, final save): the entry must live in the model's config.
    add_pipeline_helper(folder, config=model.config)


class CheckpointFilesCallback(TrainerCallback):
    """Completes every `checkpoint-N` folder (the Trainer already saves the model code and the preprocessor)."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            add_pipeline_helper(Path(args.output_dir) / f"checkpoint-{state.global_step}")


def check_hub_access(training_args):
    """With --push_to_hub: fail now, before data preparation and training, if there is no token or no Hub."""
    if not training_args.push_to_hub:
        return
    from huggingface_hub import HfApi, get_token

    token = training_args.hub_token or get_token()
    if not token:
        raise SetupError(
            "--push_to_hub needs a Hugging Face token with write access: run `hf auth login`, set HF_TOKEN or pass "
            "--hub_token. Nothing was trained."
        )
    try:
        user = HfApi().whoami(token=token)
    except Exception as err:  # offline mode, no network, invalid token
        raise SetupError(
            f"--push_to_hub: cannot reach the Hugging Face Hub with your token ({type(err).__name__}: {err}). "
            "Check the network, HF_HUB_OFFLINE and the token (`hf auth whoami`), or drop --push_to_hub. "
            "Nothing was trained."
        ) from err
    logger.info(
        "Will publish to the Hub as %s: %s", user.get("name", "?"), training_args.hub_model_id or "(output_dir name)"
    )


# ---------------------------------------------------------------------------------------------------------------
# Training curves and model card
# ---------------------------------------------------------------------------------------------------------------


def plot_training_curves(log_history: list[dict], path, metric: str = "eval_macro_auc") -> Path:
    """Training and validation loss against steps, and the validation metric, as one PNG."""
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
    loss_ax.set(xlabel="step", ylabel="BCE loss", title="Loss")
    loss_ax.legend()
    metric_ax.set(xlabel="step", ylabel=metric.removeprefix("eval_"), title="Validation (per record)")
    for ax in (loss_ax, metric_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


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
