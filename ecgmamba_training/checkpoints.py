"""Resuming a run you can trust. Each `checkpoint-N` carries the arguments of its run (`run_arguments.json`) and,
written last, a completion marker, so that a save interrupted by a kill is recognised. Rerunning a command into an
`output_dir` that holds a checkpoint of the same run continues it from the newest complete checkpoint; a checkpoint of
a run with other arguments is refused with the differences listed, unless the command says what to do
(`--resume_with_changed_args` to continue anyway, `--overwrite_output_dir` to start over)."""

import json
import logging
import re
import shutil
from pathlib import Path

from .data import SetupError
from .reporting import CURVES_FILE

logger = logging.getLogger("train_hf")

RUN_ARGUMENTS_FILE = "run_arguments.json"
COMPLETE_MARKER = "checkpoint_complete.json"  # written last into a checkpoint: its save finished
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# What a run leaves besides its model and code (rewritten by the next run): removed when starting over, so that a
# folder never shows the results of an earlier run beside a new one in progress.
RUN_RESULTS = (RUN_ARGUMENTS_FILE, "trainer_state.json", "*_results.json", "test_probabilities.npz", CURVES_FILE)

# Options that do not change what is trained (where it is written, how it is logged, published, or loaded fast, and
# the resume options themselves): a resumed run may change them freely.
NOT_COMPARED = frozenset(
    {
        "output_dir", "overwrite_output_dir", "resume_from_checkpoint", "resume_with_changed_args", "local_rank",
        "save_strategy", "save_steps", "save_total_limit", "save_only_model", "save_safetensors",
        "logging_strategy", "logging_steps", "logging_first_step", "logging_nan_inf_filter", "log_level",
        "log_level_replica", "log_on_each_node", "disable_tqdm", "report_to", "run_name", "project",
        "trackio_space_id", "push_to_hub", "hub_model_id", "hub_strategy", "hub_token", "hub_private_repo",
        "hub_always_push", "hub_revision", "dataloader_num_workers", "dataloader_pin_memory",
        "dataloader_persistent_workers", "dataloader_prefetch_factor", "preprocessing_num_workers",
        "dataset_cache_dir", "rebuild_dataset", "download", "per_device_eval_batch_size", "eval_accumulation_steps",
        "bootstrap_samples",
    }
)  # fmt: skip
# Options a checkpoint restores with the optimizer's state: a new value would be silently ignored by the resumed run,
# so a change is refused even with --resume_with_changed_args.
RESTORED_FROM_CHECKPOINT = frozenset(
    {"learning_rate", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "optim"}
)


def write_run_arguments(folder, arguments: dict) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / RUN_ARGUMENTS_FILE).write_text(json.dumps(arguments, indent=2, sort_keys=True) + "\n")


def read_run_arguments(folder) -> dict | None:
    path = Path(folder) / RUN_ARGUMENTS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def mark_complete(checkpoint, arguments: dict, step: int) -> None:
    """The last writes of a checkpoint: its run's arguments, then the marker that says the save finished."""
    write_run_arguments(checkpoint, arguments)
    (Path(checkpoint) / COMPLETE_MARKER).write_text(json.dumps({"global_step": step}) + "\n")


def is_complete(checkpoint) -> bool:
    return (Path(checkpoint) / COMPLETE_MARKER).is_file()


def list_checkpoints(output_dir) -> list[Path]:
    """The `checkpoint-N` folders of `output_dir`, oldest step first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return [path for _, path in sorted(found)]


def differences(stored: dict, current: dict) -> dict[str, tuple]:
    """Options that change the run and differ: name -> (stored value, current value). Options only one side knows
    (another version of the code) are not compared."""
    return {
        name: (stored[name], current[name])
        for name in sorted(stored.keys() & current.keys())
        if name not in NOT_COMPARED and stored[name] != current[name]
    }


def _listing(changed: dict[str, tuple]) -> str:
    return "\n".join(
        f"  --{name}: {json.dumps(old)} there, {json.dumps(new)} now" for name, (old, new) in changed.items()
    )


def check_arguments(source: Path, stored: dict | None, arguments: dict, accept_changes: bool) -> None:
    """Refuse to continue a run under other arguments, unless asked to (and never for those the checkpoint fixes)."""
    if stored is None:
        logger.warning("%s has no %s: its arguments cannot be compared with this run's.", source, RUN_ARGUMENTS_FILE)
        return
    changed = differences(stored, arguments)
    if not changed:
        return
    fixed = {name: values for name, values in changed.items() if name in RESTORED_FROM_CHECKPOINT}
    if fixed:
        raise SetupError(
            f"{source} was trained with other optimizer settings, which resuming restores from the checkpoint (a new "
            f"value would be silently ignored):\n{_listing(fixed)}\nRepeat the checkpoint's values to continue that "
            "run, or start over with --overwrite_output_dir (deletes its checkpoints), or choose another --output_dir."
        )
    if not accept_changes:
        raise SetupError(
            f"{source} belongs to a run with other arguments:\n{_listing(changed)}\nRepeat that run's arguments to "
            "continue it, add --resume_with_changed_args to continue it with these changes, add "
            "--overwrite_output_dir to start over (deletes its checkpoints), or choose another --output_dir."
        )
    logger.warning("Continuing %s with changed arguments (--resume_with_changed_args):\n%s", source, _listing(changed))


def start_over(output_dir) -> None:
    """--overwrite_output_dir: remove the earlier run's checkpoints and results (model and code are rewritten)."""
    folder = Path(output_dir)
    removed = list_checkpoints(folder) + [p for pattern in RUN_RESULTS for p in folder.glob(pattern) if p.is_file()]
    for path in removed:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    if removed:
        logger.warning("--overwrite_output_dir: removed %s from %s", ", ".join(p.name for p in removed), folder)


def choose_checkpoint(
    output_dir,
    arguments: dict,
    resume_from_checkpoint: str | None = None,
    overwrite: bool = False,
    accept_changes: bool = False,
    remove_incomplete: bool = True,
) -> str | None:
    """The checkpoint to resume from (None: train from scratch), after the checks above. Interrupted saves in
    `output_dir` are skipped (and removed when `remove_incomplete`: they would count towards `save_total_limit`)."""
    folder = Path(output_dir)
    if overwrite:
        if resume_from_checkpoint:
            raise SetupError(
                "--overwrite_output_dir starts over; --resume_from_checkpoint continues: pass one of them."
            )
        start_over(folder)
        return None
    if resume_from_checkpoint:
        checkpoint = Path(resume_from_checkpoint)
        if not checkpoint.is_dir():
            raise SetupError(f"--resume_from_checkpoint {checkpoint}: no such folder.")
        if not is_complete(checkpoint):
            raise SetupError(
                f"--resume_from_checkpoint {checkpoint}: no {COMPLETE_MARKER}, so its save did not finish (the run was "
                "stopped while writing it). Pass an earlier checkpoint."
            )
        check_arguments(checkpoint, read_run_arguments(checkpoint), arguments, accept_changes)
        return str(checkpoint)

    checkpoints = list_checkpoints(folder)
    complete = [c for c in checkpoints if is_complete(c)]
    incomplete = [c for c in checkpoints if not is_complete(c)]
    if incomplete:
        logger.warning(
            "Skipping %s in %s: no %s, the save was interrupted%s.",
            ", ".join(c.name for c in incomplete),
            folder,
            COMPLETE_MARKER,
            " (removed)" if remove_incomplete else "",
        )
        if remove_incomplete:
            for checkpoint in incomplete:
                shutil.rmtree(checkpoint)
    if complete:
        check_arguments(complete[-1], read_run_arguments(complete[-1]), arguments, accept_changes)
        return str(complete[-1])
    stored = read_run_arguments(folder)
    if stored is not None:  # a run without a checkpoint to resume (killed before its first save, or saving none)
        changed = differences(stored, arguments)
        if changed:
            raise SetupError(
                f"{folder} holds the outputs of a run with other arguments:\n{_listing(changed)}\nAdd "
                "--overwrite_output_dir to replace them, or choose another --output_dir."
            )
    return None
