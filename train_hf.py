"""Train ECGMamba on PTB-XL, CPSC2018 or the PhysioNet/CinC 2021 data with the Hugging Face Trainer, through Accelerate.

    accelerate launch train_hf.py --output_dir outputs/ecgmamba-ptbxl                      # the paper's setup
    accelerate launch train_hf.py --dataset cpsc2018 --data_dir path/to/cpsc2018 --output_dir outputs/cpsc
    accelerate launch --multi_gpu --num_processes 2 train_hf.py --use_cpu ...             # two gloo ranks on a CPU
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml train_hf.py --bf16 ...
    python train_hf.py --help                                                              # every option

Defaults: PTB-XL superdiagnostic, 100 Hz, 10 s windows, AdamW (lr 1e-3, warmup + cosine, no weight decay on `A_log`,
`D`, biases and norms), 30 epochs, batch 32; the best epoch by validation macro ROC-AUC is kept. Every ECGMambaConfig
argument is an option (`--hidden_size 64 --num_hidden_layers 4 ...`); `--model_name_or_path` fine-tunes a checkpoint.

Training crops a random window from each record; evaluation slides windows and averages per record. After training,
per-class thresholds are chosen on validation (stored as `config.thresholds`) and the test split is evaluated once,
with a bootstrap interval for the macro ROC-AUC. `output_dir` then holds a checkpoint that loads anywhere with
`AutoModelForSequenceClassification.from_pretrained(output_dir, trust_remote_code=True)`: config.json (auto_map, the
thresholds and the window aggregation), model.safetensors, the model's .py files, preprocessor_config.json (with the
evaluation stride), README.md (model card with the results), test_results.json, test_probabilities.npz (per-record
test probabilities and labels) and training_curves.png. The same holds for the baselines (`--model_type`).

The work is done by the `ecgmamba_training` package; this file holds the options and `main`.
"""

import dataclasses
import inspect
import logging
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import transformers
from transformers import AutoModelForSequenceClassification, HfArgumentParser, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from dataset_scripts import class_names as dataset_class_names
from ecgmamba_training.data import (
    SOURCES,
    SetupError,
    dataset_options,
    ensure_data,
    load_splits,
    metric_options,
    resolve_data_dir,
    resolve_task,
)
from ecgmamba_training.evaluation import RecordMetrics, final_evaluation, load_metric
from ecgmamba_training.hub import check_hub_access
from ecgmamba_training.models import MODEL_TYPES, build_feature_extractor, build_model
from ecgmamba_training.reporting import (
    CURVES_FILE,
    hyperparameter_table,
    plot_training_curves,
    print_summary,
    write_model_card,
)
from ecgmamba_training.trainer import CheckpointFilesCallback, ECGTrainer, save_loading_files
from ecgmamba_training.windows import CropEpochCallback, IndexedRecords, WindowCollator, sliding_windows
from modeling_ecgmamba import ECGMambaConfig, ECGMambaFeatureExtractor
from modeling_ecgmamba.configuration_ecgmamba import WINDOW_AGGREGATIONS

logger = logging.getLogger("train_hf")

# Set from the data arguments (or fixed by the data, or by training itself) rather than overridable on their own.
_NOT_OVERRIDABLE = {
    "self", "kwargs", "id2label", "num_leads", "sampling_rate", "window_seconds", "problem_type", "thresholds",
    "window_aggregation",
}  # fmt: skip


def _override_fields() -> list[tuple]:
    """One optional option per ECGMambaConfig argument; None keeps the config's default."""
    fields = []
    for name, parameter in inspect.signature(ECGMambaConfig.__init__).parameters.items():
        if name in _NOT_OVERRIDABLE:
            continue
        default = parameter.default
        kind = {bool: bool, int: int, float: float}.get(type(default), str)
        if isinstance(default, (list, tuple)):
            kind = list[int]
        help_text = f"ECGMambaConfig.{name} (default {list(default) if isinstance(default, tuple) else default!r})."
        fields.append((name, kind | None, field(default=None, metadata={"help": help_text})))
    return fields


ECGMambaConfigOverrides = dataclasses.make_dataclass("ECGMambaConfigOverrides", _override_fields())


@dataclass
class ModelArguments:
    model_type: str = field(
        default="ecgmamba",
        metadata={
            "help": "Architecture: ecgmamba, or a baseline it is compared with (transformer, xresnet1d101).",
            "choices": tuple(MODEL_TYPES),
        },
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Fine-tune this checkpoint (a folder or Hub id) instead of training from scratch."},
    )


@dataclass
class DataArguments:
    dataset: str = field(default="ptbxl", metadata={"help": "Dataset to train on.", "choices": tuple(SOURCES)})
    task: str | None = field(
        default=None,
        metadata={
            "help": "PTB-XL label task: superdiagnostic (default), subdiagnostic, diagnostic, form, rhythm, all."
        },
    )
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "The dataset's folder, or a folder holding ptb-xl/, cpsc2018/ or cinc2021/ (for cinc2021: the "
            "Challenge's training/ folder, or any folder with its records below). "
            "Default: $ECGMAMBA_DATA_DIR/<ptb-xl|cpsc2018|cinc2021>, else ~/.cache/ecgmamba/data/<...>."
        },
    )
    download: bool = field(default=False, metadata={"help": "Fetch missing data from PhysioNet with wfdb."})
    sampling_rate: int = field(default=100, metadata={"help": "Sampling rate (Hz) of the model's inputs."})
    window_seconds: float = field(default=10.0, metadata={"help": "Window length (s) for training and evaluation."})
    eval_stride_seconds: float | None = field(
        default=None,
        metadata={"help": "Stride (s) of the evaluation windows (saved for inference); default half a window."},
    )
    window_aggregation: str = field(
        default="mean",
        metadata={
            "help": "How window probabilities combine per record (saved in the config for inference).",
            "choices": WINDOW_AGGREGATIONS,
        },
    )
    normalize: bool = field(
        default=False,
        metadata={"help": "Standardise each lead with statistics of the training split (stored in the preprocessor)."},
    )
    dataset_cache_dir: str | None = field(default=None, metadata={"help": "Cache of the prepared datasets."})
    rebuild_dataset: bool = field(
        default=False,
        metadata={
            "help": "Prepare the dataset cache again. Not needed after the files change: the cache is keyed on them."
        },
    )
    leave_out_source: str | None = field(
        default=None,
        metadata={
            "help": "cinc2021: a source (e.g. Georgia) whose records form the test split (leave-one-source-out)."
        },
    )
    drop_unscored: bool = field(
        default=False, metadata={"help": "cinc2021: drop the records that carry none of the 26 scored classes."}
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes preparing the data."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training records."})
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N validation and N test records."}
    )
    bootstrap_samples: int = field(
        default=1000, metadata={"help": "Bootstrap resamples for the test macro ROC-AUC interval (0: none)."}
    )


@dataclass
class ECGTrainingArguments(TrainingArguments):
    """TrainingArguments with this project's defaults (the paper's setup) and automatic resumption."""

    output_dir: str = field(default="outputs/ecgmamba", metadata={"help": "Where checkpoints and results go."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak AdamW learning rate."})
    weight_decay: float = field(
        default=0.01, metadata={"help": "AdamW weight decay (not on A_log, D, biases, norms)."}
    )
    num_train_epochs: float = field(default=30.0, metadata={"help": "Training epochs."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Batch size per process for training."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Batch size per process for evaluation."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule after warmup."})
    warmup_steps: float = field(default=0.05, metadata={"help": "Warmup: steps, or a fraction (< 1) of all steps."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate: no, steps, epoch."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to checkpoint: no, steps, epoch, best."})
    logging_steps: float = field(default=10, metadata={"help": "Log the training loss every N steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept (the best is never removed)."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "Keep the epoch with the best metric."})
    metric_for_best_model: str | None = field(default="macro_auc", metadata={"help": "Validation metric to select."})
    ddp_find_unused_parameters: bool | None = field(default=False, metadata={"help": "Every parameter is used."})
    auto_resume: bool = field(
        default=False, metadata={"help": "Resume from the last checkpoint in output_dir, if there is one."}
    )

    def __post_init__(self):
        if getattr(self.eval_strategy, "value", self.eval_strategy) == "no":
            self.load_best_model_at_end = False  # without evaluations there is no best epoch to keep
        super().__post_init__()


def parse_args(argv=None):
    parser = HfArgumentParser((ModelArguments, ECGMambaConfigOverrides, DataArguments, ECGTrainingArguments))
    if argv is None and len(sys.argv) == 2 and sys.argv[1].endswith((".json", ".yaml", ".yml")):
        reader = parser.parse_json_file if sys.argv[1].endswith(".json") else parser.parse_yaml_file
        return reader(os.path.abspath(sys.argv[1]))
    return parser.parse_args_into_dataclasses(args=argv)


def make_model(model_args, overrides: dict, data_args, class_names: list[str]):
    """The model to train: a checkpoint to fine-tune, or a new `--model_type`; either way its config carries the data
    settings and the window aggregation that inference will reuse."""
    id2label = dict(enumerate(class_names))
    data_settings = {
        "sampling_rate": data_args.sampling_rate,
        "window_seconds": data_args.window_seconds,
        "window_aggregation": data_args.window_aggregation,
    }
    if model_args.model_name_or_path:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_args.model_name_or_path,
            trust_remote_code=True,
            num_labels=len(class_names),
            id2label=id2label,
            label2id={name: i for i, name in id2label.items()},
            ignore_mismatched_sizes=True,  # a new label set gets a new head
            **overrides,
        )
        for name, value in data_settings.items():
            if getattr(model.config, name, None) not in (None, value):
                logger.warning("%s: checkpoint has %s, this run uses %s", name, getattr(model.config, name), value)
            setattr(model.config, name, value)
        model.config.thresholds = None  # chosen again on this run's validation split
        return model
    config_class, _ = MODEL_TYPES[model_args.model_type]
    accepted = set(inspect.signature(config_class.__init__).parameters)
    foreign = sorted(set(overrides) - accepted)
    if foreign:
        options = ", ".join(f"--{name}" for name in foreign)
        raise SetupError(
            f"{options} do(es) not apply to --model_type {model_args.model_type}: drop it or pick ecgmamba."
        )
    return build_model(model_args.model_type, id2label=id2label, **data_settings, **overrides)


def find_checkpoint(training_args) -> str | None:
    if training_args.resume_from_checkpoint:
        return training_args.resume_from_checkpoint
    last = get_last_checkpoint(training_args.output_dir) if os.path.isdir(training_args.output_dir) else None
    if last and not training_args.auto_resume:
        logger.warning(
            "%s holds %s but training starts from scratch: pass --auto_resume to continue it.",
            training_args.output_dir,
            os.path.basename(last),
        )
        return None
    return last


def setup_logging(training_args):
    log_level = training_args.get_process_log_level()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logger.setLevel(logging.INFO if training_args.should_log else log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    logger.info("Process %d/%d on %s", training_args.process_index, training_args.world_size, training_args.device)


def prepare_data(data_args, training_args, task: str, window: int, stride: int):
    """Records per split (train records whole; validation and test as sliding windows with their record index)."""
    data_dir = resolve_data_dir(data_args.dataset, data_args.data_dir)
    workers = data_args.preprocessing_num_workers
    # The main process downloads and prepares the cache; the others then read it.
    with training_args.main_process_first(desc="dataset preparation"):
        ensure_data(data_args.dataset, data_dir, data_args.download, data_args.sampling_rate)
        raw = load_splits(
            data_args.dataset,
            data_dir,
            task,
            data_args.sampling_rate,
            data_args.dataset_cache_dir,
            workers,
            rebuild=data_args.rebuild_dataset and training_args.local_process_index == 0,  # the others then read it
            **dataset_options(data_args),
        )
        limits = {"train": data_args.max_train_samples, "validation": data_args.max_eval_samples}
        limits["test"] = data_args.max_eval_samples
        for split, limit in limits.items():
            if limit:
                raw[split] = raw[split].select(range(min(limit, len(raw[split]))))
        windows = {split: sliding_windows(raw[split], window, stride, workers) for split in ("validation", "test")}
    logger.info(
        "%s %s from %s: %s records, classes %s",
        SOURCES[data_args.dataset].name,
        task,
        data_dir,
        {split: len(records) for split, records in raw.items()},
        dataset_class_names(raw),
    )
    return raw, windows


def main(argv=None) -> dict:
    model_args, config_overrides, data_args, training_args = parse_args(argv)
    overrides = {k: v for k, v in dataclasses.asdict(config_overrides).items() if v is not None}
    if overrides.get("time_step_rank", "auto") != "auto":
        overrides["time_step_rank"] = int(overrides["time_step_rank"])
    setup_logging(training_args)
    check_hub_access(training_args)  # before anything slow

    task = resolve_task(data_args.dataset, data_args.task)
    # The evaluation windows are the feature extractor's: the same window, stride and layout as at inference.
    layout = ECGMambaFeatureExtractor(
        sampling_rate=data_args.sampling_rate,
        window_seconds=data_args.window_seconds,
        window_stride_seconds=data_args.eval_stride_seconds,
    )
    window, stride = layout.window_samples, layout.window_stride_samples
    raw, windows = prepare_data(data_args, training_args, task, window, stride)
    with training_args.main_process_first(desc="metric module"):
        metric = load_metric()
    class_names = dataset_class_names(raw)
    extra_metrics = metric_options(data_args.dataset, class_names)  # the Challenge metric for cinc2021
    split_sizes = {split: len(records) for split, records in raw.items()}

    set_seed(training_args.seed)  # the model's initialisation too
    model = make_model(model_args, overrides, data_args, class_names)
    train_signals = None
    if data_args.normalize:
        batches = (batch["input_values"] for batch in raw["train"].with_format("numpy").iter(batch_size=256))
        train_signals = (record for batch in batches for record in batch)
    feature_extractor = build_feature_extractor(model.config, data_args.eval_stride_seconds, train_signals)
    num_parameters = sum(p.numel() for p in model.parameters())
    logger.info("%s: %s parameters", type(model).__name__, f"{num_parameters:,}")
    # One collator for both: evaluation windows are never longer than `window`, so only training records get cropped.
    collator = WindowCollator(
        window=window,
        seed=training_args.seed,
        mean=feature_extractor.mean if feature_extractor.do_normalize else None,
        std=feature_extractor.std if feature_extractor.do_normalize else None,
        use_attention_mask="attention_mask" in inspect.signature(model.forward).parameters,
    )

    output_dir = Path(training_args.output_dir)
    launcher = (
        ["--multi_gpu", "--num_processes", str(training_args.world_size)] if training_args.world_size > 1 else []
    )
    command = ["accelerate", "launch", *launcher, "train_hf.py", *(argv if argv is not None else sys.argv[1:])]
    card_context = dict(
        repo_id=training_args.hub_model_id or str(output_dir),
        model_type=model_args.model_type,
        class_names=class_names,
        sampling_rate=data_args.sampling_rate,
        window_seconds=data_args.window_seconds,
        eval_stride_seconds=stride / data_args.sampling_rate,
        aggregation=data_args.window_aggregation,
        num_parameters=num_parameters,
        split_sizes=split_sizes,
        num_processes=training_args.world_size,
        device=str(training_args.device),
        command=" ".join(shlex.quote(part) for part in command),
        hyperparameters=hyperparameter_table(training_args, data_args, training_args.world_size),
        base_model=model_args.model_name_or_path,
        curves=None,
    )
    results = {}  # filled after training; the model card shows them once there

    def render_card():
        return write_model_card(
            output_dir,
            model_name=(training_args.hub_model_id or output_dir.name).split("/")[-1],
            dataset=data_args.dataset,
            task=task,
            context=card_context,
            test=results.get("test"),
            validation=results.get("validation"),
        )

    trainer = ECGTrainer(
        model=model,
        args=training_args,
        train_dataset=IndexedRecords(raw["train"]),
        eval_dataset=windows["validation"][0].with_format("numpy"),
        data_collator=collator,
        processing_class=feature_extractor,
        compute_metrics=RecordMetrics(metric, windows["validation"][1], model.config, extra_metrics),
        callbacks=[CheckpointFilesCallback(), CropEpochCallback(collator)],
        write_model_card=render_card,
    )
    if training_args.should_save:
        # Everything but the weights, before the first save: each revision pushed during training loads.
        save_loading_files(model, feature_extractor, output_dir)
        render_card()

    start = time.time()
    train_result = trainer.train(resume_from_checkpoint=find_checkpoint(training_args))
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()

    results.update(final_evaluation(trainer, metric, windows, class_names, data_args.bootstrap_samples, extra_metrics))
    if training_args.should_save:
        card_context["curves"] = plot_training_curves(trainer.state.log_history, output_dir / CURVES_FILE).name
    if training_args.push_to_hub:  # saves the model (config.json now with the thresholds), renders the card, uploads
        trainer.push_to_hub(commit_message="End of training")
    else:
        trainer.save_model()
        if training_args.should_save:
            render_card()
    if trainer.is_world_process_zero():
        print_summary(model, results, class_names, output_dir, time.time() - start, split_sizes, task, data_args)
    return results


if __name__ == "__main__":
    try:
        main()
    except SetupError as err:
        sys.exit(f"train_hf.py: error: {err}")
