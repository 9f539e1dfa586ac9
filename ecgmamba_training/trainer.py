"""The Trainer subclass, and the files that make every saved folder (each `checkpoint-N` and the final one) loadable
with `trust_remote_code=True` and usable with `pipeline("ecg-classification", ...)`."""

import os
from pathlib import Path

from transformers import Trainer, TrainerCallback

from modeling_ecgmamba.pipeline_ecgmamba import add_pipeline_to_checkpoint


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


def save_loading_files(model, feature_extractor, folder):
    """Model code, preprocessor and pipeline: what a folder needs, besides config and weights, to load with
    `trust_remote_code=True`. Written into output_dir before training, so that every pushed revision loads."""
    from transformers.dynamic_module_utils import custom_object_save

    os.makedirs(folder, exist_ok=True)
    custom_object_save(model, folder)
    feature_extractor.save_pretrained(folder)
    # config.json is written later (checkpoints, final save): the entry must live in the model's config.
    add_pipeline_to_checkpoint(folder, config=model.config)


class CheckpointFilesCallback(TrainerCallback):
    """Completes every `checkpoint-N` folder (the Trainer already saves the model code and the preprocessor)."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            add_pipeline_to_checkpoint(Path(args.output_dir) / f"checkpoint-{state.global_step}")
