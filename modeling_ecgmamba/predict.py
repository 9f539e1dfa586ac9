"""Diagnose ECG records with an ECGMamba checkpoint: record readers, a Python API and the `ecgmamba-predict` script.

    ecgmamba-predict --model PATH_OR_REPO RECORD [RECORD ...] [--json out.json] [--explain out.png]

A RECORD is a WFDB record (the `.hea`, the data file or the name without extension), a CPSC2018 `.mat` (MATLAB struct
`ECG` with `data` 12 x N in mV at 500 Hz), a `.csv` (one column per lead named in the header, an optional `time`
column; `--fs` gives the rate when there is no time column) or a `.npy` array with `--fs` and `--leads`.

Each record is read, checked (missing data file, header that disagrees with its data, missing leads, NaN gaps) and
turned into model windows by the checkpoint's feature extractor (resampling, lead order, units, sliding windows over
long records, padding and masking of short ones). Window probabilities are averaged per record (`--aggregate max`
takes the largest instead); diagnoses are the classes at or above their threshold (`config.thresholds`, chosen on
validation by the trainer, else 0.5). A bad record gets a clear message and never stops the others; the exit code is
1 when any record failed.

Python:

    from modeling_ecgmamba.predict import ECGPredictor
    predictor = ECGPredictor.from_pretrained("path/to/checkpoint")
    results = predictor.predict(["00001_hr.hea", "A1980.mat"])
    print(results[0].diagnoses, results[0].probabilities)

This file travels inside checkpoints with the custom pipeline (`pipeline_ecgmamba.py` reads records with it): it
imports only NumPy, PyTorch and transformers at module level; wfdb, scipy, tqdm and matplotlib are imported when used.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .feature_extraction_ecgmamba import STANDARD_LEADS, canonical_lead_name

DEFAULT_THRESHOLD = 0.5
AGGREGATIONS = ("mean", "max")
CPSC_SAMPLING_RATE = 500.0  # CPSC2018 .mat files carry no sampling rate; the challenge data are 500 Hz.

# Bytes per sample of the WFDB storage formats whose size can be checked against the header.
_WFDB_BYTES_PER_SAMPLE = {
    "8": 1.0,
    "16": 2.0,
    "24": 3.0,
    "32": 4.0,
    "61": 2.0,
    "80": 1.0,
    "160": 2.0,
    "212": 1.5,
    "310": 4 / 3,
    "311": 4 / 3,
}
_TIME_COLUMN = re.compile(r"^(time|t)\s*[_ ]?\s*[\[(]?\s*(s|sec|seconds|ms)?\s*[\])]?$", re.IGNORECASE)


class RecordError(ValueError):
    """A record that cannot be read or used. `str(err)` names the file; `err.problem` is the message alone."""

    def __init__(self, path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self):
        return type(self), (self.path, self.problem)


@dataclass
class ECGRecord:
    """A raw record as read from disk: `signal` is `(samples, channels)` in `units` at `sampling_rate` Hz."""

    name: str
    signal: np.ndarray
    sampling_rate: float
    lead_names: list[str]
    units: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not self.units:
            self.units = ["mV"] * len(self.lead_names)
        elif isinstance(self.units, str):
            self.units = [self.units] * len(self.lead_names)

    @property
    def duration(self) -> float:
        return self.signal.shape[0] / self.sampling_rate

    @classmethod
    def from_array(cls, signal, sampling_rate, lead_names=None, units="mV", name="record") -> ECGRecord:
        """An in-memory record `(samples, leads)` (NumPy or torch); `lead_names=None` means the 12 standard leads."""
        if hasattr(signal, "detach"):
            signal = signal.detach().cpu().numpy()
        signal = np.asarray(signal, dtype=np.float64)
        if signal.ndim != 2:
            raise RecordError(name, f"expected a (samples, leads) array, got shape {signal.shape}")
        if sampling_rate is None:
            raise RecordError(name, "sampling_rate is required for an array (the rate of the recording in Hz)")
        return cls(name, signal, float(sampling_rate), parse_lead_names(lead_names) or list(STANDARD_LEADS), units)


# ------------------------------------------------------------------------------------------------------------ readers


def read_record(
    path,
    sampling_rate: float | None = None,
    lead_names: Sequence[str] | None = None,
    units: str = "mV",
) -> ECGRecord:
    """Read one ECG record from disk; raise [`RecordError`] naming the file and the problem.

    Args:
        path: a WFDB record (`.hea`, its data file, or the record name without extension), a CPSC2018 `.mat`, a
            `.csv` or a `.npy`.
        sampling_rate: Hz, for `.csv` without a time column, `.npy` and (to override 500 Hz) CPSC `.mat`; WFDB
            records carry their own (a different value given here is ignored, with a note).
        lead_names: column names of a `.npy` (required) or a header-less `.csv` (default there: the 12 standard
            leads when it has 12 columns); `"standard"` means `I, II, III, aVR, aVL, aVF, V1..V6`.
        units: unit of `.csv`/`.npy` samples (`"mV"`, `"uV"`, `"V"`); WFDB and `.mat` carry their own.
    """
    path = Path(path)
    if isinstance(lead_names, str):
        lead_names = parse_lead_names(lead_names)
    suffix = path.suffix.lower()
    if suffix in (".hea", ".dat") or (suffix == ".mat" and _header_of(path).is_file()):
        record = _read_wfdb(path, _header_of(path))
    elif suffix == "" or not path.exists():
        header = Path(f"{path}.hea")
        if header.is_file():
            record = _read_wfdb(path, header)
        elif not path.exists():
            raise RecordError(path, "file not found")
        else:
            raise RecordError(path, _unsupported(path))
    elif suffix == ".mat":
        record = _read_cpsc_mat(path, sampling_rate)
    elif suffix in (".csv", ".tsv", ".txt"):
        record = _read_csv(path, sampling_rate, lead_names, units)
    elif suffix == ".npy":
        record = _read_npy(path, sampling_rate, lead_names, units)
    else:
        raise RecordError(path, _unsupported(path))
    if suffix in (".hea", ".dat", ".mat", ""):
        given = []
        if sampling_rate is not None and not math.isclose(float(sampling_rate), record.sampling_rate, rel_tol=1e-6):
            given.append(f"--fs {sampling_rate:g} ignored: the record says {record.sampling_rate:g} Hz")
        if lead_names is not None and suffix != ".mat":
            given.append("--leads ignored: the header names the leads")
        record.notes.extend(given)
    return record


def parse_lead_names(text: str | Sequence[str] | None) -> list[str] | None:
    """`"I,II,V1"` -> `["I", "II", "V1"]`; `"standard"` -> the 12 standard leads."""
    if text is None:
        return None
    if isinstance(text, str):
        if text.strip().lower() in ("standard", "12", "12-lead"):
            return list(STANDARD_LEADS)
        text = [name for name in re.split(r"[,;\s]+", text) if name]
    return [str(name).strip() for name in text]


def _unsupported(path: Path) -> str:
    return (
        f"unsupported file type {path.suffix or '(no extension)'!r}: expected a WFDB record (.hea + data file), "
        "a CPSC2018 .mat, a .csv or a .npy"
    )


def _header_of(path: Path) -> Path:
    return path.with_name(path.stem + ".hea") if path.suffix else Path(f"{path}.hea")


def _import_wfdb():
    try:
        import wfdb
    except ImportError as err:  # a base dependency of the package; absent only where the checkpoint runs alone
        raise ImportError("Reading WFDB records needs the wfdb package: pip install wfdb") from err
    return wfdb


def _read_wfdb(path: Path, header_path: Path) -> ECGRecord:
    wfdb = _import_wfdb()
    if not header_path.is_file():
        raise RecordError(path, f"WFDB header {header_path.name} not found")
    base = str(header_path.with_suffix(""))
    try:
        header = wfdb.rdheader(base)
    except Exception as err:  # wfdb raises several types for text that is not a header
        raise RecordError(path, f"not a WFDB header ({type(err).__name__}: {err})") from None
    if getattr(header, "seg_name", None):
        raise RecordError(path, "multi-segment WFDB records are not supported: pass the segments' records instead")
    if not header.n_sig or not header.file_name:
        raise RecordError(path, f"the header {header_path.name} lists no signals")
    if not header.sig_len:
        raise RecordError(path, f"the header {header_path.name} gives no signal length (sig_len)")
    if not header.fs or header.fs <= 0:
        raise RecordError(path, f"the header {header_path.name} gives no sampling rate")
    _check_wfdb_files(path, header_path, header)
    try:
        record = wfdb.rdrecord(base, physical=False, return_res=64)
    except Exception as err:
        raise RecordError(path, f"header does not match its data: {type(err).__name__}: {err}") from None
    checksums = getattr(header, "checksum", None)
    if checksums and all(c is not None for c in checksums):
        computed = record.calc_checksum()
        bad = [name for name, want, got in zip(header.sig_name, checksums, computed) if (want - got) % 65536]
        if bad:
            raise RecordError(
                path,
                f"header does not match its data: checksum of lead(s) {bad} differs from {header_path.name} (wrong "
                "sample count, signal count or format in the header, or a damaged data file)",
            )
    signal = record.dac(expanded=False, return_res=64)  # invalid samples (WFDB's NaN code) become NaN
    return ECGRecord(
        name=str(path),
        signal=np.asarray(signal, dtype=np.float64),
        sampling_rate=float(header.fs),
        lead_names=[str(name) for name in header.sig_name],
        units=[str(unit or "mV") for unit in header.units],
    )


def _check_wfdb_files(path: Path, header_path: Path, header) -> None:
    """Every data file named in the header exists and has the size the header implies."""
    by_file: dict[str, list[int]] = {}
    for index, name in enumerate(header.file_name):
        by_file.setdefault(name, []).append(index)
    for file_name, indices in by_file.items():
        data_path = header_path.parent / file_name
        if not data_path.is_file():
            raise RecordError(path, f"signal file {file_name} named in {header_path.name} not found")
        fmt = str(header.fmt[indices[0]])
        per_sample = _WFDB_BYTES_PER_SAMPLE.get(fmt)
        if per_sample is None:
            continue  # compressed (FLAC) formats: no fixed size
        frame = sum(int((header.samps_per_frame or [1] * header.n_sig)[i] or 1) for i in indices)
        offset = int((header.byte_offset or [0] * header.n_sig)[indices[0]] or 0)
        expected = offset + header.sig_len * frame * per_sample
        actual = data_path.stat().st_size
        # MATLAB-wrapped signals (CinC 2020 .mat) may carry padding after the samples.
        too_long = actual > math.ceil(expected) + 1 and not file_name.lower().endswith(".mat")
        if actual < math.floor(expected) or too_long:
            raise RecordError(
                path,
                f"header does not match its data: {header_path.name} says {header.sig_len} samples x {frame} "
                f"signal(s) in format {fmt} ({math.ceil(expected)} bytes) but {file_name} has {actual} bytes "
                f"({'truncated file' if actual < expected else 'wrong sample or signal count'}?)",
            )


def _read_cpsc_mat(path: Path, sampling_rate: float | None) -> ECGRecord:
    try:
        from scipy.io import loadmat
    except ImportError as err:
        raise ImportError("Reading .mat records needs scipy: pip install scipy") from err
    try:
        contents = loadmat(str(path))
    except Exception as err:  # scipy raises several types for damaged, HDF5 (v7.3) or foreign files
        raise RecordError(path, f"not a readable MATLAB file ({type(err).__name__}: {err})") from None
    variables = sorted(key for key in contents if not key.startswith("__"))
    if "ECG" not in contents:
        if "val" in contents:
            raise RecordError(
                path, f"a WFDB-format signal (variable 'val') without its header {_header_of(path).name}"
            )
        raise RecordError(
            path, f"not a CPSC2018 record: no MATLAB struct 'ECG' with a 'data' field (variables: {variables})"
        )
    try:
        data = np.asarray(contents["ECG"]["data"][0, 0], dtype=np.float64)
    except Exception:
        raise RecordError(
            path, "not a CPSC2018 record: the MATLAB variable 'ECG' has no numeric 'data' field"
        ) from None
    if data.ndim != 2 or 12 not in data.shape:
        raise RecordError(path, f"ECG.data has shape {data.shape}, expected 12 leads x samples")
    signal = data.T if data.shape[0] == 12 else data
    return ECGRecord(
        name=str(path),
        signal=signal,
        sampling_rate=float(sampling_rate or CPSC_SAMPLING_RATE),
        lead_names=list(STANDARD_LEADS),
    )


def _read_csv(path: Path, sampling_rate: float | None, lead_names: list[str] | None, units: str) -> ECGRecord:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise RecordError(path, "not a text file: expected a CSV with one column per lead") from None
    sample = text[:4096]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = [row for row in csv.reader(io.StringIO(text), dialect) if any(cell.strip() for cell in row)]
    if not rows:
        raise RecordError(path, "empty file")
    has_header = any(cell.strip() and not _is_number(cell) for cell in rows[0])
    if has_header:
        names, first_line, rows = [cell.strip() for cell in rows[0]], 2, rows[1:]
    elif lead_names is not None:
        names, first_line = list(lead_names), 1
    elif len(rows[0]) == len(STANDARD_LEADS):
        names, first_line = list(STANDARD_LEADS), 1
    else:
        raise RecordError(path, f"no header row naming the {len(rows[0])} columns: add one or pass --leads")
    if not rows:
        raise RecordError(path, "a header but no samples")
    values = np.empty((len(rows), len(names)), dtype=np.float64)
    for i, row in enumerate(rows):
        if len(row) != len(names):
            raise RecordError(path, f"line {first_line + i} has {len(row)} values, expected {len(names)} ({names})")
        for j, cell in enumerate(row):
            cell = cell.strip()
            try:
                values[i, j] = float(cell) if cell else math.nan
            except ValueError:
                raise RecordError(
                    path, f"line {first_line + i}, column {names[j]!r}: {cell[:40]!r} is not a number"
                ) from None

    time_columns = [j for j, name in enumerate(names) if _TIME_COLUMN.match(name)]
    notes = []
    if time_columns:
        j = time_columns[0]
        scale = 1e-3 if "ms" in names[j].lower() else 1.0
        rate = _rate_from_time(path, values[:, j] * scale)
        if sampling_rate is not None and not math.isclose(rate, float(sampling_rate), rel_tol=0.01):
            raise RecordError(
                path, f"--fs {sampling_rate:g} Hz disagrees with the time column ({rate:g} Hz): drop one of them"
            )
        sampling_rate = float(sampling_rate or rate)
        values = np.delete(values, j, axis=1)
        names = names[:j] + names[j + 1 :]
    elif sampling_rate is None:
        raise RecordError(path, "no sampling rate: add a 'time' column (seconds) or pass --fs")
    return ECGRecord(
        name=str(path), signal=values, sampling_rate=float(sampling_rate), lead_names=names, units=units, notes=notes
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _rate_from_time(path: Path, time: np.ndarray) -> float:
    steps = np.diff(time)
    if len(steps) == 0 or not np.isfinite(steps).all() or (steps <= 0).any():
        raise RecordError(path, "the time column must increase strictly, without gaps or blanks")
    step = float(np.median(steps))
    if np.abs(steps - step).max() > 0.01 * step:
        raise RecordError(path, f"irregular time column (steps from {steps.min():g} to {steps.max():g} s)")
    rate = 1.0 / step
    return float(round(rate)) if abs(rate - round(rate)) < 1e-3 * rate else rate


def _read_npy(path: Path, sampling_rate: float | None, lead_names: list[str] | None, units: str) -> ECGRecord:
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as err:
        raise RecordError(path, f"not a NumPy .npy array ({type(err).__name__}: {err})") from None
    if not isinstance(array, np.ndarray) or array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise RecordError(path, f"expected a 2-D numeric array (samples x leads), got {getattr(array, 'shape', '?')}")
    if sampling_rate is None or lead_names is None:
        raise RecordError(
            path, "a .npy record needs --fs (Hz) and --leads (its column names, e.g. I,II,V1,... or 'standard')"
        )
    leads = len(lead_names)
    notes = []
    if array.shape[1] != leads and array.shape[0] == leads:
        array = array.T
        notes.append(f"array read as {leads} leads x samples (transposed)")
    elif array.shape[1] != leads:
        raise RecordError(path, f"array of shape {array.shape} does not have the {leads} leads named by --leads")
    return ECGRecord(
        name=str(path),
        signal=array.astype(np.float64),
        sampling_rate=float(sampling_rate),
        lead_names=list(lead_names),
        units=units,
        notes=notes,
    )


def select_ecg_leads(record: ECGRecord) -> ECGRecord:
    """Drop channels that are not ECG leads (respiration, markers...), with a note; fail if no lead is left."""
    keep = [j for j, name in enumerate(record.lead_names) if canonical_lead_name(name) is not None]
    if not keep:
        raise RecordError(record.name, f"no ECG lead among the channels {record.lead_names}: not an ECG record?")
    if len(keep) == len(record.lead_names):
        return record
    dropped = [name for j, name in enumerate(record.lead_names) if j not in keep]
    return ECGRecord(
        name=record.name,
        signal=record.signal[:, keep],
        sampling_rate=record.sampling_rate,
        lead_names=[record.lead_names[j] for j in keep],
        units=[record.units[j] for j in keep],
        notes=record.notes + [f"ignored non-ECG channel(s) {dropped}"],
    )


def check_finite(record: ECGRecord) -> None:
    """Raise a [`RecordError`] locating NaN/inf gaps (time and leads), which the model cannot read."""
    bad = ~np.isfinite(record.signal)
    if not bad.any():
        return
    leads = [record.lead_names[j] for j in np.flatnonzero(bad.any(0))]
    rows = bad.any(1).astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], rows, [0]))))
    runs = list(zip(edges[::2], edges[1::2]))
    fs = record.sampling_rate
    where = ", ".join(f"{start / fs:.2f}-{end / fs:.2f} s" for start, end in runs[:3])
    more = f" and {len(runs) - 3} more" if len(runs) > 3 else ""
    raise RecordError(
        record.name,
        f"{int(bad.sum())} missing (NaN/inf) samples in lead(s) {leads} at {where}{more}; the model needs every "
        "lead throughout: crop the record to a clean segment or fill the gap",
    )


def record_windows(feature_extractor, record: ECGRecord, window_stride_seconds: float | None = None):
    """One record -> `(input_values, attention_mask, notes)`: the model's windows (sliding over long records,
    padded and masked for short ones), after the checks above; a [`RecordError`] naming the record otherwise."""
    record = select_ecg_leads(record)
    check_finite(record)
    try:
        features = feature_extractor(
            record.signal,
            sampling_rate=record.sampling_rate,
            lead_names=record.lead_names,
            units=record.units,
            return_windows=True,
            window_stride_seconds=window_stride_seconds,
            return_tensors="pt",
            record_names=[record.name],
        )
    except ValueError as err:
        message, prefix = str(err), f"{record.name}: "
        raise RecordError(record.name, message[len(prefix) :] if message.startswith(prefix) else message) from None
    notes = list(record.notes)
    window = float(feature_extractor.window_seconds)
    if record.duration < window - 1e-9:
        notes.append(
            f"record is {record.duration:.1f} s, shorter than the model's {window:g} s window: padded and masked "
            "(the model reads only the real samples; short records are less reliable)"
        )
    return features["input_values"], features["attention_mask"], notes


# ------------------------------------------------------------------------------------------------------------ predictor


@dataclass
class RecordPrediction:
    """What the model says about one record (or why it could not say anything: `error`)."""

    name: str
    labels: list[str] = field(default_factory=list)
    probabilities: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    diagnoses: list[str] = field(default_factory=list)
    window_probabilities: list[list[float]] = field(default_factory=list)
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
    if the checkpoint carries no code, the installed `modeling_ecgmamba` classes are used. A checkpoint without
    `preprocessor_config.json` gets the extractor that matches its config.
    """
    from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification

    from .feature_extraction_ecgmamba import ECGMambaFeatureExtractor

    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_name_or_path, trust_remote_code=trust_remote_code, **hub_kwargs
        )
    except (OSError, ValueError) as err:
        if not trust_remote_code or "ecgmamba" not in str(_config_type(model_name_or_path, hub_kwargs)):
            raise
        # The checkpoint names its code in auto_map but lacks the files: the installed package serves.
        from .modeling_ecgmamba import ECGMambaForSequenceClassification

        model = ECGMambaForSequenceClassification.from_pretrained(model_name_or_path, **hub_kwargs)
        print(f"note: loaded with the installed modeling_ecgmamba ({type(err).__name__}: {err})", file=sys.stderr)
    try:
        extractor = AutoFeatureExtractor.from_pretrained(
            model_name_or_path, trust_remote_code=trust_remote_code, **hub_kwargs
        )
    except (OSError, ValueError):
        extractor = ECGMambaFeatureExtractor.from_model_config(model.config)
    return model.eval(), extractor


def _config_type(model_name_or_path, hub_kwargs) -> str:
    from transformers import PreTrainedConfig

    try:
        config_dict, _ = PreTrainedConfig.get_config_dict(model_name_or_path, **hub_kwargs)
    except Exception:
        return ""
    return str(config_dict.get("model_type", ""))


class ECGPredictor:
    """Runs an ECGMamba classifier over raw records: windows, batches, aggregation, thresholds.

    Args:
        model: an `ECGMambaForSequenceClassification` (any class with the same call signature and `.logits`).
        feature_extractor: the checkpoint's `ECGMambaFeatureExtractor`.
        device: `"auto"` (CUDA when available), `"cpu"`, `"cuda"`, `"cuda:1"`...
        batch_size: windows per forward pass.
        thresholds: one per class, or a single float for all; default `config.thresholds`, else 0.5.
        aggregation: `"mean"` (default) or `"max"` of the window probabilities per record. Mean is what the
            trainer uses to pick the thresholds (`window_aggregation`), and it keeps a long record's score
            comparable with a 10 s record's; max is more sensitive to episodic findings (a single PVC run) at the
            price of more false alarms the longer the record.
        window_stride_seconds: stride of the sliding windows over long records (default: half a window).
    """

    def __init__(
        self,
        model,
        feature_extractor,
        device: str | torch.device | None = "auto",
        batch_size: int = 32,
        thresholds: float | Sequence[float] | None = None,
        aggregation: str | None = None,
        window_stride_seconds: float | None = None,
    ):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.feature_extractor = feature_extractor
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        config = model.config
        self.labels = [str(config.id2label[i]) for i in range(config.num_labels)]
        self.thresholds = self._resolve_thresholds(thresholds, getattr(config, "thresholds", None))
        self.aggregation = aggregation or getattr(config, "window_aggregation", None) or "mean"
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        self.window_stride_seconds = window_stride_seconds
        self.single_label = getattr(config, "problem_type", None) == "single_label_classification"

    @classmethod
    def from_pretrained(cls, model_name_or_path, trust_remote_code: bool = True, hub_kwargs=None, **kwargs):
        """Load a checkpoint (folder or Hub repo) and wrap it; `kwargs` go to [`ECGPredictor`]."""
        model, extractor = load_checkpoint(
            model_name_or_path, trust_remote_code=trust_remote_code, **(hub_kwargs or {})
        )
        return cls(model, extractor, **kwargs)

    def _resolve_thresholds(self, given, from_config) -> np.ndarray:
        source = given if given is not None else from_config
        if source is None:
            return np.full(len(self.labels), DEFAULT_THRESHOLD)
        if isinstance(source, dict):
            source = [source.get(label, source.get(str(i), DEFAULT_THRESHOLD)) for i, label in enumerate(self.labels)]
        values = np.broadcast_to(np.asarray(source, dtype=np.float64), (len(self.labels),)).copy()
        if values.shape != (len(self.labels),) or not np.isfinite(values).all():
            raise ValueError(f"thresholds must be {len(self.labels)} finite numbers, got {source!r}")
        return values

    @property
    def window_seconds(self) -> float:
        return float(self.feature_extractor.window_seconds)

    # -- preparation ---------------------------------------------------------------------------------------------

    def prepare(self, record: ECGRecord):
        """Checks and windows of one record: returns `(input_values, attention_mask, notes)`; raises per record."""
        return record_windows(self.feature_extractor, record, self.window_stride_seconds)

    # -- inference -----------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def window_probabilities(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None) -> np.ndarray:
        """Probabilities `(windows, classes)` for model-ready windows, in batches of `batch_size`."""
        outputs = []
        for start in range(0, len(input_values), self.batch_size):
            values = input_values[start : start + self.batch_size].to(self.device, torch.float32)
            mask = None if attention_mask is None else attention_mask[start : start + self.batch_size].to(self.device)
            logits = self.model(input_values=values, attention_mask=mask).logits.float()
            outputs.append((logits.softmax(-1) if self.single_label else logits.sigmoid()).cpu().numpy())
        return np.concatenate(outputs).astype(np.float64)

    def _finish(self, result: RecordPrediction, window_probs: np.ndarray) -> RecordPrediction:
        probs = window_probs.max(0) if self.aggregation == "max" else window_probs.mean(0)
        result.labels = list(self.labels)
        result.window_probabilities = window_probs.round(6).tolist()
        result.probabilities = {label: float(p) for label, p in zip(self.labels, probs)}
        result.thresholds = {label: float(t) for label, t in zip(self.labels, self.thresholds)}
        if self.single_label:
            best = int(np.argmax(probs))
            result.diagnoses = [self.labels[best]] if probs[best] >= self.thresholds[best] else []
        else:
            order = np.argsort(-probs, kind="stable")
            result.diagnoses = [self.labels[i] for i in order if probs[i] >= self.thresholds[i]]
        return result

    def predict_signal(
        self,
        signal,
        sampling_rate: float,
        lead_names: Sequence[str] | None = None,
        units: str | Sequence[str] = "mV",
        name: str = "record",
    ) -> RecordPrediction:
        """One in-memory record `(samples, leads)`; raises [`RecordError`] if it cannot be used."""
        record = ECGRecord.from_array(signal, sampling_rate, lead_names, units, name)
        return self.predict([record], raise_errors=True)[0]

    def predict(
        self,
        records: Iterable,
        sampling_rate: float | None = None,
        lead_names: Sequence[str] | str | None = None,
        units: str = "mV",
        progress: bool | None = False,
        raise_errors: bool = False,
    ) -> list[RecordPrediction]:
        """Predict every record (paths or [`ECGRecord`]s), batching windows across records.

        A record that cannot be read or used yields a `RecordPrediction` with `error` set (with
        `raise_errors=True` the first such error is raised instead); the others are unaffected.
        `sampling_rate`, `lead_names` and `units` apply to files that do not carry them (`.csv`, `.npy`).
        """
        records = list(records)
        lead_names = parse_lead_names(lead_names)
        results: list[RecordPrediction] = []
        window_probs: dict[int, list[np.ndarray]] = {}
        queue: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (result index, windows, masks)
        queued = 0

        def flush(final=False):
            nonlocal queue, queued
            while queue and (final or queued >= self.batch_size):
                owners = [i for i, values, _ in queue for _ in range(len(values))]
                values = torch.cat([v for _, v, _ in queue])
                masks = torch.cat([m for _, _, m in queue])
                queue, queued = [], 0
                try:
                    probs = self.window_probabilities(values, masks)
                except ValueError:
                    # The model rejected something the checks let through: find the record, spare the others.
                    probs = None
                    for owner in dict.fromkeys(owners):
                        rows = [k for k, o in enumerate(owners) if o == owner]
                        try:
                            window_probs.setdefault(owner, []).append(
                                self.window_probabilities(values[rows], masks[rows])
                            )
                        except ValueError as err:
                            results[owner].error = str(err)
                            if raise_errors:
                                raise RecordError(results[owner].name, str(err)) from None
                if probs is not None:
                    for k, owner in enumerate(owners):
                        window_probs.setdefault(owner, []).append(probs[k : k + 1])

        for item in _progress(records, progress):
            name = item.name if _is_record(item) else str(item)
            result = RecordPrediction(name=name)
            results.append(result)
            try:
                record = item if _is_record(item) else read_record(item, sampling_rate, lead_names, units)
                values, masks, notes = self.prepare(record)
            except RecordError as err:
                result.error = err.problem
                if raise_errors:
                    raise
                continue
            result.sampling_rate, result.duration, result.notes = record.sampling_rate, record.duration, notes
            queue.append((len(results) - 1, values, masks))
            queued += len(values)
            flush()
        flush(final=True)
        for index, result in enumerate(results):
            if result.ok:
                self._finish(result, np.concatenate(window_probs[index]))
        return results


def _is_record(item) -> bool:
    """An ECGRecord (duck-typed: `python -m modeling_ecgmamba.predict` loads this module twice)."""
    return all(hasattr(item, key) for key in ("signal", "sampling_rate", "lead_names", "units"))


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


# ------------------------------------------------------------------------------------------------------------ CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecgmamba-predict",
        description="Diagnose 12-lead ECG records with an ECGMamba checkpoint (folder or Hugging Face Hub repo).",
        epilog="Exit status: 0 when every record was predicted, 1 when any record failed, 2 for a usage or model error.",
    )
    parser.add_argument(
        "records", nargs="+", metavar="RECORD", help="WFDB .hea (or data file), CPSC .mat, .csv or .npy"
    )
    parser.add_argument("--model", required=True, help="checkpoint folder or Hub repo id")
    parser.add_argument(
        "--fs", type=float, help="sampling rate (Hz) of .csv files without a time column and of .npy files"
    )
    parser.add_argument(
        "--leads", help="column names of .npy (and header-less .csv) files: 'I,II,...,V6' or 'standard'"
    )
    parser.add_argument("--units", default="mV", help="unit of .csv/.npy samples: mV (default), uV or V")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per forward pass (default 32)")
    parser.add_argument("--device", default="auto", help="auto (default: CUDA if available), cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--aggregate", choices=AGGREGATIONS, help="window probabilities per record: mean (default) or max"
    )
    parser.add_argument("--stride", type=float, help="sliding-window stride in seconds (default: half a window)")
    parser.add_argument(
        "--threshold", type=float, help="one threshold for every class (default: the checkpoint's, else 0.5)"
    )
    parser.add_argument("--json", metavar="PATH", help="write machine-readable results to PATH ('-' for stdout)")
    parser.add_argument("--explain", metavar="PNG", help="draw the ECG with the attribution of the predicted class")
    parser.add_argument("--explain-class", help="class to explain (default: the most probable diagnosis)")
    parser.add_argument(
        "--explain-method",
        default="integrated_gradients",
        choices=("integrated_gradients", "gradient_x_input"),
        help="attribution method (default integrated_gradients)",
    )
    parser.add_argument("--explain-steps", type=int, default=32, help="integration steps of integrated gradients")
    parser.add_argument(
        "--no-remote-code", action="store_true", help="use the installed package, not the checkpoint's code"
    )
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="always show a progress bar"
    )
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="never show a progress bar")
    return parser


def explanation_paths(target: str, results: Sequence[RecordPrediction]) -> list[str | None]:
    """`out.png` for a single record; `out_<record>.png` per record (numbered if names collide) otherwise."""
    target_path = Path(target)
    ok = [r for r in results if r.ok]
    if len(ok) <= 1:
        return [str(target_path) if r.ok else None for r in results]
    paths, used = [], set()
    for result in results:
        if not result.ok:
            paths.append(None)
            continue
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(result.name).stem)
        candidate, k = stem, 1
        while candidate in used:
            k += 1
            candidate = f"{stem}-{k}"
        used.add(candidate)
        paths.append(str(target_path.with_name(f"{target_path.stem}_{candidate}{target_path.suffix or '.png'}")))
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """The `ecgmamba-predict` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        predictor = ECGPredictor.from_pretrained(
            args.model,
            trust_remote_code=not args.no_remote_code,
            hub_kwargs={"revision": args.revision} if args.revision else None,
            device=args.device,
            batch_size=args.batch_size,
            thresholds=args.threshold,
            aggregation=args.aggregate,
            window_stride_seconds=args.stride,
        )
    except Exception as err:  # any load failure: say what and where, exit 2
        print(f"ecgmamba-predict: cannot load the model {args.model!r}: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    results = predictor.predict(args.records, args.fs, args.leads, args.units, progress=args.progress)

    if args.explain:
        from .explain import explain_record, plot_explanation

        for result, path in zip(results, explanation_paths(args.explain, results)):
            if path is None:
                continue
            try:
                explanation = explain_record(
                    predictor,
                    read_record(result.name, args.fs, parse_lead_names(args.leads), args.units),
                    label=args.explain_class,
                    method=args.explain_method,
                    steps=args.explain_steps,
                )
                result.explanation = str(plot_explanation(explanation, path))
                result.notes.extend(explanation.notes)
            except (ImportError, ValueError) as err:
                result.notes.append(f"no explanation: {err}")

    document = {
        "model": str(args.model),
        "labels": predictor.labels,
        "thresholds": predictor.thresholds.tolist(),
        "aggregation": predictor.aggregation,
        "records": [result.to_dict() for result in results],
    }
    if args.json == "-":
        print(json.dumps(document, indent=2))
    else:
        print("\n".join(result.format() for result in results))
        if args.json:
            Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    failed = sum(not result.ok for result in results)
    if failed or len(results) > 1:
        print(f"{len(results)} record(s): {len(results) - failed} predicted, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


__all__ = [
    "AGGREGATIONS",
    "ECGPredictor",
    "ECGRecord",
    "RecordError",
    "RecordPrediction",
    "check_finite",
    "load_checkpoint",
    "main",
    "parse_lead_names",
    "predict",
    "read_record",
    "record_windows",
    "select_ecg_leads",
]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
