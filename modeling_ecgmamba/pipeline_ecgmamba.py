"""`ecg-classification`: a transformers pipeline for ECGMamba checkpoints.

    from transformers import pipeline
    classifier = pipeline("ecg-classification", model="path/or/repo", trust_remote_code=True)
    classifier("00001_hr.hea")                                   # a file: WFDB, CPSC .mat, .csv, .npy
    classifier(signal, sampling_rate=500, lead_names=names)      # an array (samples, leads)
    classifier({"signal": signal, "sampling_rate": 500, "lead_names": names})
    # -> [{"label": "NORM", "score": 0.91, "threshold": 0.5, "predicted": True}, ...] sorted by score

`pipeline()` finds the pipeline through the checkpoint's `config.json`:

    "custom_pipelines": {"ecg-classification": {"impl": "pipeline_ecgmamba.ECGClassificationPipeline",
                                                "pt": ["AutoModelForSequenceClassification"], "type": "audio"}}

and imports `pipeline_ecgmamba.py` (plus the reader and inference files it imports) from the checkpoint folder.
[`add_pipeline_to_checkpoint`] writes them after `save_pretrained`. Importing this module also
registers the task with `PIPELINE_REGISTRY`, so `pipeline("ecg-classification", model=...)` works in a process that
imported it, and `ECGClassificationPipeline(model=..., feature_extractor=...).save_pretrained(folder)` writes a
complete checkpoint the same way.

Long records are split into the model's windows (a "chunk" each, batched with `batch_size`) as the record is read,
a minute at a time (`inference_ecgmamba.iter_record_windows`, as for `ECGPredictor`), short ones padded and masked;
window logits become the record's probabilities and decisions in `inference_ecgmamba.record_scores`, as in
training's evaluation and `ECGPredictor` (aggregation and thresholds from the checkpoint's config unless given).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from pathlib import Path

import numpy as np
from transformers import AutoModelForSequenceClassification
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.base import ChunkPipeline

from .configuration_ecgmamba import WINDOW_AGGREGATIONS
from .ecg_records import ECGRecord, read_record
from .inference_ecgmamba import iter_record_windows, record_scores

TASK = "ecg-classification"
PIPELINE_FILE = "pipeline_ecgmamba.py"


class ECGClassificationPipeline(ChunkPipeline):
    """Multi-label ECG classification of one record or a list of records (see the module docstring).

    Call arguments (all optional): `sampling_rate`, `lead_names`, `units` (for arrays, `.csv` without a time column
    and `.npy`), `window_stride_seconds` (default the extractor's), `check_amplitude` (`False` accepts a record whose
    amplitude is implausible for an ECG in mV; default the extractor's check, on), `aggregation` (`"mean"` or
    `"max"`; default `config.window_aggregation`), `threshold` (one float, one per class or a dict by class name;
    default `config.thresholds`, else 0.5) and `top_k` (how many classes to return, default all).
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    def _sanitize_parameters(
        self,
        sampling_rate=None,
        lead_names=None,
        units=None,
        window_stride_seconds=None,
        check_amplitude=None,
        aggregation=None,
        threshold=None,
        top_k=None,
        **kwargs,
    ):
        preprocess = {
            key: value
            for key, value in dict(
                sampling_rate=sampling_rate,
                lead_names=lead_names,
                units=units,
                window_stride_seconds=window_stride_seconds,
                check_amplitude=check_amplitude,
            ).items()
            if value is not None
        }
        postprocess = {}
        if aggregation is not None:
            if aggregation not in WINDOW_AGGREGATIONS:
                raise ValueError(f"aggregation must be one of {WINDOW_AGGREGATIONS}, got {aggregation!r}")
            postprocess["aggregation"] = aggregation
        if threshold is not None:
            postprocess["threshold"] = threshold
        if top_k is not None:
            postprocess["top_k"] = int(top_k)
        return preprocess, {}, postprocess

    def preprocess(
        self, inputs, sampling_rate=None, lead_names=None, units="mV", window_stride_seconds=None, check_amplitude=None
    ):
        record = self._to_record(inputs, sampling_rate, lead_names, units)
        batches = iter_record_windows(
            self.feature_extractor, record, window_stride_seconds, check_amplitude=check_amplitude
        )
        batch = next(batches)
        for following in itertools.chain(batches, [None]):
            for i in range(len(batch.input_values)):
                yield {
                    "input_values": batch.input_values[i : i + 1],
                    "attention_mask": batch.attention_mask[i : i + 1],
                    "is_last": following is None and i == len(batch.input_values) - 1,
                }
            batch = following

    def _to_record(self, inputs, sampling_rate, lead_names, units) -> ECGRecord:
        if isinstance(inputs, (str, os.PathLike)):
            return read_record(inputs, sampling_rate, lead_names, units)
        if isinstance(inputs, ECGRecord):
            return inputs
        if isinstance(inputs, dict):
            signal = inputs.get("signal", inputs.get("raw"))
            if signal is None:
                raise ValueError("a dict input needs 'signal' ((samples, leads) array) and 'sampling_rate'")
            sampling_rate = inputs.get("sampling_rate", sampling_rate)
            lead_names = inputs.get("lead_names", lead_names)
            units = inputs.get("units", units)
            name = str(inputs.get("name", "record"))
        else:
            signal, name = inputs, "record"
        return ECGRecord.from_array(
            signal, sampling_rate, lead_names or self.feature_extractor.lead_names, units, name
        )

    def _forward(self, model_inputs):
        is_last = model_inputs.pop("is_last")
        logits = self.model(
            input_values=model_inputs["input_values"].to(self.dtype or model_inputs["input_values"].dtype),
            attention_mask=model_inputs["attention_mask"],
        ).logits
        return {"logits": logits, "is_last": is_last}

    def postprocess(self, model_outputs, aggregation=None, threshold=None, top_k=None):
        config = self.model.config
        logits = np.concatenate([output["logits"].float().cpu().numpy() for output in model_outputs])
        scores = record_scores(logits, config, aggregation=aggregation, thresholds=threshold)
        labels = [str(config.id2label[i]) for i in range(logits.shape[1])]
        results = [
            {"label": label, "score": float(score), "threshold": float(limit), "predicted": bool(decided)}
            for label, score, limit, decided in zip(
                labels, scores.probabilities[0], scores.thresholds, scores.decisions[0]
            )
        ]
        results.sort(key=lambda item: -item["score"])
        return results[:top_k] if top_k else results


def pipeline_config() -> dict:
    """The `custom_pipelines` entry of `config.json` that lets `pipeline("ecg-classification", ...)` load this file."""
    return {
        TASK: {
            "impl": f"{Path(PIPELINE_FILE).stem}.{ECGClassificationPipeline.__name__}",
            "pt": ["AutoModelForSequenceClassification"],
            "type": "audio",
        }
    }


def add_pipeline_to_checkpoint(checkpoint_dir, config=None) -> list[Path]:
    """Make a saved ECGMamba checkpoint loadable with `pipeline("ecg-classification", model=dir, trust_remote_code=True)`.

    Call it after `model.save_pretrained(dir)` and `extractor.save_pretrained(dir)`. It copies this file and the
    package files it imports (`inference_ecgmamba.py`, `ecg_records.py`, ...) into the folder and adds
    `custom_pipelines` to its `config.json` (if there is one yet). Pass the model's `config` too to set
    `config.custom_pipelines` in memory, so that every later `save_pretrained` of that model keeps the entry.
    Idempotent. Returns the files written.
    """
    from transformers.dynamic_module_utils import get_relative_import_files

    folder = Path(checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    source = Path(__file__)
    written = []
    for path in [source, *map(Path, get_relative_import_files(str(source)))]:
        destination = folder / path.name
        if destination.resolve() != path.resolve():
            shutil.copyfile(path, destination)
        written.append(destination)
    entry = pipeline_config()
    if config is not None:
        config.custom_pipelines = {**(getattr(config, "custom_pipelines", None) or {}), **entry}
    config_path = folder / "config.json"
    if config_path.is_file():
        document = json.loads(config_path.read_text(encoding="utf-8"))
        document["custom_pipelines"] = {**(document.get("custom_pipelines") or {}), **entry}
        config_path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(config_path)
    return written


_registered = PIPELINE_REGISTRY.supported_tasks.get(TASK, {}).get("impl")
if (
    getattr(_registered, "__name__", None) != ECGClassificationPipeline.__name__
):  # a second copy (remote code) is quiet
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=ECGClassificationPipeline, pt_model=AutoModelForSequenceClassification, type="audio"
    )

__all__ = ["ECGClassificationPipeline", "TASK", "add_pipeline_to_checkpoint", "pipeline_config"]
