"""The Trainer subclass, and the files that make every saved folder (each `checkpoint-N` and the final one) loadable
with `trust_remote_code=True` and usable with `pipeline("ecg-classification", ...)`."""

import os
from pathlib import Path

from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints
from transformers.utils import logging as hf_logging

from modeling_ecgmamba.pipeline_ecgmamba import add_pipeline_to_checkpoint

from .checkpoints import mark_complete


class ECGTrainer(Trainer):
    """Trainer with the model's own no-weight-decay list, the repository's model card, and checkpoints that carry
    their run's arguments and a completion marker (see `checkpoints`)."""

    def __init__(self, *args, write_model_card=None, run_arguments: dict | None = None, **kwargs):
        self.write_model_card = write_model_card
        self.run_arguments = run_arguments or {}
        super().__init__(*args, **kwargs)

    def _save_checkpoint(self, model, trial):
        # The Trainer deletes older checkpoints (save_total_limit) at the end of its save; here that happens only
        # after the new checkpoint is complete and marked, so that a kill at any moment leaves a complete one.
        limit, self.args.save_total_limit = self.args.save_total_limit, None
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        run_dir = self._get_output_dir(trial=trial)
        checkpoint = Path(run_dir) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        self.accelerator.wait_for_everyone()  # every process has written its part (its RNG state)
        if self.args.should_save:
            add_pipeline_to_checkpoint(checkpoint)  # the Trainer already saved the model code and the preprocessor
            mark_complete(checkpoint, self.run_arguments, self.state.global_step)
            rotate_checkpoints(run_dir, limit, self.state.best_model_checkpoint)  # by step: see `checkpoints`

    def save_model(self, output_dir=None, _internal_call=False):
        # save_pretrained draws a "Writing model shards" bar for this one-file model at every checkpoint: noise.
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            super().save_model(output_dir, _internal_call)
        finally:
            if bars:
                hf_logging.enable_progress_bar()

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


def save_loading_files(model, feature_extractor, folder):
    """Model code, preprocessor and pipeline: what a folder needs, besides config and weights, to load with
    `trust_remote_code=True`. Written into output_dir before training, so that every pushed revision loads."""
    from transformers.dynamic_module_utils import custom_object_save

    os.makedirs(folder, exist_ok=True)
    custom_object_save(model, folder)
    feature_extractor.save_pretrained(folder)
    # config.json is written later (checkpoints, final save): the entry must live in the model's config.
    add_pipeline_to_checkpoint(folder, config=model.config)
