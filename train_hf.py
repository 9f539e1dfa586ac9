"""Train ECGMamba on PTB-XL, CPSC2018 or the PhysioNet/CinC 2021 data with the Hugging Face Trainer, through Accelerate.

    python train_hf.py --output_dir outputs/ecgmamba-ptbxl                                 # the paper's setup
    python train_hf.py --dataset cpsc2018 --data_dir path/to/cpsc2018 --output_dir outputs/cpsc
    accelerate launch --config_file configs/accelerate/one_process.yaml train_hf.py ...   # the same, via Accelerate
    accelerate launch --multi_gpu --num_processes 2 train_hf.py --use_cpu ...             # two gloo ranks on a CPU
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml train_hf.py --bf16 ...
    python train_hf.py --help                                                              # the options
    python train_hf.py --help-all                                                          # and every Trainer one

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

Rerunning a command into an `output_dir` that holds a checkpoint of the same run continues it from its newest
complete checkpoint (an interrupted save is skipped); other arguments are refused with the differences listed, unless
`--resume_with_changed_args` (continue anyway) or `--overwrite_output_dir` (start over) says what to do.

The work is done by the `ecgmamba_training` package; this file holds the options and `main`.
"""

import argparse
import dataclasses
import inspect
import json
import logging
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import transformers
from transformers import AutoModelForSequenceClassification, HfArgumentParser, TrainingArguments, set_seed

from dataset_scripts import class_names as dataset_class_names
from ecgmamba_training.checkpoints import choose_checkpoint, write_run_arguments
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
    kept_checkpoint,
    plot_training_curves,
    print_run_settings,
    print_summary,
    write_model_card,
)
from ecgmamba_training.trainer import ECGTrainer, save_loading_files
from ecgmamba_training.windows import CropEpochCallback, IndexedRecords, WindowCollator, sliding_windows
from modeling_ecgmamba import ECGMambaConfig, ECGMambaFeatureExtractor
from modeling_ecgmamba.configuration_ecgmamba import WINDOW_AGGREGATIONS

logger = logging.getLogger("train_hf")

# Set from the data arguments (or fixed by the data, or by training itself) rather than overridable on their own.
_NOT_OVERRIDABLE = {
    "self", "kwargs", "id2label", "num_leads", "sampling_rate", "window_seconds", "problem_type", "thresholds",
    "window_aggregation",
}  # fmt: skip


def _config_documentation(config_class) -> dict[str, str]:
    """The first sentence of each argument's description in the config's docstring (which a test keeps complete)."""
    entries = re.findall(r"^ {8}(\w+) \(.*?\):\n((?: {12}.*\n?)+)", config_class.__doc__, flags=re.M)
    return {name: " ".join(text.split()).split(". ")[0].rstrip(".") + "." for name, text in entries}


def _override_fields() -> list[tuple]:
    """One optional option per ECGMambaConfig argument; None keeps the config's default."""
    documentation = _config_documentation(ECGMambaConfig)
    fields = []
    for name, parameter in inspect.signature(ECGMambaConfig.__init__).parameters.items():
        if name in _NOT_OVERRIDABLE:
            continue
        default = parameter.default
        kind = {bool: bool, int: int, float: float}.get(type(default), str)
        if isinstance(default, (list, tuple)):
            kind = list[int]
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        help_text = f"{documentation.get(name, '')} (default: {shown})".lstrip()
        fields.append((name, kind | None, field(default=None, metadata={"help": help_text})))
    return fields


ECGMambaConfigOverrides = dataclasses.make_dataclass("ECGMambaConfigOverrides", _override_fields())
ECGMambaConfigOverrides._argument_group_name = "ECGMamba architecture (ECGMambaConfig; the defaults are the paper's)"


@dataclass
class ModelArguments:
    _argument_group_name = "model"

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
    _argument_group_name = "data"

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
    """TrainingArguments with this project's defaults (the paper's setup) and the resume options."""

    _argument_group_name = "training (the common options; --help-all lists every TrainingArguments option)"

    output_dir: str = field(default="outputs/ecgmamba", metadata={"help": "Where checkpoints and results go."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Start over: delete the checkpoints and results of an earlier run in output_dir first."},
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={
            "help": "Continue from this checkpoint folder. Not needed to continue the run in output_dir: rerunning "
            "the same command does that."
        },
    )
    resume_with_changed_args: bool = field(
        default=False,
        metadata={"help": "Continue a checkpoint even though this command's arguments differ from its run's."},
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak AdamW learning rate."})
    weight_decay: float = field(
        default=0.01, metadata={"help": "AdamW weight decay (not on A_log, D, biases, norms)."}
    )
    num_train_epochs: float = field(default=30.0, metadata={"help": "Training epochs."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Batch size per process for training."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Batch size per process for evaluation."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule after warmup."})
    warmup_steps: float = field(default=0.05, metadata={"help": "Warmup: steps, or a fraction (< 1) of all steps."})
    eval_strategy: str = field(
        default="epoch", metadata={"help": "When to evaluate: no, steps, epoch (--eval_steps alone means steps)."}
    )
    save_strategy: str = field(
        default="epoch",
        metadata={"help": "When to checkpoint: no, steps, epoch, best (--save_steps alone means steps)."},
    )
    logging_steps: float = field(default=10, metadata={"help": "Log the training loss every N steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept (the best is never removed)."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "Keep the epoch with the best metric."})
    metric_for_best_model: str | None = field(default="macro_auc", metadata={"help": "Validation metric to select."})
    ddp_find_unused_parameters: bool | None = field(default=False, metadata={"help": "Every parameter is used."})

    def __post_init__(self):
        if getattr(self.eval_strategy, "value", self.eval_strategy) == "no":
            self.load_best_model_at_end = False  # without evaluations there is no best epoch to keep
        super().__post_init__()


# The training options `--help` shows; --help-all shows all of TrainingArguments.
COMMON_TRAINING_OPTIONS = {
    "output_dir", "overwrite_output_dir", "resume_from_checkpoint", "resume_with_changed_args", "num_train_epochs",
    "max_steps", "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
    "learning_rate", "weight_decay", "lr_scheduler_type", "warmup_steps", "eval_strategy", "eval_steps",
    "save_strategy", "save_steps", "save_total_limit", "logging_steps", "load_best_model_at_end",
    "metric_for_best_model", "seed", "use_cpu", "bf16", "fp16", "dataloader_num_workers", "disable_tqdm",
    "report_to", "push_to_hub", "hub_model_id", "hub_token",
}  # fmt: skip
ARGUMENT_CLASSES = (ModelArguments, ECGMambaConfigOverrides, DataArguments, ECGTrainingArguments)


# Shorter help than TrainingArguments' own for the training options `--help` shows.
_SHORT_HELP = {
    "max_steps": "Train this many optimizer steps instead of --num_train_epochs (-1: the epochs decide).",
    "gradient_accumulation_steps": "Batches per optimizer step (global batch = per-device batch x processes x this).",
    "bf16": "bfloat16 mixed precision (GPUs that have it).",
    "fp16": "float16 mixed precision.",
    "eval_steps": "Evaluate every N steps (with --eval_strategy steps, which giving it alone implies).",
    "save_steps": "Checkpoint every N steps (with --save_strategy steps, which giving it alone implies).",
    "push_to_hub": "Publish to the Hub at every save and at the end (needs --hub_model_id and a token).",
    "hub_model_id": "Hub repository (user/name) to publish to.",
    "hub_token": "Hub token (default: the one of `hf auth login`).",
    "seed": "Seed of the initialisation, the data order and the random crops.",
    "use_cpu": "Train on the CPU even where a GPU is available.",
    "dataloader_num_workers": "Processes loading training batches (0: the main process).",
    "disable_tqdm": "No progress bars.",
    "report_to": "Where logs also go: none, all, tensorboard, wandb, trackio...",
}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """One default per option (the one its help names, else argparse's; never "(default: None)"), and each option
    under its underscore name only (every option also takes dashes: --hidden-size)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or "default" in text.lower():
            return text
        return super()._get_help_string(action)

    def _format_action_invocation(self, action):
        strings = action.option_strings
        names = [n for n in strings if n == strings[0] or n.replace("-", "_") != strings[0].replace("-", "_")]
        if action.nargs == 0 or not names:
            return ", ".join(names) or super()._format_action_invocation(action)
        return f"{', '.join(names)} {self._format_args(action, self._get_default_metavar_for_optional(action))}"


class _HelpAll(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        build_parser(show_all=True).print_help()
        parser.exit()


def build_parser(show_all: bool = False) -> HfArgumentParser:
    parser = HfArgumentParser(
        ARGUMENT_CLASSES,
        prog="train_hf.py",
        usage="python train_hf.py [options], or: accelerate launch [accelerate options] train_hf.py [options]",
        description="Train ECGMamba (or a baseline it is compared with) on PTB-XL, CPSC2018 or PhysioNet/CinC 2021 with "
        "the Hugging Face Trainer. Rerunning a command into the same --output_dir continues its run. Options take --dashes too.",
        epilog=None
        if show_all
        else "Every other transformers TrainingArguments option (mixed precision, optimizers, distributed training, "
        "the Hub, logging...) is accepted too: `python train_hf.py --help-all` lists them all.",
        formatter_class=_HelpFormatter,
    )
    training = {f.name for f in dataclasses.fields(ECGTrainingArguments)}
    for action in parser._actions:
        if action.option_strings[0].startswith("--no_"):
            action.help = argparse.SUPPRESS  # `--no_x` complements: `--x false` says the same
        elif not show_all and action.dest in training:
            action.help = _SHORT_HELP.get(action.dest, action.help)
            if action.dest not in COMMON_TRAINING_OPTIONS:
                action.help = argparse.SUPPRESS
    parser.add_argument(
        "--help-all",
        action=_HelpAll,
        nargs=0,
        dest=argparse.SUPPRESS,
        default=argparse.SUPPRESS,
        help="Show every option, including all of TrainingArguments, and exit.",
    )
    return parser


def given_options(parser: HfArgumentParser, argv: list[str]) -> set[str]:
    """The options a command line names, whatever their values, as the parser reads them (aliases, abbreviations)."""
    defaults = {action: action.default for action in parser._actions}
    for action in defaults:
        action.default = argparse.SUPPRESS
    try:
        return set(vars(parser.parse_known_args(argv)[0]))
    finally:
        for action, default in defaults.items():
            action.default = default


def apply_step_options(values: dict, given: set[str]) -> list[str]:
    """Make a given `--save_steps`, `--eval_steps` or `--logging_steps` take effect, or refuse it with the reason;
    returns what was changed, to log. With `--load_best_model_at_end` (the default), evaluations and checkpoints go
    together: a step cadence given for one applies to the other unless that one is given too."""

    def value(name):
        return getattr(values.get(name), "value", values.get(name))

    notes = []
    for kind in ("save", "eval", "logging"):
        steps, strategy = f"--{kind}_steps", f"--{kind}_strategy"
        if f"{kind}_steps" not in given or value(f"{kind}_strategy") == "steps":
            continue
        if f"{kind}_strategy" in given:
            raise SetupError(
                f"{steps} {values[f'{kind}_steps']:g} has no effect with {strategy} {value(f'{kind}_strategy')}: "
                f"drop one of them, or pass {strategy} steps."
            )
        values[f"{kind}_strategy"] = "steps"
        notes.append(f"{steps} {values[f'{kind}_steps']:g} given: {strategy} steps")
    evaluates = value("eval_strategy") != "no" and values.get("load_best_model_at_end")
    save, evaluation = value("save_strategy"), value("eval_strategy")
    if evaluates and save == "steps" and evaluation == "epoch" and not {"eval_strategy", "eval_steps"} & given:
        values["eval_strategy"], values["eval_steps"] = "steps", values["save_steps"]
        notes.append(
            f"evaluating every {values['eval_steps']:g} steps too: the best checkpoint is chosen at each save"
        )
    elif evaluates and evaluation == "steps" and save == "epoch" and not {"save_strategy", "save_steps"} & given:
        values["save_strategy"], values["save_steps"] = "steps", values.get("eval_steps") or values["logging_steps"]
        notes.append(f"saving every {values['save_steps']:g} steps too: the best checkpoint is chosen at each save")
    return notes


def parse_args(argv=None):
    """The four argument groups and the notes to log, from the command line or one .json/.yaml file."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        text = Path(argv[0]).read_text()
        if argv[0].endswith(".json"):
            values = json.loads(text)
        else:
            import yaml

            values = yaml.safe_load(text)
        given = set(values)
    else:
        namespace, unknown = parser.parse_known_args(argv)  # --help, --help-all, wrong values: argparse's messages
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        values, given = vars(namespace), given_options(parser, argv)
    try:
        notes = apply_step_options(values, given)
        return (*parser.parse_dict(values), notes)
    except (SetupError, ValueError) as error:  # including TrainingArguments' own checks
        parser.error(str(error))


def run_arguments(model_args, config_overrides, data_args, training_args) -> dict:
    """Everything that defines this run, as stored beside its checkpoints and compared when resuming (tokens
    redacted by TrainingArguments.to_dict)."""
    arguments = {
        **dataclasses.asdict(model_args),
        **dataclasses.asdict(config_overrides),
        **dataclasses.asdict(data_args),
    }
    arguments.update(training_args.to_dict(), num_processes=training_args.world_size)
    return json.loads(json.dumps(arguments, default=str))


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
    model_args, config_overrides, data_args, training_args, notes = parse_args(argv)
    overrides = {k: v for k, v in dataclasses.asdict(config_overrides).items() if v is not None}
    if overrides.get("time_step_rank", "auto") != "auto":
        overrides["time_step_rank"] = int(overrides["time_step_rank"])
    setup_logging(training_args)
    for note in notes:
        logger.info("%s", note)
    if training_args.device.type == "cpu":
        training_args.dataloader_pin_memory = False  # pinning needs an accelerator: torch warns at every DataLoader
    check_hub_access(training_args)  # before anything slow
    arguments = run_arguments(model_args, config_overrides, data_args, training_args)
    with training_args.main_process_first(desc="checkpoint check"):  # the main process removes interrupted saves
        checkpoint = choose_checkpoint(
            training_args.output_dir,
            arguments,
            resume_from_checkpoint=training_args.resume_from_checkpoint,
            overwrite=training_args.overwrite_output_dir,
            accept_changes=training_args.resume_with_changed_args,
            remove_incomplete=training_args.should_save,
        )

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
    # One collator for both: evaluation windows are never longer than `window`, so only training records get cropped.
    collator = WindowCollator(
        window=window,
        seed=training_args.seed,
        mean=feature_extractor.mean if feature_extractor.do_normalize else None,
        std=feature_extractor.std if feature_extractor.do_normalize else None,
        use_attention_mask="attention_mask" in inspect.signature(model.forward).parameters,
    )

    output_dir = Path(training_args.output_dir)
    launcher = ["python"]
    if training_args.world_size > 1:
        launcher = ["accelerate", "launch", "--multi_gpu", "--num_processes", str(training_args.world_size)]
    command = [*launcher, "train_hf.py", *(argv if argv is not None else sys.argv[1:])]
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
        kept=None,
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
        callbacks=[CropEpochCallback(collator)],
        write_model_card=render_card,
        run_arguments=arguments,
    )
    if trainer.is_world_process_zero():
        print_run_settings(trainer, data_args, task, split_sizes, window, stride, num_parameters, checkpoint)
    if training_args.should_save:
        # Everything but the weights, before the first save: each revision pushed during training loads.
        save_loading_files(model, feature_extractor, output_dir)
        write_run_arguments(output_dir, arguments)
        render_card()

    start = time.time()
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()

    results.update(final_evaluation(trainer, metric, windows, class_names, data_args.bootstrap_samples, extra_metrics))
    card_context["kept"] = kept_checkpoint(trainer.state, training_args)
    if training_args.should_save:
        curves = plot_training_curves(
            trainer.state.log_history,
            output_dir / CURVES_FILE,
            metric=f"eval_{training_args.metric_for_best_model}",
            kept_step=card_context["kept"]["step"],
        )
        card_context["curves"] = curves.name
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
