"""The model types `train_hf.py --model_type` trains: ECGMamba and the baselines it is compared with. Every one is a
classifier of the `modeling_ecgmamba` library, so its checkpoints ship their code and load anywhere."""

from transformers import PreTrainedModel

from modeling_ecgmamba import (
    ECGMambaConfig,
    ECGMambaFeatureExtractor,
    ECGMambaForSequenceClassification,
    ECGTransformerConfig,
    ECGTransformerForSequenceClassification,
    XResNet1dConfig,
    XResNet1dForSequenceClassification,
)

# --model_type -> (config class, model class)
MODEL_TYPES = {
    "ecgmamba": (ECGMambaConfig, ECGMambaForSequenceClassification),
    "transformer": (ECGTransformerConfig, ECGTransformerForSequenceClassification),
    "xresnet1d101": (XResNet1dConfig, XResNet1dForSequenceClassification),
}


def build_model(
    model_type: str, num_labels: int | None = None, id2label: dict | None = None, **config_overrides
) -> PreTrainedModel:
    """A freshly initialised classifier of `model_type` (a key of `MODEL_TYPES`).

    `id2label` names the classes (and sets `num_labels`); without it `num_labels` gives unnamed classes; with
    neither, the five PTB-XL superdiagnostic classes. `config_overrides` go to the model's config class (e.g.
    `hidden_size=96`, `encoder_strides=[2, 2, 2]`, `problem_type="single_label_classification"`).
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(f"Unknown model_type {model_type!r}; choose from {sorted(MODEL_TYPES)}.")
    config_class, model_class = MODEL_TYPES[model_type]
    if id2label is not None:
        id2label = {int(k): v for k, v in id2label.items()}
        if num_labels is not None and num_labels != len(id2label):
            raise ValueError(f"num_labels={num_labels} disagrees with {len(id2label)} names in id2label.")
        config_overrides["id2label"] = id2label
    elif num_labels is not None:
        config_overrides["num_labels"] = num_labels
    return model_class(config_class(**config_overrides))


def build_feature_extractor(config, window_stride_seconds=None, normalize_with=None) -> ECGMambaFeatureExtractor:
    """The preprocessing that ships with a model: its rate, window and leads, the evaluation stride, and (with
    `normalize_with`, an iterable of training signals) per-lead statistics of the training split."""
    extractor = ECGMambaFeatureExtractor.from_model_config(config, window_stride_seconds=window_stride_seconds)
    if normalize_with is not None:
        extractor.fit(normalize_with, do_normalize=True)
    return extractor
