"""Feature extractor for ECGMamba: turns raw 12-lead records into model inputs.

Ships inside every checkpoint (`preprocessor_config.json`), so a user with a WFDB record and a checkpoint needs no
other code: sampling-rate conversion, lead order by name, units, the record checks, normalisation and the window
layout all live here.

A record is processed a chunk at a time (a minute of samples: [`ChunkedResampler`] resamples chunks exactly as the
whole record would be, [`WindowCutter`] cuts the windows of [`window_starts`] as the samples arrive), so that a 24-hour
record streams through [`ECGMambaFeatureExtractor.iter_windows`] in bounded memory; calling the extractor on arrays
runs the same code on slices of the arrays.
"""

import math
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction

import numpy as np
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import logging

from .ecg_records import (
    AMPLITUDE_CHECK_SECONDS,
    STANDARD_LEADS,
    ECGDataError,
    as_signal_array,
    canonical_lead_name,
    check_ecg_amplitude,
    check_finite_samples,
    check_sampling_rate,
    chunk_samples,
    lead_columns,
    millivolt_factors,
)

logger = logging.get_logger(__name__)


# ------------------------------------------------------------------------------------------------------ resampling


def resampling_ratio(orig_fs: float, target_fs: float) -> tuple[int, int]:
    """`(up, down)`: the rational ratio `target_fs / orig_fs` (denominator at most 1000) the polyphase filter uses."""
    if not orig_fs > 0 or not target_fs > 0:
        raise ValueError(f"Sampling rates must be positive, got {orig_fs} Hz -> {target_fs} Hz.")
    ratio = Fraction(float(target_fs) / float(orig_fs)).limit_denominator(1000)
    return ratio.numerator, ratio.denominator


class ChunkedResampler:
    """Polyphase resampling (`scipy.signal.resample_poly`) of a record that arrives in chunks of any size, equal to
    resampling the whole record at once (to float rounding).

    The record is cut into blocks of about 65536 input samples on a fixed grid (multiples of the ratio's denominator,
    so that each block's outputs start on an output sample) and each block is filtered together with `margin` input
    samples of its neighbours on both sides, more than the anti-aliasing filter's half-length: every output sample
    sees exactly the inputs it sees when the whole record is filtered, and the record's own edges are zero-padded as
    `resample_poly` pads them. A record no longer than a block is filtered in one piece, exactly as `resample_poly`
    filters it. Memory: one block and its margins.

        resampler = ChunkedResampler(500, 100)
        outputs = [out for chunk in chunks for out in resampler.push(chunk)] + resampler.finish()
    """

    block_samples = 65536

    def __init__(self, orig_fs: float, target_fs: float):
        self.up, self.down = resampling_ratio(orig_fs, target_fs)
        self.identity = float(orig_fs) == float(target_fs)
        half = math.ceil(10 * max(self.up, self.down) / self.up)  # resample_poly's half filter, in input samples
        self.margin = self.down * math.ceil((half + 2) / self.down)
        self.block = self.down * math.ceil(self.block_samples / self.down)
        self.buffer: np.ndarray | None = None  # input samples from buffer_start on
        self.buffer_start = self.next_block = 0

    @property
    def _buffer_end(self) -> int:
        return self.buffer_start + (0 if self.buffer is None else len(self.buffer))

    def push(self, chunk: np.ndarray) -> list[np.ndarray]:
        """Add `(samples, leads)` input samples; returns the output blocks now complete (float32)."""
        chunk = np.asarray(chunk, dtype=np.float32)
        if self.identity:
            return [chunk] if len(chunk) else []
        self.buffer = chunk if self.buffer is None else np.concatenate([self.buffer, chunk])
        outputs = []
        while self._buffer_end >= self.next_block + self.block + self.margin:
            outputs.append(self._filter_block())
        return outputs

    def finish(self) -> list[np.ndarray]:
        """The record has ended: the remaining outputs."""
        outputs = []
        while not self.identity and self.next_block < self._buffer_end:
            outputs.append(self._filter_block())
        return outputs

    def _filter_block(self) -> np.ndarray:
        try:
            from scipy.signal import resample_poly
        except ImportError as err:  # a dependency of the package; a checkpoint used alone needs it only to resample
            raise ImportError("Resampling ECG records needs scipy: pip install scipy") from err
        end = self._buffer_end
        first = max(0, self.next_block - self.margin)
        last = min(end, self.next_block + self.block + self.margin)
        segment = self.buffer[first - self.buffer_start : last - self.buffer_start]
        filtered = resample_poly(segment, self.up, self.down, axis=0)
        offset = (self.next_block - first) * self.up // self.down
        if self.next_block + self.block >= end:  # the record's last block: every output to its end
            out = filtered[offset:]
        else:
            out = filtered[offset : offset + self.block * self.up // self.down]
        self.next_block += self.block
        keep = max(self.next_block - self.margin, self.buffer_start) - self.buffer_start
        self.buffer, self.buffer_start = self.buffer[keep:], self.buffer_start + keep
        return out.astype(np.float32, copy=False)


def resample_signal(signal: np.ndarray, orig_fs: float, target_fs: float) -> np.ndarray:
    """Polyphase resampling of a whole `(samples, leads)` array along time (what the dataset builders store).

    Uses `scipy.signal.resample_poly` (anti-aliasing FIR filter), exact for rational rate ratios such as
    500 -> 100 Hz or 257 -> 100 Hz, through [`ChunkedResampler`], so that a record resampled whole here and one
    streamed by the feature extractor are the same. Returns float32 with `ceil(samples * target_fs / orig_fs)` samples.
    """
    resampler = ChunkedResampler(orig_fs, target_fs)
    parts = resampler.push(signal) + resampler.finish()
    if not parts:
        return np.zeros((0,) + np.shape(signal)[1:], dtype=np.float32)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


# ------------------------------------------------------------------------------------------------------ windows


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


class WindowCutter:
    """The windows of [`window_starts`] cut from a signal that arrives in chunks, without knowing its length in
    advance: windows every `stride` as soon as their samples are there, and at the end the window aligned to the
    record's end (or the whole record, when it is shorter than a window). Keeps at most a window and a chunk.

        cutter = WindowCutter(1000, 500)
        windows = [w for chunk in chunks for w in cutter.push(chunk)] + cutter.finish()   # (start, samples) pairs
    """

    def __init__(self, window: int, stride: int):
        self.window, self.stride = int(window), int(stride)
        self.buffer: np.ndarray | None = None
        self.buffer_start = self.next_start = 0
        self.last_start: int | None = None

    def push(self, chunk: np.ndarray) -> list[tuple[int, np.ndarray]]:
        self.buffer = chunk if self.buffer is None else np.concatenate([self.buffer, chunk])
        end = self.buffer_start + len(self.buffer)
        windows = []
        while self.next_start + self.window <= end:
            windows.append(self._cut(self.next_start, self.window))
            self.next_start += self.stride
        # Keep what the next windows need, and always the last window's worth for the final, end-aligned one.
        keep_from = min(self.next_start, end - self.window)
        if keep_from > self.buffer_start:
            self.buffer = self.buffer[keep_from - self.buffer_start :]
            self.buffer_start = keep_from
        return windows

    def finish(self) -> list[tuple[int, np.ndarray]]:
        if self.buffer is None:
            return []
        end = self.buffer_start + len(self.buffer)
        if end <= self.window:
            return [] if self.last_start == 0 else [self._cut(0, end)]
        if self.last_start != end - self.window:
            return [self._cut(end - self.window, self.window)]
        return []

    def _cut(self, start: int, length: int) -> tuple[int, np.ndarray]:
        self.last_start = start
        return start, self.buffer[start - self.buffer_start : start - self.buffer_start + length]


# ------------------------------------------------------------------------------------------------------ extractor


class ECGMambaFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Turns raw ECG records into ECGMamba inputs: checks the record, resamples it to the model's rate, puts the leads in
    the canonical order by name, converts units to millivolts, normalises with statistics fitted on the training split,
    and cuts the model's windows (padded with an `attention_mask` when the record is shorter). Bad records (an
    implausible sampling rate or amplitude, NaN/inf samples, flat, missing or unknown leads, too short) raise an
    `ECGDataError` (a `ValueError`) naming the record and the problem.

    It owns the window layout: with `return_windows=True` (and always in [`iter_windows`]) a record becomes windows of
    `window_seconds` every `window_stride_seconds`, the last aligned to the record's end, and the output says which
    record and which start sample each window has ([`window_starts`] is the rule, used by training's evaluation too).
    Without it a longer record is cropped to one window, with a logged warning saying so.

    Args:
        feature_size (`int`, *optional*, defaults to 12):
            Number of leads the model takes.
        sampling_rate (`int`, *optional*, defaults to 100):
            Sampling rate (Hz) of the model's inputs; records at other rates are resampled (polyphase filter).
        window_seconds (`float`, *optional*, defaults to 10.0):
            Window length in seconds: longer records are split into windows (or cropped to one), shorter ones padded
            and masked.
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
        check_amplitude (`bool`, *optional*, defaults to `True`):
            Refuse records whose amplitude cannot be an ECG in mV (`ecg_records.check_ecg_amplitude`: a record in uV
            or ADC counts, or with a header gain off by 10). Turn off only for a record whose amplitude is real.
        padding_value (`float`, *optional*, defaults to 0.0):
            Value of padded samples (they are also masked out).
        return_attention_mask (`bool`, *optional*, defaults to `True`):
            Return the `attention_mask` (int64: 1 = real sample, 0 = padding; the dtype the ONNX graph takes).
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
        check_amplitude: bool = True,
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
        self.check_amplitude = bool(check_amplitude)

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
        return self._stride_samples(None)

    def _stride_samples(self, window_stride_seconds: float | None) -> int:
        seconds = window_stride_seconds or self.window_stride_seconds or self.window_seconds / 2
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
        sampling_rate: float | Sequence[float] | None = None,
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
        check_amplitude: bool | None = None,
        **kwargs,
    ) -> BatchFeature:
        r"""
        Prepare one record or a list of records.

        Args:
            raw_ecg (`np.ndarray`, `torch.Tensor` or a list of them):
                Each record is `(samples, leads)`, the layout `wfdb.rdsamp` returns.
            sampling_rate (`float` or `list[float]`):
                Sampling rate of the raw records in Hz, one for all or one per record (required: a wrong rate
                silently changes every heart rate). A positive, finite number of Hz in 50-20000 Hz.
            lead_names (`list[str]`, *optional*):
                Names of the record's columns (any case, e.g. `"AVR"`); they are reordered to the model's order.
                If omitted, the record must have exactly the model's leads in the model's order.
            units (`str` or `list[str]`, *optional*, defaults to `"mV"`):
                Physical unit of the samples (`"mV"`, `"uV"`, `"V"`), one for all leads or one per lead.
            padding (`bool` or `str`, *optional*, defaults to `"max_length"`):
                `"max_length"` pads every record to the window, `"longest"` (or `True`) to the longest record of the
                batch, `False` pads nothing (records must then have the same length).
            truncation (`bool`, *optional*, defaults to `True`):
                Crop records longer than `max_length` (at `crop_position`), with a logged warning; use
                `return_windows=True` to keep every sample.
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
            check_amplitude (`bool`, *optional*):
                Overrides the extractor's `check_amplitude` for this call.
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
        rates = self._sampling_rates(sampling_rate, names)
        max_length = max_length or self.window_samples

        record_index = window_start = None
        if return_windows:
            stride = self._stride_samples(window_stride_seconds)
            signals, record_index, window_start = [], [], []
            for index, (record, rate, name) in enumerate(zip(records, rates, names)):
                for start, values in self._windows(
                    _array_chunks(record, rate, name),
                    rate,
                    lead_names,
                    units,
                    name,
                    max_length,
                    stride,
                    check_amplitude,
                ):
                    signals.append(values)
                    record_index.append(index)
                    window_start.append(start)
        else:
            signals = []
            for record, rate, name in zip(records, rates, names):
                chunks = self._model_chunks(
                    _array_chunks(record, rate, name), rate, lead_names, units, name, check_amplitude
                )
                signal = np.concatenate(list(chunks))
                if truncation and len(signal) > max_length:
                    signal = self._crop(signal, max_length, name)
                signals.append(signal)

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

        data = self._pad(signals, target)
        if not (return_attention_mask if return_attention_mask is not None else self.return_attention_mask):
            del data["attention_mask"]
        if record_index is not None:
            data["record_index"] = np.asarray(record_index, dtype=np.int64)
            data["window_start"] = np.asarray(window_start, dtype=np.int64)
        return BatchFeature(data, tensor_type=return_tensors)

    def iter_windows(
        self,
        chunks,
        sampling_rate: float,
        lead_names: Sequence[str] | None = None,
        units: str | Sequence[str] = "mV",
        name: str = "record",
        window_stride_seconds: float | None = None,
        batch_size: int = 32,
        check_amplitude: bool | None = None,
        return_tensors: str | None = None,
    ) -> Iterator[BatchFeature]:
        """Stream one record's windows in batches, in memory bounded by a chunk and a batch, whatever its length.

        `chunks` is the record: a `(samples, leads)` array, or an iterable of consecutive `(samples, leads)` arrays
        (`ECGRecord.chunks()`, which reads a long file a minute at a time). Yields `BatchFeature`s of up to
        `batch_size` windows: `input_values` `(windows, window_samples, leads)`, `attention_mask` (int64) and
        `window_start` (each window's first sample at the model rate). The windows and values are those of
        `self(record, return_windows=True)`; the record checks run on the way (an `ECGDataError` may come after some
        windows: discard them).
        """
        rate = self._sampling_rates(sampling_rate, [name])[0]
        if not hasattr(chunks, "__next__") and (hasattr(chunks, "shape") or not isinstance(chunks, Iterable)):
            chunks = _array_chunks(chunks, rate, name)
        window, stride = self.window_samples, self._stride_samples(window_stride_seconds)
        batch: list[tuple[int, np.ndarray]] = []
        for item in self._windows(chunks, rate, lead_names, units, name, window, stride, check_amplitude):
            batch.append(item)
            if len(batch) == batch_size:
                yield self._batch(batch, window, return_tensors)
                batch = []
        if batch:
            yield self._batch(batch, window, return_tensors)

    def _batch(self, windows, length, return_tensors) -> BatchFeature:
        data = self._pad([values for _, values in windows], length)
        data["window_start"] = np.asarray([start for start, _ in windows], dtype=np.int64)
        return BatchFeature(data, tensor_type=return_tensors)

    def _pad(self, signals: list[np.ndarray], length: int) -> dict:
        input_values = np.full((len(signals), length, self.feature_size), self.padding_value, dtype=np.float32)
        attention_mask = np.zeros((len(signals), length), dtype=np.int64)
        for i, signal in enumerate(signals):
            input_values[i, : len(signal)] = signal
            attention_mask[i, : len(signal)] = 1
        return {"input_values": input_values, "attention_mask": attention_mask}

    def _sampling_rates(self, sampling_rate, names: list[str]) -> list[float]:
        """One checked rate per record (a single rate for all, or one per record), before any work."""
        if isinstance(sampling_rate, (list, tuple, np.ndarray)):
            if len(sampling_rate) != len(names):
                raise ValueError(
                    f"{len(sampling_rate)} sampling rates for {len(names)} records: give one or one each."
                )
            return [check_sampling_rate(rate, name) for rate, name in zip(sampling_rate, names)]
        return [check_sampling_rate(sampling_rate, name) for name in names]

    def _windows(self, chunks, sampling_rate, lead_names, units, name, window, stride, check_amplitude):
        """`(start, values)` of each window of one record, as its chunks arrive ([`WindowCutter`])."""
        cutter = WindowCutter(window, stride)
        for chunk in self._model_chunks(chunks, sampling_rate, lead_names, units, name, check_amplitude):
            yield from cutter.push(chunk)
        yield from cutter.finish()

    def _model_chunks(self, chunks, sampling_rate, lead_names, units, name, check_amplitude) -> Iterator[np.ndarray]:
        """One record's raw chunks -> float32 chunks at the model rate, in the model's lead order, in mV, normalised.

        The checks run on the way: finite samples in every chunk; the amplitude (in mV, before resampling) on the first
        `AMPLITUDE_CHECK_SECONDS`, before anything is resampled; the length and flat leads (over the whole record)
        when the record ends, before its last samples come out.
        """
        check_amplitude = self.check_amplitude if check_amplitude is None else check_amplitude
        resampler = ChunkedResampler(sampling_rate, self.sampling_rate)
        head_samples = int(round(AMPLITUDE_CHECK_SECONDS * sampling_rate))
        head: list[np.ndarray] | None = [] if check_amplitude else None
        columns = factors = column_units = shift = None
        count, sums, squares = 0, 0.0, 0.0
        for chunk in chunks:
            chunk = as_signal_array(chunk, name, dtype=None)
            if columns is None:
                columns, factors, column_units = self._columns(chunk.shape, lead_names, units, name)
            elif chunk.shape[1] != len(factors):
                raise ECGDataError(name, f"a chunk of shape {chunk.shape} after chunks of {len(factors)} columns")
            if not len(chunk):
                continue
            signal = np.asarray(chunk[:, columns], dtype=np.float64) * factors[columns]
            check_finite_samples(signal, sampling_rate, self.lead_names, name, count)
            shift = signal[0].copy() if shift is None else shift  # flat-lead statistics, shifted for precision
            sums, squares = sums + (signal - shift).sum(0), squares + np.square(signal - shift).sum(0)
            count += len(signal)
            if head is not None:
                head.append(signal)
                if count < head_samples:
                    continue
                signal, head = np.concatenate(head), None
                check_ecg_amplitude(signal, sampling_rate, name, column_units)
            yield from self._normalised(resampler.push(signal))
        if columns is None or count == 0:
            raise ECGDataError(name, "the record has no samples")
        if count / sampling_rate * self.sampling_rate < self.min_samples:
            raise ECGDataError(
                name,
                f"{count} samples at {sampling_rate:g} Hz is shorter than the model's receptive field of "
                f"{self.min_samples} samples at {self.sampling_rate} Hz (the shortest record it can read)",
            )
        if head is not None:
            signal = np.concatenate(head)
            check_ecg_amplitude(signal, sampling_rate, name, column_units)
        std = np.sqrt(np.maximum(squares / count - np.square(sums / count), 0.0))
        flat = std < self.flat_lead_threshold
        if flat.any():
            leads = [self.lead_names[j] for j in np.flatnonzero(flat)]
            raise ECGDataError(
                name,
                f"lead(s) {leads} are flat (std < {self.flat_lead_threshold} mV): a disconnected electrode gives the "
                "model a signal it never saw in training",
            )
        if head is not None:
            yield from self._normalised(resampler.push(signal))
        yield from self._normalised(resampler.finish())

    def _normalised(self, chunks: list[np.ndarray]) -> Iterator[np.ndarray]:
        for chunk in chunks:
            if self.do_normalize:
                chunk = (chunk - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
            yield chunk.astype(np.float32, copy=False)

    def _columns(self, shape, lead_names, units, name):
        """The record's columns in the model's lead order, each column's factor to mV, the units of those columns."""
        if lead_names is None:
            if shape[1] != self.feature_size:
                hint = " (it looks transposed: pass (samples, leads))" if shape[0] == self.feature_size else ""
                raise ECGDataError(
                    name,
                    f"expected {self.feature_size} leads {self.lead_names} in columns, got shape "
                    f"{tuple(shape)}{hint}; pass lead_names=... to reorder leads by name",
                )
            lead_names = self.lead_names
        lead_names = list(lead_names)
        if len(lead_names) != shape[1]:
            raise ECGDataError(name, f"{len(lead_names)} lead names for {shape[1]} columns {tuple(shape)}")
        columns = lead_columns(lead_names, self.lead_names, name)
        factors = millivolt_factors(units, len(lead_names), name)
        per_column = [units] * len(lead_names) if isinstance(units, str) else list(units)
        return columns, factors, [per_column[j] for j in columns]

    def _crop(self, signal: np.ndarray, length: int, name: str) -> np.ndarray:
        start = 0 if self.crop_position == "start" else (len(signal) - length) // 2
        logger.warning(
            f"{name}: a {len(signal) / self.sampling_rate:g} s record cropped to {length / self.sampling_rate:g} s "
            f"from {start / self.sampling_rate:g} s (crop_position={self.crop_position!r}); pass return_windows=True "
            "for every window of the record"
        )
        return signal[start : start + length]


def _is_single_record(raw_ecg) -> bool:
    return getattr(raw_ecg, "ndim", None) == 2 or (
        isinstance(raw_ecg, (list, tuple)) and len(raw_ecg) > 0 and np.ndim(raw_ecg[0]) == 1
    )


def _array_chunks(record, sampling_rate: float, name) -> Iterator[np.ndarray]:
    """An in-memory record as consecutive slices (views) of `CHUNK_SECONDS`: the extractor's one path for arrays and
    files alike."""
    record = as_signal_array(record, name, dtype=None)
    size = chunk_samples(sampling_rate)
    for start in range(0, max(len(record), 1), size):
        yield record[start : start + size]


__all__ = [
    "ChunkedResampler",
    "ECGMambaFeatureExtractor",
    "STANDARD_LEADS",
    "WindowCutter",
    "canonical_lead_name",
    "resample_signal",
    "resampling_ratio",
    "split_windows",
    "window_starts",
]
