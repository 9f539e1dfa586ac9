"""Feature extractor for ECGMamba: turns raw 12-lead records into model inputs.

Ships inside every checkpoint (`preprocessor_config.json`), so a user with a WFDB record and a checkpoint needs no
other code: sampling-rate conversion, lead order by name, units, normalisation and cropping/padding all live here.
"""

from fractions import Fraction

import numpy as np
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature

from .ecg_records import (
    STANDARD_LEADS,
    ECGDataError,
    as_signal_array,
    canonical_lead_name,
    lead_columns,
    millivolt_factors,
)


def resample_signal(signal: np.ndarray, orig_fs: float, target_fs: float) -> np.ndarray:
    """Polyphase resampling of a `(samples, leads)` array along time.

    Uses `scipy.signal.resample_poly` (anti-aliasing FIR filter), exact for rational rate ratios such as
    500 -> 100 Hz or 257 -> 100 Hz. Returns float32 with `round(samples * target_fs / orig_fs)` samples.
    """
    try:
        from scipy.signal import resample_poly
    except ImportError as err:  # a dependency of the package; a checkpoint used alone needs it only to resample
        raise ImportError("Resampling ECG records needs scipy: pip install scipy") from err

    signal = np.asarray(signal, dtype=np.float32)
    if orig_fs <= 0 or target_fs <= 0:
        raise ValueError(f"Sampling rates must be positive, got {orig_fs} Hz -> {target_fs} Hz.")
    if orig_fs == target_fs:
        return signal
    ratio = Fraction(float(target_fs) / float(orig_fs)).limit_denominator(1000)
    out = resample_poly(signal, ratio.numerator, ratio.denominator, axis=0)
    return out.astype(np.float32, copy=False)


class ECGMambaFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Turns raw ECG records into ECGMamba inputs: resamples to the model's rate, puts the leads in the canonical order by
    name, converts units to millivolts, normalises with statistics fitted on the training split, and crops or pads to
    the model's window with an `attention_mask`. Bad records (NaN/inf, flat or missing leads, unknown lead names, no
    sampling rate) raise an `ECGDataError` (a `ValueError`) naming the record and the problem.

    It owns the window layout: with `return_windows=True` a record becomes windows of `window_seconds` every
    `window_stride_seconds`, the last aligned to the record's end, and the output says which record and which start
    sample each window has ([`window_starts`] is the rule, used by training's evaluation too).

    Args:
        feature_size (`int`, *optional*, defaults to 12):
            Number of leads the model takes.
        sampling_rate (`int`, *optional*, defaults to 100):
            Sampling rate (Hz) of the model's inputs; records at other rates are resampled (polyphase filter).
        window_seconds (`float`, *optional*, defaults to 10.0):
            Window length in seconds: longer records are cropped (or split with `return_windows=True`), shorter
            ones padded and masked.
        window_stride_seconds (`float`, *optional*):
            Stride of the sliding windows over long records; `None` means half a window. Training writes the stride
            its evaluation used, so that inference slides the same windows.
        lead_names (`list[str]`, *optional*, defaults to the 12 standard leads):
            Lead order of the model's inputs.
        mean (`list[float]`, *optional*):
            Per-lead mean (mV) subtracted when `do_normalize=True`; fitted with [`~ECGMambaFeatureExtractor.fit`].
        std (`list[float]`, *optional*):
            Per-lead standard deviation (mV) divided by when `do_normalize=True`.
        do_normalize (`bool`, *optional*, defaults to `False`):
            Standardise each lead with `mean` and `std`. `False` keeps millivolts, which the model is trained on by
            default (BatchNorm in the encoder already rescales).
        crop_position (`str`, *optional*, defaults to `"start"`):
            Which part of a longer record a single window keeps: `"start"` or `"center"`.
        min_samples (`int`, *optional*, defaults to 63):
            Fewest samples (at `sampling_rate`) a record may have: the model's `config.min_samples` (ECGMamba:
            its encoder's receptive field).
        flat_lead_threshold (`float`, *optional*, defaults to 1e-4):
            A lead whose standard deviation (mV) is below this is flat (disconnected electrode) and rejected.
        padding_value (`float`, *optional*, defaults to 0.0):
            Value of padded samples (they are also masked out).
        return_attention_mask (`bool`, *optional*, defaults to `True`):
            Return the `attention_mask` (1 = real sample, 0 = padding).
    """

    model_input_names = ["input_values", "attention_mask"]

    def __init__(
        self,
        feature_size: int = 12,
        sampling_rate: int = 100,
        window_seconds: float = 10.0,
        window_stride_seconds: float | None = None,
        lead_names: list[str] | tuple[str, ...] = STANDARD_LEADS,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        do_normalize: bool = False,
        crop_position: str = "start",
        min_samples: int = 63,
        flat_lead_threshold: float = 1e-4,
        padding_value: float = 0.0,
        return_attention_mask: bool = True,
        **kwargs,
    ):
        super().__init__(
            feature_size=feature_size,
            sampling_rate=sampling_rate,
            padding_value=padding_value,
            return_attention_mask=return_attention_mask,
            **kwargs,
        )
        self.window_seconds = window_seconds
        if window_stride_seconds is not None and not window_stride_seconds > 0:
            raise ValueError(f"window_stride_seconds must be positive, got {window_stride_seconds!r}.")
        self.window_stride_seconds = window_stride_seconds
        self.lead_names = [str(name) for name in lead_names]
        if len(self.lead_names) != feature_size:
            raise ValueError(f"lead_names has {len(self.lead_names)} names but feature_size is {feature_size}.")
        self.mean = None if mean is None else [float(v) for v in mean]
        self.std = None if std is None else [float(v) for v in std]
        self.do_normalize = do_normalize
        if do_normalize and (self.mean is None or self.std is None):
            raise ValueError(
                "do_normalize=True needs per-lead `mean` and `std`: call `fit(...)` on the training records."
            )
        if crop_position not in ("start", "center"):
            raise ValueError(f"crop_position must be 'start' or 'center', got {crop_position!r}.")
        self.crop_position = crop_position
        self.min_samples = int(min_samples)
        self.flat_lead_threshold = flat_lead_threshold

    @classmethod
    def from_model_config(cls, config, **kwargs) -> "ECGMambaFeatureExtractor":
        """The extractor that matches a model config (rate, window, leads, shortest record it can read)."""
        kwargs.setdefault("min_samples", config.min_samples)
        return cls(
            feature_size=config.num_leads,
            sampling_rate=config.sampling_rate,
            window_seconds=config.window_seconds,
            **kwargs,
        )

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sampling_rate))

    @property
    def window_stride_samples(self) -> int:
        """Stride of the sliding windows in samples at the model rate (half a window unless set)."""
        seconds = self.window_stride_seconds or self.window_seconds / 2
        return max(int(round(seconds * self.sampling_rate)), 1)

    def fit(self, signals, do_normalize: bool = True) -> "ECGMambaFeatureExtractor":
        """Fit per-lead mean and std (mV) on training signals already in the model's layout `(samples, leads)`."""
        count, total, total_sq = 0, np.zeros(self.feature_size), np.zeros(self.feature_size)
        for signal in signals:
            signal = np.asarray(signal, dtype=np.float64)
            if signal.ndim != 2 or signal.shape[1] != self.feature_size:
                raise ValueError(f"fit expects (samples, {self.feature_size}) arrays, got shape {signal.shape}.")
            count += signal.shape[0]
            total += signal.sum(0)
            total_sq += np.square(signal).sum(0)
        if count == 0:
            raise ValueError("fit got no samples.")
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
        self.mean, self.std = mean.tolist(), np.maximum(std, 1e-6).tolist()
        self.do_normalize = do_normalize
        return self

    def __call__(
        self,
        raw_ecg,
        sampling_rate: float | None = None,
        lead_names: list[str] | None = None,
        units: str | list[str] = "mV",
        padding: bool | str = "max_length",
        truncation: bool = True,
        max_length: int | None = None,
        return_windows: bool = False,
        window_stride_seconds: float | None = None,
        return_tensors: str | None = None,
        return_attention_mask: bool | None = None,
        record_names: list[str] | None = None,
        **kwargs,
    ) -> BatchFeature:
        r"""
        Prepare one record or a list of records.

        Args:
            raw_ecg (`np.ndarray`, `torch.Tensor` or a list of them):
                Each record is `(samples, leads)`, the layout `wfdb.rdsamp` returns.
            sampling_rate (`float`):
                Sampling rate of the raw records in Hz (required: a wrong rate silently changes every heart rate).
            lead_names (`list[str]`, *optional*):
                Names of the record's columns (any case, e.g. `"AVR"`); they are reordered to the model's order.
                If omitted, the record must have exactly the model's leads in the model's order.
            units (`str` or `list[str]`, *optional*, defaults to `"mV"`):
                Physical unit of the samples (`"mV"`, `"uV"`, `"V"`), one for all leads or one per lead.
            padding (`bool` or `str`, *optional*, defaults to `"max_length"`):
                `"max_length"` pads every record to the window, `"longest"` (or `True`) to the longest record of the
                batch, `False` pads nothing (records must then have the same length).
            truncation (`bool`, *optional*, defaults to `True`):
                Crop records longer than `max_length` (at `crop_position`).
            max_length (`int`, *optional*):
                Window in samples at the model rate; defaults to `window_seconds * sampling_rate`.
            return_windows (`bool`, *optional*, defaults to `False`):
                Split each record into windows of `max_length` samples every `window_stride_seconds` (the last one
                aligned to the record's end) instead of cropping; adds `record_index` (window -> record) and
                `window_start` (the window's first sample at the model rate).
            window_stride_seconds (`float`, *optional*):
                Stride of the windows; defaults to this extractor's `window_stride_seconds` (half a window unless
                set).
            return_tensors (`str`, *optional*):
                `"pt"` or `"np"`.
            record_names (`list[str]`, *optional*):
                Names (e.g. file paths) used in error messages.
        """
        if sampling_rate is None:
            raise ValueError(
                "sampling_rate is required: pass the rate of the raw record in Hz (e.g. fields['fs'] from "
                f"wfdb.rdsamp); the model expects {self.sampling_rate} Hz and resamples from the given rate."
            )
        if getattr(raw_ecg, "ndim", 2) not in (2, 3):
            raise ValueError(
                "raw_ecg must be a (samples, leads) array, a (records, samples, leads) array or a list of "
                f"(samples, leads) arrays; got an array of shape {tuple(raw_ecg.shape)}."
            )
        records = [raw_ecg] if _is_single_record(raw_ecg) else list(raw_ecg)
        if not records:
            raise ValueError("raw_ecg is empty: pass one (samples, leads) array or a list of them.")
        names = record_names or [f"record {i}" for i in range(len(records))]
        signals = [
            self._prepare_record(record, float(sampling_rate), lead_names, units, name)
            for record, name in zip(records, names)
        ]

        max_length = max_length or self.window_samples
        record_index = window_start = None
        if return_windows:
            if window_stride_seconds is None:
                stride = self.window_stride_samples
            else:
                stride = max(int(round(window_stride_seconds * self.sampling_rate)), 1)
            signals, record_index, window_start = split_windows(signals, max_length, stride)
        elif truncation:
            signals = [self._crop(signal, max_length) for signal in signals]

        if padding in (True, "longest"):
            target = max(len(signal) for signal in signals)
        elif padding == "max_length":
            target = max(max_length, max(len(signal) for signal in signals))
        elif padding in (False, "do_not_pad"):
            target = len(signals[0])
            if any(len(signal) != target for signal in signals):
                raise ValueError("Records have different lengths: use padding='longest' or 'max_length'.")
        else:
            raise ValueError(f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}.")

        input_values = np.full((len(signals), target, self.feature_size), self.padding_value, dtype=np.float32)
        attention_mask = np.zeros((len(signals), target), dtype=np.int32)
        for i, signal in enumerate(signals):
            input_values[i, : len(signal)] = signal
            attention_mask[i, : len(signal)] = 1

        data = {"input_values": input_values}
        if return_attention_mask if return_attention_mask is not None else self.return_attention_mask:
            data["attention_mask"] = attention_mask
        if record_index is not None:
            data["record_index"] = np.asarray(record_index, dtype=np.int64)
            data["window_start"] = np.asarray(window_start, dtype=np.int64)
        return BatchFeature(data, tensor_type=return_tensors)

    def _prepare_record(self, record, sampling_rate, lead_names, units, name) -> np.ndarray:
        """One raw record -> float32 `(samples, feature_size)` at the model rate, canonical leads, mV, normalised."""
        signal = as_signal_array(record, name)
        if lead_names is None:
            if signal.shape[1] != self.feature_size:
                hint = " (it looks transposed: pass (samples, leads))" if signal.shape[0] == self.feature_size else ""
                raise ECGDataError(
                    name,
                    f"expected {self.feature_size} leads {self.lead_names} in columns, got shape {signal.shape}{hint}; "
                    "pass lead_names=... to reorder leads by name",
                )
            lead_names = self.lead_names
        lead_names = list(lead_names)
        if len(lead_names) != signal.shape[1]:
            raise ECGDataError(name, f"{len(lead_names)} lead names for {signal.shape[1]} columns {signal.shape}")
        columns = lead_columns(lead_names, self.lead_names, name)
        signal = signal[:, columns] * millivolt_factors(units, len(lead_names), name)[columns]

        bad = ~np.isfinite(signal)
        if bad.any():
            leads = [self.lead_names[j] for j in np.flatnonzero(bad.any(0))]
            raise ECGDataError(name, f"{int(bad.sum())} NaN/inf samples in lead(s) {leads}; fill or drop them first")
        if signal.shape[0] / sampling_rate * self.sampling_rate < self.min_samples:
            raise ECGDataError(
                name,
                f"{signal.shape[0]} samples at {sampling_rate:g} Hz is shorter than the model's receptive field of "
                f"{self.min_samples} samples at {self.sampling_rate} Hz (the shortest record it can read)",
            )
        flat = signal.std(0) < self.flat_lead_threshold
        if flat.any():
            leads = [self.lead_names[j] for j in np.flatnonzero(flat)]
            raise ECGDataError(
                name,
                f"lead(s) {leads} are flat (std < {self.flat_lead_threshold} mV): a disconnected electrode gives the "
                "model a signal it never saw in training",
            )
        signal = resample_signal(signal, sampling_rate, self.sampling_rate)
        if self.do_normalize:
            signal = (signal - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return signal.astype(np.float32, copy=False)

    def _crop(self, signal: np.ndarray, length: int) -> np.ndarray:
        if len(signal) <= length:
            return signal
        start = 0 if self.crop_position == "start" else (len(signal) - length) // 2
        return signal[start : start + length]


def _is_single_record(raw_ecg) -> bool:
    return getattr(raw_ecg, "ndim", None) == 2 or (
        isinstance(raw_ecg, (list, tuple)) and len(raw_ecg) > 0 and np.ndim(raw_ecg[0]) == 1
    )


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """First samples of the windows of `window` samples every `stride` over `length` samples: the last window ends
    with the record, so that no sample is dropped; a record no longer than a window is one (padded) window."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def split_windows(signals: list[np.ndarray], window: int, stride: int):
    """Each record's windows ([`window_starts`]): returns `(windows, record_index, window_start)`, one entry per
    window."""
    windows, record_index, starts_out = [], [], []
    for index, signal in enumerate(signals):
        starts = window_starts(len(signal), window, stride)
        windows.extend(signal[start : start + window] for start in starts)
        record_index.extend([index] * len(starts))
        starts_out.extend(starts)
    return windows, record_index, starts_out


__all__ = [
    "ECGMambaFeatureExtractor",
    "STANDARD_LEADS",
    "canonical_lead_name",
    "resample_signal",
    "split_windows",
    "window_starts",
]
