"""From records to decisions: the one inference path of every ECG classifier of this package.

    from modeling_ecgmamba import ECGPredictor
    predictor = ECGPredictor.from_pretrained("path/or/repo")
    results = predictor.predict(["00001_hr.hea", "A1980.mat"])
    print(results[0].diagnoses, results[0].probabilities)

A record becomes the model's windows through the checkpoint's feature extractor (which owns the window layout and
says where each window starts) in [`iter_record_windows`], the one function that the predictor, the pipeline and the
explanations call: it streams a record a chunk at a time and its windows a batch at a time, so that a 24-hour record
is predicted in bounded memory. Window logits become record probabilities and decisions in [`record_scores`], the
single function that training's evaluation, [`ECGPredictor`], the `ecg-classification` pipeline and the explanations
all call. What it needs comes from the checkpoint: `config.problem_type` (sigmoid or softmax),
`config.window_aggregation` and `config.thresholds` (written by training), and the extractor's window and stride.

This file travels inside checkpoints with the pipeline: it imports only NumPy, PyTorch and transformers at module level.
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from .configuration_ecgmamba import WINDOW_AGGREGATIONS
from .ecg_records import (
    ECGDataError,
    ECGRecord,
    check_sampling_rate,
    parse_lead_names,
    read_record,
    select_ecg_leads,
)

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5


# ------------------------------------------------------------------------------------------------------ scores


def resolve_aggregation(aggregation: str | None, config) -> str:
    """The window aggregation to use: the one given, else the one training wrote into the config, else "mean"."""
    aggregation = aggregation or getattr(config, "window_aggregation", None) or "mean"
    if aggregation not in WINDOW_AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {WINDOW_AGGREGATIONS}, got {aggregation!r}")
    return aggregation


def resolve_thresholds(thresholds, labels: Sequence[str]) -> np.ndarray:
    """Per-class thresholds from any accepted form: None (0.5 each), one number for all, one per class, or a dict
    by class name (or index); classes a dict does not name get 0.5."""
    if thresholds is None:
        return np.full(len(labels), DEFAULT_THRESHOLD)
    source = thresholds
    if isinstance(source, dict):
        source = [
            source.get(label, source.get(str(i), source.get(i, DEFAULT_THRESHOLD))) for i, label in enumerate(labels)
        ]
    try:
        values = np.broadcast_to(np.asarray(source, dtype=np.float64), (len(labels),)).copy()
    except (TypeError, ValueError):
        raise ValueError(
            f"thresholds must be one number or {len(labels)} numbers (one per class), got {thresholds!r}"
        ) from None
    if not np.isfinite(values).all():
        raise ValueError(f"thresholds must be finite numbers, got {thresholds!r}")
    return values


@dataclass
class RecordScores:
    """What [`record_scores`] returns. Shapes: W windows, R records, C classes."""

    window_probabilities: np.ndarray  # (W, C)
    probabilities: np.ndarray  # (R, C)
    decisions: np.ndarray  # (R, C) bool
    thresholds: np.ndarray  # (C,)
    aggregation: str
    record_ids: np.ndarray  # (R,): the record_index value of each row, sorted


def record_scores(window_logits, config, record_index=None, aggregation=None, thresholds=None) -> RecordScores:
    """Window logits -> per-window and per-record probabilities and per-record decisions.

    Args:
        window_logits: `(windows, classes)` logits (NumPy or torch).
        config: the model's config: `problem_type` (softmax for `"single_label_classification"`, else sigmoid),
            `window_aggregation`, `thresholds` and `id2label`.
        record_index: the record of each window (any integers); `None`: all windows belong to one record.
        aggregation: `"mean"` or `"max"` of a record's window probabilities; default `config.window_aggregation`.
        thresholds: any form [`resolve_thresholds`] takes; default `config.thresholds` (else 0.5).

    Decisions: multi-label, every class at or above its threshold; single-label, the most probable class if it
    reaches its threshold. Raises FloatingPointError when a logit is NaN or infinite (a broken or diverged model).
    """
    problem_type = getattr(config, "problem_type", None)
    if problem_type == "regression":
        raise ValueError("a regression model has no class probabilities or decisions")
    logits = window_logits.detach().float().cpu().numpy() if hasattr(window_logits, "detach") else window_logits
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or len(logits) == 0:
        raise ValueError(f"window_logits must be (windows, classes) with at least one window, got {logits.shape}")
    bad = ~np.isfinite(logits).all(axis=1)
    if bad.any():
        raise FloatingPointError(
            f"the model's outputs are NaN or infinite for {int(bad.sum())} of {len(logits)} windows"
        )
    single_label = problem_type == "single_label_classification"
    if single_label:
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        window_probabilities = exp / exp.sum(axis=1, keepdims=True)
    else:
        # exp(-|x|) never overflows: a sigmoid that is exact for logits of any size
        e = np.exp(-np.abs(logits))
        window_probabilities = np.where(logits >= 0, 1.0 / (1.0 + e), e / (1.0 + e))

    aggregation = resolve_aggregation(aggregation, config)
    if record_index is None:
        record_index = np.zeros(len(logits), dtype=np.int64)
    record_index = np.asarray(record_index)
    if len(record_index) != len(logits):
        raise ValueError(f"{len(logits)} window logits for {len(record_index)} record indices")
    record_ids, inverse = np.unique(record_index, return_inverse=True)
    if aggregation == "max":
        probabilities = np.full((len(record_ids), logits.shape[1]), -np.inf)
        np.maximum.at(probabilities, inverse, window_probabilities)
    else:
        probabilities = np.zeros((len(record_ids), logits.shape[1]))
        np.add.at(probabilities, inverse, window_probabilities)
        probabilities /= np.bincount(inverse)[:, None]

    labels = [str(config.id2label[i]) for i in range(logits.shape[1])]
    limits = resolve_thresholds(thresholds if thresholds is not None else getattr(config, "thresholds", None), labels)
    if single_label:
        best = probabilities.argmax(axis=1)
        decisions = np.zeros(probabilities.shape, dtype=bool)
        rows = np.arange(len(best))
        decisions[rows, best] = probabilities[rows, best] >= limits[best]
    else:
        decisions = probabilities >= limits
    return RecordScores(window_probabilities, probabilities, decisions, limits, aggregation, record_ids)


# ------------------------------------------------------------------------------------------------------ windows


class RecordWindows(NamedTuple):
    """One record as model inputs: `(windows, samples, leads)` values, their mask, each window's first sample at the
    model rate, and notes for the user."""

    input_values: torch.Tensor
    attention_mask: torch.Tensor
    window_start: np.ndarray
    notes: list[str]


def iter_record_windows(
    feature_extractor,
    record: ECGRecord,
    window_stride_seconds: float | None = None,
    batch_size: int = 32,
    check_amplitude: bool | None = None,
) -> Iterator[RecordWindows]:
    """One record -> the model's windows, `batch_size` at a time (sliding over long records at the extractor's stride
    unless one is given, padded and masked for short ones), read and checked a chunk at a time: memory does not grow
    with the record's length. The record checks run on the way: an [`ECGDataError`] naming the record may come after
    some batches (discard them). The last batch's `notes` are the record's notes."""
    record = select_ecg_leads(record)
    notes = list(record.notes)
    options = dict(window_stride_seconds=window_stride_seconds, check_amplitude=check_amplitude)
    if hasattr(feature_extractor, "iter_windows"):
        batches = feature_extractor.iter_windows(
            record.chunks(), record.sampling_rate, record.lead_names, record.units, name=record.name,
            batch_size=batch_size, return_tensors="pt", **options,
        )  # fmt: skip
    else:  # the extractor of a checkpoint saved before streaming: whole records only
        batches = [
            feature_extractor(
                record.signal, sampling_rate=record.sampling_rate, lead_names=record.lead_names, units=record.units,
                return_windows=True, window_stride_seconds=window_stride_seconds, return_tensors="pt",
                record_names=[record.name],
            )
        ]  # fmt: skip
    previous = None
    for batch in batches:
        if previous is not None:
            yield previous
        previous = RecordWindows(batch["input_values"], batch["attention_mask"], batch["window_start"].numpy(), notes)
    window = float(feature_extractor.window_seconds)
    if record.duration < window - 1e-9:
        notes.append(
            f"record is {record.duration:.1f} s, shorter than the model's {window:g} s window: padded and masked "
            "(the model reads only the real samples; short records are less reliable)"
        )
    yield previous


def record_windows(
    feature_extractor, record: ECGRecord, window_stride_seconds: float | None = None, check_amplitude=None
) -> RecordWindows:
    """All of one record's windows at once ([`iter_record_windows`] gathered): for records that fit in memory."""
    batches = list(
        iter_record_windows(feature_extractor, record, window_stride_seconds, check_amplitude=check_amplitude)
    )
    return RecordWindows(
        torch.cat([b.input_values for b in batches]),
        torch.cat([b.attention_mask for b in batches]),
        np.concatenate([b.window_start for b in batches]),
        batches[-1].notes,
    )


# ------------------------------------------------------------------------------------------------------ predictions


@dataclass
class RecordPrediction:
    """What the model says about one record (or why it could not say anything: `error`)."""

    name: str
    labels: list[str] = field(default_factory=list)
    probabilities: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    diagnoses: list[str] = field(default_factory=list)
    window_probabilities: list[list[float]] = field(default_factory=list)
    window_seconds: list[list[float]] = field(default_factory=list)  # [start, end] of each window in the record
    sampling_rate: float | None = None
    duration: float | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    explanation: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def num_windows(self) -> int:
        return len(self.window_probabilities)

    def to_dict(self) -> dict:
        return {
            "record": self.name,
            "ok": self.ok,
            "error": self.error,
            "diagnoses": self.diagnoses,
            "probabilities": self.probabilities,
            "thresholds": self.thresholds,
            "sampling_rate": self.sampling_rate,
            "duration_seconds": self.duration,
            "num_windows": self.num_windows,
            "window_probabilities": self.window_probabilities,
            "window_seconds": self.window_seconds,
            "notes": self.notes,
            "explanation": self.explanation,
        }

    def format(self) -> str:
        """Human-readable report: diagnoses above threshold, then every class probability."""
        lines = [f"== {self.name}"]
        if not self.ok:
            lines.append(f"   ERROR: {self.error}")
            return "\n".join(lines)
        windows = f"{self.num_windows} window{'s' if self.num_windows != 1 else ''}"
        lines[0] += f"  ({self.sampling_rate:g} Hz, {self.duration:.1f} s, {windows})"
        lines.append(f"   diagnoses: {', '.join(self.diagnoses) if self.diagnoses else 'none above threshold'}")
        width = max(len(label) for label in self.labels)
        lines.append(f"   {'class':<{width}}  probability  threshold")
        for label in self.labels:
            flag = "  *" if label in self.diagnoses else ""
            lines.append(
                f"   {label:<{width}}  {self.probabilities[label]:11.4f}  {self.thresholds[label]:9.2f}{flag}"
            )
        lines.extend(f"   note: {note}" for note in self.notes)
        if self.explanation:
            lines.append(f"   explanation: {self.explanation}")
        return "\n".join(lines)


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine (use cpu or auto)")
    return device


def load_checkpoint(model_name_or_path, trust_remote_code: bool = True, **hub_kwargs):
    """Load `(model, feature_extractor)` from a checkpoint folder or Hub repo.

    With `trust_remote_code=True` the code saved in the checkpoint runs (what a user without this package gets);
    with `False`, the classes registered by the installed package. A checkpoint without `preprocessor_config.json`
    gets the extractor that matches its config.
    """
    from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification

    from .feature_extraction_ecgmamba import ECGMambaFeatureExtractor

    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_name_or_path, trust_remote_code=trust_remote_code, **hub_kwargs
        )
    except (OSError, ValueError) as err:
        if not trust_remote_code or not _registered_here(model_name_or_path, hub_kwargs):
            raise
        # The checkpoint names its code in auto_map but lacks the files: the installed package serves.
        model = AutoModelForSequenceClassification.from_pretrained(
            model_name_or_path, trust_remote_code=False, **hub_kwargs
        )
        logger.warning(
            "loaded %s with the installed package's classes (%s: %s)", model_name_or_path, type(err).__name__, err
        )
    try:
        extractor = AutoFeatureExtractor.from_pretrained(
            model_name_or_path, trust_remote_code=trust_remote_code, **hub_kwargs
        )
    except (OSError, ValueError):
        extractor = ECGMambaFeatureExtractor.from_model_config(model.config)
    return model.eval(), extractor


def _registered_here(model_name_or_path, hub_kwargs) -> bool:
    """Whether the checkpoint's `model_type` is one this process's Auto classes know (the package registered it)."""
    from transformers import PreTrainedConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    try:
        config_dict, _ = PreTrainedConfig.get_config_dict(model_name_or_path, **hub_kwargs)
    except Exception:
        return False
    return config_dict.get("model_type") in CONFIG_MAPPING


class ECGPredictor:
    """Runs an ECG classifier over raw records: windows, batches, aggregation, thresholds.

    Records are streamed: read a chunk at a time and run a batch of windows at a time (batches mix records), so a
    24-hour record takes the memory of a short one, and [`iter_predict`] hands each record's result over as soon as
    it is complete.

    Args:
        model: a classifier of this package (any model called as `model(input_values=..., attention_mask=...)`
            with `.logits`).
        feature_extractor: the checkpoint's `ECGMambaFeatureExtractor`.
        device: `"auto"` (CUDA when available), `"cpu"`, `"cuda"`, `"cuda:1"`...
        batch_size: windows per forward pass.
        thresholds: one per class, a single float for all, or a dict by class name; default `config.thresholds`,
            else 0.5 (with a warning: a checkpoint without tuned thresholds).
        aggregation: `"mean"` or `"max"` of the window probabilities per record; default the
            `config.window_aggregation` the model was trained and its thresholds tuned with. Mean keeps a long
            record's score comparable with a 10 s record's; max is more sensitive to episodic findings (a single
            PVC run) at the price of more false alarms the longer the record.
        window_stride_seconds: stride of the sliding windows over long records; default the extractor's (the
            stride training evaluated with).
        check_amplitude: refuse records whose amplitude cannot be an ECG in mV (default: the extractor's setting,
            on); `False` only for records whose amplitude is real.
    """

    def __init__(
        self,
        model,
        feature_extractor,
        device: str | torch.device | None = "auto",
        batch_size: int = 32,
        thresholds=None,
        aggregation: str | None = None,
        window_stride_seconds: float | None = None,
        check_amplitude: bool | None = None,
    ):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.feature_extractor = feature_extractor
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        config = model.config
        self.labels = [str(config.id2label[i]) for i in range(config.num_labels)]
        tuned = getattr(config, "thresholds", None)
        self.thresholds = resolve_thresholds(thresholds if thresholds is not None else tuned, self.labels)
        self.threshold_note = None
        if thresholds is None and tuned is None:
            self.threshold_note = (
                f"no tuned thresholds, using {DEFAULT_THRESHOLD} for every class (the checkpoint has none)"
            )
            logger.warning(self.threshold_note)
        self.aggregation = resolve_aggregation(aggregation, config)
        if window_stride_seconds is not None and not window_stride_seconds > 0:
            raise ValueError(f"window_stride_seconds must be positive, got {window_stride_seconds!r}")
        self.window_stride_seconds = window_stride_seconds
        self.check_amplitude = check_amplitude

    @classmethod
    def from_pretrained(cls, model_name_or_path, trust_remote_code: bool = True, hub_kwargs=None, **kwargs):
        """Load a checkpoint (folder or Hub repo) and wrap it; `kwargs` go to [`ECGPredictor`]."""
        model, extractor = load_checkpoint(
            model_name_or_path, trust_remote_code=trust_remote_code, **(hub_kwargs or {})
        )
        return cls(model, extractor, **kwargs)

    @property
    def window_seconds(self) -> float:
        return float(self.feature_extractor.window_seconds)

    def iter_windows(self, record: ECGRecord) -> Iterator[RecordWindows]:
        """[`iter_record_windows`] with this predictor's stride, batch size and amplitude check."""
        return iter_record_windows(
            self.feature_extractor, record, self.window_stride_seconds, self.batch_size, self.check_amplitude
        )

    def prepare(self, record: ECGRecord) -> RecordWindows:
        """Checks and all windows of one record at once; raises an [`ECGDataError`] naming it."""
        return record_windows(self.feature_extractor, record, self.window_stride_seconds, self.check_amplitude)

    @torch.inference_mode()
    def window_logits(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Logits `(windows, classes)` (float32, CPU) for model-ready windows, in batches of `batch_size`."""
        outputs = []
        for start in range(0, len(input_values), self.batch_size):
            values = input_values[start : start + self.batch_size].to(self.device, torch.float32)
            mask = None if attention_mask is None else attention_mask[start : start + self.batch_size].to(self.device)
            outputs.append(self.model(input_values=values, attention_mask=mask).logits.float().cpu())
        return torch.cat(outputs)

    def scores(self, window_logits, record_index=None) -> RecordScores:
        """[`record_scores`] with this predictor's aggregation and thresholds."""
        return record_scores(
            window_logits, self.model.config, record_index, aggregation=self.aggregation, thresholds=self.thresholds
        )

    def _finish(self, item: _Pending) -> RecordPrediction:
        result = item.result
        scores = self.scores(torch.cat(item.logits))
        probabilities, decisions = scores.probabilities[0], scores.decisions[0]
        rate = float(self.feature_extractor.sampling_rate)
        result.labels = list(self.labels)
        result.window_probabilities = scores.window_probabilities.round(6).tolist()
        result.window_seconds = [[start / rate, (start + length) / rate] for start, length in item.windows]
        result.probabilities = {label: float(p) for label, p in zip(self.labels, probabilities)}
        result.thresholds = {label: float(t) for label, t in zip(self.labels, scores.thresholds)}
        order = np.argsort(-probabilities, kind="stable")
        result.diagnoses = [self.labels[i] for i in order if decisions[i]]
        return result

    def predict_signal(
        self,
        signal,
        sampling_rate: float,
        lead_names: Sequence[str] | None = None,
        units: str | Sequence[str] = "mV",
        name: str = "record",
    ) -> RecordPrediction:
        """One in-memory record `(samples, leads)`; raises [`ECGDataError`] if it cannot be used."""
        record = ECGRecord.from_array(signal, sampling_rate, lead_names, units, name)
        return self.predict([record], raise_errors=True)[0]

    def predict(self, records: Iterable, *args, **kwargs) -> list[RecordPrediction]:
        """Every record's [`RecordPrediction`] (paths or [`ECGRecord`]s): [`iter_predict`] gathered into a list."""
        return list(self.iter_predict(records, *args, **kwargs))

    def iter_predict(
        self,
        records: Iterable,
        sampling_rate: float | None = None,
        lead_names: Sequence[str] | str | None = None,
        units: str = "mV",
        progress: bool | None = False,
        raise_errors: bool = False,
    ) -> Iterator[RecordPrediction]:
        """Predict every record (paths or [`ECGRecord`]s), yielding each result, in order, once it is complete.

        A record that cannot be read or used, for any reason, yields a `RecordPrediction` with `error` set (with
        `raise_errors=True` the first such error is raised instead); the others are unaffected. `sampling_rate`,
        `lead_names` and `units` apply to files that do not carry them (`.csv`, `.npy`); a `sampling_rate` that is
        no plausible rate raises a `ValueError` before any work.
        """
        if sampling_rate is not None:
            sampling_rate = check_sampling_rate(sampling_rate, "sampling_rate")
        lead_names = parse_lead_names(lead_names)
        records = list(records)
        pending: deque[_Pending] = deque()
        queue: list[tuple[_Pending, torch.Tensor, torch.Tensor]] = []  # windows waiting for a full batch

        def fail(item: _Pending, err: Exception):
            name = item.result.name
            if isinstance(err, ECGDataError):
                # The problem alone when it is about the record itself; with the file when another file is at fault.
                item.result.error = err.problem if err.path == name else str(err)
            else:
                item.result.error = f"{type(err).__name__}: {err}"
            item.logits, item.open = [], False
            queue[:] = [entry for entry in queue if entry[0] is not item]
            if raise_errors:
                raise err if isinstance(err, ECGDataError) else ECGDataError(name, item.result.error) from err

        def flush(final=False):
            while queue and (final or sum(len(values) for _, values, _ in queue) >= self.batch_size):
                entries = list(queue)
                queue.clear()
                values = torch.cat([v for _, v, _ in entries])
                masks = torch.cat([m for _, _, m in entries])
                try:
                    logits = self.window_logits(values, masks)
                except Exception:
                    logits = None  # the model refused something the checks let through: find whose windows
                start = 0
                for item, batch, mask in entries:
                    rows = slice(start, start + len(batch))
                    start += len(batch)
                    if item.result.error is not None:
                        continue
                    try:
                        item.logits.append(logits[rows] if logits is not None else self.window_logits(batch, mask))
                    except Exception as err:
                        fail(item, err)

        def finished():
            while pending and not pending[0].open and not any(entry[0] is pending[0] for entry in queue):
                item = pending.popleft()
                yield item.result if item.result.error is not None else self._finish(item)

        for source in _progress(records, progress):
            name = source.name if isinstance(source, ECGRecord) else str(source)
            item = _Pending(RecordPrediction(name=name))
            pending.append(item)
            try:
                record = source
                if not isinstance(source, ECGRecord):
                    record = read_record(source, sampling_rate, lead_names, units)
                for windows in self.iter_windows(record):
                    queue.append((item, windows.input_values, windows.attention_mask))
                    lengths = windows.attention_mask.sum(1).tolist()
                    item.windows.extend(zip(windows.window_start.tolist(), lengths))
                    flush()
                    if item.result.error is not None:
                        break
                if item.result.error is None:
                    result = item.result
                    result.sampling_rate, result.duration, result.notes = (
                        record.sampling_rate,
                        record.duration,
                        windows.notes,
                    )
            except Exception as err:
                fail(item, err)
            item.open = False
            yield from finished()
        flush(final=True)
        yield from finished()


@dataclass
class _Pending:
    """A record being predicted: its result, the logits of its windows so far and their (start, length)."""

    result: RecordPrediction
    logits: list = field(default_factory=list)
    windows: list = field(default_factory=list)
    open: bool = True


def _progress(items: list, enabled: bool | None):
    """A tqdm bar on stderr over the records (`enabled=None`: only for several records on a terminal)."""
    if enabled is None:
        enabled = len(items) > 1 and sys.stderr.isatty()
    if not enabled:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional
        return items
    return tqdm(items, unit="record", file=sys.stderr, desc="ecgmamba-predict")


def predict(records, model, **kwargs) -> list[RecordPrediction]:
    """Convenience: `predict(["a.hea", "b.mat"], model="path/or/repo")`; `kwargs` split between
    [`ECGPredictor`] and [`ECGPredictor.predict`]."""
    predict_keys = {"sampling_rate", "lead_names", "units", "progress", "raise_errors"}
    call = {k: kwargs.pop(k) for k in list(kwargs) if k in predict_keys}
    predictor = model if isinstance(model, ECGPredictor) else ECGPredictor.from_pretrained(model, **kwargs)
    return predictor.predict(records if isinstance(records, (list, tuple)) else [records], **call)


__all__ = [
    "DEFAULT_THRESHOLD",
    "iter_record_windows",
    "ECGPredictor",
    "RecordPrediction",
    "RecordScores",
    "RecordWindows",
    "load_checkpoint",
    "predict",
    "record_scores",
    "record_windows",
    "resolve_device",
    "resolve_thresholds",
]
