"""ECG records: the one reader for every file format, the lead and unit rules, and the checks every path runs.

    record = read_record("00001_hr.hea")          # WFDB (.hea + .dat/.mat), CPSC2018 .mat, .csv or .npy
    record.signal, record.sampling_rate, record.lead_names, record.units, record.metadata

The dataset builders, the predictor, the pipeline and the explanations all read records here, so a file is either
read the same way everywhere or refused everywhere with the same [`ECGDataError`] naming the file and the problem.

Formats:
- WFDB: the header is parsed here (much faster than `wfdb.rdheader`, and tolerant of the PhysioNet/CinC 2020
  release, whose Georgia headers start with `E00009.mat 12 500 ...` instead of the record name); samples of the
  fixed-size storage formats (16, 61, 80, 24, 32, 212), in `.dat` files or MATLAB-wrapped `.mat` files, are read
  with NumPy and checked against the header (file size, checksums); other formats go through `wfdb.rdrecord`.
  Invalid samples (WFDB's reserved codes) become NaN.
- CPSC2018 original `.mat`: a MATLAB struct `ECG` with `data` 12 x N in mV (500 Hz), `age` and `sex`.
- `.csv`: one column per lead named in the header, an optional `time` column (seconds, or `time_ms`).
- `.npy`: a `(samples, leads)` array (or transposed) with the rate and lead names given.

This file travels inside checkpoints (the pipeline reads records with it): it imports only NumPy at module level;
scipy and wfdb are imported when a format needs them.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Canonical 12-lead order used by the model, PTB-XL and CPSC2018.
STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

# Spellings seen in WFDB headers and CSV exports, mapped (case-insensitively) to the canonical names.
_LEAD_ALIASES = {name.lower(): name for name in STANDARD_LEADS}
_LEAD_ALIASES.update({"avr": "aVR", "avl": "aVL", "avf": "aVF", "lead i": "I", "lead ii": "II", "lead iii": "III"})

# Units WFDB headers use for ECG signals, as factors to millivolts.
UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}

CPSC_SAMPLING_RATE = 500.0  # CPSC2018 .mat files carry no sampling rate; the challenge data are 500 Hz.


class ECGDataError(ValueError):
    """A record or data file that cannot be read or used. `str(err)` names the file; `err.problem` is the message
    alone and `err.path` the file."""

    def __init__(self, path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self):  # picklable across worker processes despite the two-argument signature
        return type(self), (self.path, self.problem)


# ------------------------------------------------------------------------------------------------------ leads, units


def canonical_lead_name(name: str) -> str | None:
    """Return the canonical name of an ECG lead (`"avr"` -> `"aVR"`), or None if it is not one of the 12 leads."""
    return _LEAD_ALIASES.get(str(name).strip().lower())


def parse_lead_names(text: str | Sequence[str] | None) -> list[str] | None:
    """`"I,II,V1"` -> `["I", "II", "V1"]`; `"standard"` -> the 12 standard leads."""
    if text is None:
        return None
    if isinstance(text, str):
        if text.strip().lower() in ("standard", "12", "12-lead"):
            return list(STANDARD_LEADS)
        text = [name for name in re.split(r"[,;\s]+", text) if name]
    return [str(name).strip() for name in text]


def lead_columns(lead_names: Sequence[str], target: Sequence[str], name, ignore_other_channels=False) -> list[int]:
    """Column indices that put a record's leads (any spelling) in the `target` order; an `ECGDataError` naming
    missing or repeated leads otherwise, and channels that are no ECG lead unless `ignore_other_channels`."""
    canonical = [canonical_lead_name(lead) for lead in lead_names]
    duplicated = sorted({lead for lead in canonical if lead is not None and canonical.count(lead) > 1})
    if duplicated:
        raise ECGDataError(name, f"lead(s) {duplicated} appear more than once in {list(lead_names)}")
    unknown = [lead for lead, canon in zip(lead_names, canonical) if canon is None]
    missing = [lead for lead in target if lead not in canonical]
    if missing:
        others = f" (channels that are no ECG lead: {unknown})" if unknown else ""
        raise ECGDataError(name, f"missing lead(s) {missing}; the model needs {list(target)}{others}")
    if unknown and not ignore_other_channels:
        raise ECGDataError(
            name,
            f"unknown lead name(s) {unknown}; expected names among {list(target)} (any case). Drop other channels "
            "first.",
        )
    return [canonical.index(lead) for lead in target]


def millivolt_factors(units: str | Sequence[str], count: int, name) -> np.ndarray:
    """Factors from each column's unit (one for all or one per column) to millivolts."""
    per_column = [units] * count if isinstance(units, str) else list(units)
    if len(per_column) != count:
        raise ECGDataError(name, f"{len(per_column)} units for {count} leads")
    factors = []
    for unit in per_column:
        factor = UNIT_TO_MV.get(str(unit).strip().lower())
        if factor is None:
            raise ECGDataError(name, f"unknown unit {unit!r}; expected one of mV, uV, V")
        factors.append(factor)
    return np.asarray(factors)


# ------------------------------------------------------------------------------------------------------ the record


@dataclass
class ECGRecord:
    """A raw record as read from disk: `signal` is `(samples, channels)` in `units` at `sampling_rate` Hz.

    `metadata` holds what the file says besides the signal: a WFDB header's `#Key: value` comments (`Age`, `Sex`,
    `Dx` in the PhysioNet/CinC releases), a CPSC2018 struct's `age` and `sex`.
    """

    name: str
    signal: np.ndarray
    sampling_rate: float
    lead_names: list[str]
    units: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

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
        signal = as_signal_array(signal, name)
        if sampling_rate is None:
            raise ECGDataError(name, "sampling_rate is required for an array (the rate of the recording in Hz)")
        return cls(name, signal, float(sampling_rate), parse_lead_names(lead_names) or list(STANDARD_LEADS), units)


def as_signal_array(signal, name) -> np.ndarray:
    """A record's samples (NumPy, torch or nested lists) as a float64 `(samples, leads)` array."""
    if hasattr(signal, "detach"):
        signal = signal.detach().cpu().numpy()
    signal = np.asarray(signal, dtype=np.float64)
    if signal.ndim != 2:
        raise ECGDataError(name, f"expected a 2-D (samples, leads) array, got shape {signal.shape}")
    return signal


def select_ecg_leads(record: ECGRecord) -> ECGRecord:
    """Drop channels that are not ECG leads (respiration, markers...), with a note; fail if no lead is left."""
    keep = [j for j, name in enumerate(record.lead_names) if canonical_lead_name(name) is not None]
    if not keep:
        raise ECGDataError(record.name, f"no ECG lead among the channels {record.lead_names}: not an ECG record?")
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
        metadata=record.metadata,
    )


def check_finite(record: ECGRecord) -> None:
    """Raise an [`ECGDataError`] locating NaN/inf gaps (time and leads), which the model cannot read."""
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
    raise ECGDataError(
        record.name,
        f"{int(bad.sum())} missing (NaN/inf) samples in lead(s) {leads} at {where}{more}; the model needs every "
        "lead throughout: crop the record to a clean segment or fill the gap",
    )


def standard_leads_mv(record: ECGRecord, leads: Sequence[str] = STANDARD_LEADS) -> np.ndarray:
    """The record as float32 `(samples, len(leads))` millivolts in the given lead order, every sample finite: what
    the dataset builders store. Other channels are dropped; missing leads or samples raise an `ECGDataError`."""
    columns = lead_columns(record.lead_names, leads, record.name, ignore_other_channels=True)
    factors = millivolt_factors(record.units, len(record.lead_names), record.name)
    selected = ECGRecord(record.name, record.signal[:, columns], record.sampling_rate, list(leads))
    check_finite(selected)
    return (selected.signal * factors[columns]).astype(np.float32)


# ------------------------------------------------------------------------------------------------------ dispatch


def read_record(
    path,
    sampling_rate: float | None = None,
    lead_names: Sequence[str] | str | None = None,
    units: str = "mV",
) -> ECGRecord:
    """Read one ECG record from disk; raise [`ECGDataError`] naming the file and the problem.

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
    lead_names = parse_lead_names(lead_names)
    suffix = path.suffix.lower()
    if suffix in (".hea", ".dat") or (suffix == ".mat" and _header_of(path).is_file()):
        record = read_wfdb(_header_of(path), name=path)
    elif suffix == "" or not path.exists():
        header = Path(f"{path}.hea")
        if header.is_file():
            record = read_wfdb(header, name=path)
        elif not path.exists():
            raise ECGDataError(path, "file not found")
        else:
            raise ECGDataError(path, _unsupported(path))
    elif suffix == ".mat":
        record = _read_cpsc_mat(path, sampling_rate)
    elif suffix in (".csv", ".tsv", ".txt"):
        record = _read_csv(path, sampling_rate, lead_names, units)
    elif suffix == ".npy":
        record = _read_npy(path, sampling_rate, lead_names, units)
    else:
        raise ECGDataError(path, _unsupported(path))
    if suffix in (".hea", ".dat", ".mat", ""):
        given = []
        if sampling_rate is not None and not math.isclose(float(sampling_rate), record.sampling_rate, rel_tol=1e-6):
            given.append(f"--fs {sampling_rate:g} ignored: the record says {record.sampling_rate:g} Hz")
        if lead_names is not None and suffix != ".mat":
            given.append("--leads ignored: the header names the leads")
        record.notes.extend(given)
    return record


def _unsupported(path: Path) -> str:
    return (
        f"unsupported file type {path.suffix or '(no extension)'!r}: expected a WFDB record (.hea + data file), "
        "a CPSC2018 .mat, a .csv or a .npy"
    )


def _header_of(path: Path) -> Path:
    return path.with_name(path.stem + ".hea") if path.suffix else Path(f"{path}.hea")


# ------------------------------------------------------------------------------------------------------ WFDB


@dataclass
class WfdbSignal:
    file_name: str
    fmt: str
    byte_offset: int
    gain: float
    baseline: int
    units: str
    checksum: int | None
    name: str


@dataclass
class WfdbHeader:
    path: Path  # the .hea file
    fs: float
    num_samples: int
    signals: list[WfdbSignal]
    comments: list[str]

    def comment(self, key: str) -> str | None:
        """Value of a `#Key: value` comment line (CinC style), or None when the line is absent."""
        for line in self.comments:
            name, sep, value = line.partition(":")
            if sep and name.strip().lower() == key.lower():
                return value.strip()
        return None

    @property
    def metadata(self) -> dict[str, str]:
        """Every `#Key: value` comment as a dict (the first of repeated keys)."""
        found = {}
        for line in self.comments:
            name, sep, value = line.partition(":")
            if sep and name.strip() and name.strip() not in found:
                found[name.strip()] = value.strip()
        return found


_GAIN_RE = re.compile(r"^([-+0-9.eE]+)(?:\(([-+0-9]+)\))?(?:/(\S+))?$")
_FORMAT_RE = re.compile(r"^(\d+)(?:x(\d+))?(?::(\d+))?(?:\+(\d+))?$")
# Storage formats read with NumPy: dtype of one stored sample, and WFDB's code for an invalid sample.
_NUMPY_FORMATS = {"16": ("<i2", -32768), "61": (">i2", -32768), "32": ("<i4", -(2**31)), "80": ("u1", -128)}
_PACKED_FORMATS = {"24": -(2**23), "212": -2048}  # unpacked by hand
# Bytes per sample of every format with a fixed size (the others are compressed).
_BYTES_PER_SAMPLE = {"8": 1.0, "16": 2.0, "24": 3.0, "32": 4.0, "61": 2.0, "80": 1.0, "160": 2.0, "212": 1.5}
_BYTES_PER_SAMPLE.update({"310": 4 / 3, "311": 4 / 3})


def read_wfdb_header(hea_path) -> WfdbHeader:
    """Parse a single-segment WFDB `.hea` file; an `ECGDataError` naming it for anything that is not one.

    The record name on the first line is not checked (the CinC 2020 Georgia headers write `E00009.mat` there).
    """
    hea_path = Path(hea_path)
    try:
        text = hea_path.read_text(encoding="latin-1")
    except FileNotFoundError:
        raise ECGDataError(hea_path, "header file not found") from None
    except OSError as err:
        raise ECGDataError(hea_path, f"cannot read the header ({type(err).__name__}: {err})") from None
    lines = [line.strip() for line in text.splitlines()]
    comments = [line.lstrip("#").strip() for line in lines if line.startswith("#")]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines or "\x00" in text:
        raise ECGDataError(hea_path, "not a WFDB header (no record line)")
    record = lines[0].split()
    if len(record) > 1 and "/" in record[0]:
        raise ECGDataError(
            hea_path, "multi-segment WFDB records are not supported: pass the segments' records instead"
        )
    try:
        num_signals = int(record[1])
    except (IndexError, ValueError):
        raise ECGDataError(hea_path, f"not a WFDB header: cannot parse the record line {lines[0][:80]!r}") from None
    if len(record) < 4:
        what = "sampling rate" if len(record) < 3 else "signal length (sig_len)"
        raise ECGDataError(hea_path, f"the header gives no {what}: the record line is {lines[0]!r}")
    try:
        fs = float(re.split(r"[/(]", record[2])[0])
        num_samples = int(record[3])
    except ValueError:
        raise ECGDataError(
            hea_path, f"not a WFDB header: cannot parse the record line {lines[0][:80]!r} (name, signals, fs, samples)"
        ) from None
    if num_signals < 1:
        raise ECGDataError(hea_path, "the header lists no signals")
    if len(lines) - 1 != num_signals:
        raise ECGDataError(
            hea_path, f"record line announces {num_signals} signals but {len(lines) - 1} signal lines follow"
        )
    signals = [_parse_signal_line(hea_path, line) for line in lines[1:]]
    return WfdbHeader(hea_path, fs, num_samples, signals, comments)


def _parse_signal_line(hea_path: Path, line: str) -> WfdbSignal:
    # file format[xsamps][:skew][+offset] gain(baseline)/units adcres adczero initval checksum blocksize description
    fields = line.split(maxsplit=8)
    fmt = _FORMAT_RE.match(fields[1]) if len(fields) > 2 else None
    gain = _GAIN_RE.match(fields[2]) if len(fields) > 2 else None
    if fmt is None or gain is None:
        raise ECGDataError(hea_path, f"cannot parse the signal line {line!r}")
    if int(fmt.group(2) or 1) != 1 or int(fmt.group(3) or 0):
        raise ECGDataError(
            hea_path, f"signal line {line!r}: several samples per frame or skew are not supported (multi-rate records)"
        )
    try:
        adc_zero = int(fields[4]) if len(fields) > 4 else 0
        checksum = int(fields[6]) if len(fields) > 6 else None
        gain_value = float(gain.group(1))
    except ValueError:
        raise ECGDataError(hea_path, f"cannot parse the signal line {line!r}") from None
    return WfdbSignal(
        file_name=fields[0],
        fmt=fmt.group(1),
        byte_offset=int(fmt.group(4) or 0),
        gain=gain_value,
        baseline=int(gain.group(2)) if gain.group(2) is not None else adc_zero,
        units=gain.group(3) or "mV",
        checksum=checksum,
        name=fields[8].strip() if len(fields) > 8 else "",
    )


def read_wfdb(header, name=None) -> ECGRecord:
    """A WFDB record (its header, as a path or parsed by [`read_wfdb_header`], and its data files) in physical units,
    checked against the header."""
    if not isinstance(header, WfdbHeader):
        header = read_wfdb_header(header)
    if header.fs <= 0:
        raise ECGDataError(header.path, f"the header gives a sampling rate of {header.fs:g} Hz")
    if header.num_samples < 1:
        raise ECGDataError(header.path, "the header gives no signal length (sig_len)")
    for signal in header.signals:
        if signal.gain <= 0:
            raise ECGDataError(
                header.path, f"lead {signal.name}: cannot calibrate gain {signal.gain} (an uncalibrated signal)"
            )
    digital = _read_digital(header)
    baselines = np.array([s.baseline for s in header.signals], dtype=np.float64)
    gains = np.array([s.gain for s in header.signals], dtype=np.float64)
    return ECGRecord(
        name=str(name if name is not None else header.path),
        signal=(digital - baselines) / gains,  # invalid samples are NaN already
        sampling_rate=float(header.fs),
        lead_names=[s.name for s in header.signals],
        units=[s.units for s in header.signals],
        metadata=header.metadata,
    )


def _read_digital(header: WfdbHeader) -> np.ndarray:
    """Every signal's digital samples `(samples, signals)` as float64, NaN where WFDB marks a sample invalid."""
    by_file: dict[str, list[int]] = {}
    for index, signal in enumerate(header.signals):
        by_file.setdefault(signal.file_name, []).append(index)
    digital = np.empty((header.num_samples, len(header.signals)), dtype=np.float64)
    for file_name, indices in by_file.items():
        data_path = header.path.parent / file_name
        formats = {(header.signals[i].fmt, header.signals[i].byte_offset) for i in indices}
        if len(formats) != 1:
            raise ECGDataError(header.path, f"signals of {file_name} mix storage formats {sorted(formats)}")
        fmt, offset = formats.pop()
        if not data_path.is_file():
            raise ECGDataError(data_path, f"signal file named in {header.path.name} not found")
        _check_size(header, data_path, fmt, offset, len(indices))
        if fmt in _NUMPY_FORMATS or fmt in _PACKED_FORMATS:
            samples = _read_fixed_format(data_path, fmt, offset, header.num_samples, len(indices))
        else:
            samples = _read_with_wfdb(header, indices)
        digital[:, indices] = samples
    _check_checksums(header, digital)
    return digital


def _check_size(header: WfdbHeader, data_path: Path, fmt: str, offset: int, num_signals: int) -> None:
    per_sample = _BYTES_PER_SAMPLE.get(fmt)
    if per_sample is None:
        return  # compressed (FLAC) formats: no fixed size
    expected = offset + math.ceil(header.num_samples * num_signals * per_sample)
    size = data_path.stat().st_size
    # MATLAB-wrapped signals (CinC .mat) may be padded to 8 bytes.
    too_long = size > expected + (7 if data_path.name.lower().endswith(".mat") else 0)
    if size < expected or too_long:
        found = max(0, size - offset) / (num_signals * per_sample)
        raise ECGDataError(
            data_path,
            f"{'truncated' if size < expected else 'longer than announced'}: {header.path.name} announces "
            f"{header.num_samples} samples x {num_signals} signals in format {fmt} ({expected} bytes) but the file "
            f"has {size} bytes ({found:g} samples): the header does not match its data",
        )


def _read_fixed_format(data_path: Path, fmt: str, offset: int, num_samples: int, num_signals: int) -> np.ndarray:
    """Samples `(num_samples, num_signals)` of one data file as float64, NaN at WFDB's invalid-sample code."""
    count = num_samples * num_signals
    if fmt in _NUMPY_FORMATS:
        dtype, invalid = _NUMPY_FORMATS[fmt]
        raw = np.fromfile(data_path, dtype=dtype, count=count, offset=offset).astype(np.int64)
        if fmt == "80":
            raw -= 128
    else:
        invalid = _PACKED_FORMATS[fmt]
        nbytes = 3 * count if fmt == "24" else 3 * ((count + 1) // 2)
        data = np.fromfile(data_path, dtype=np.uint8, count=nbytes, offset=offset).astype(np.int64)
        if fmt == "24":
            triples = data.reshape(-1, 3)
            raw = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
            raw = np.where(raw >= 2**23, raw - 2**24, raw)
        else:  # 212: two 12-bit samples in three bytes
            triples = data.reshape(-1, 3)
            first = triples[:, 0] | ((triples[:, 1] & 0x0F) << 8)
            second = triples[:, 2] | ((triples[:, 1] & 0xF0) << 4)
            raw = np.stack([first, second], axis=1).reshape(-1)[:count]
            raw = np.where(raw >= 2048, raw - 4096, raw)
    samples = raw.reshape(num_samples, num_signals).astype(np.float64)
    samples[raw.reshape(num_samples, num_signals) == invalid] = np.nan
    return samples


def _read_with_wfdb(header: WfdbHeader, indices: list[int]) -> np.ndarray:
    """Formats NumPy does not read here (difference and compressed formats), through `wfdb.rdrecord`."""
    try:
        import wfdb
    except ImportError as err:
        raise ImportError("Reading this WFDB storage format needs the wfdb package: pip install wfdb") from err
    fmt = header.signals[indices[0]].fmt
    try:
        record = wfdb.rdrecord(str(header.path.with_suffix("")), physical=False, return_res=64, channels=indices)
        digital = np.asarray(record.d_signal, dtype=np.float64)
    except Exception as err:  # wfdb raises several types for damaged files
        raise ECGDataError(header.path, f"cannot read format {fmt} samples ({type(err).__name__}: {err})") from None
    invalid = -(2 ** (int(record.adc_res[0] or 16) - 1)) if record.adc_res else None
    if invalid is not None:
        digital[digital == invalid] = np.nan
    return digital


def _check_checksums(header: WfdbHeader, digital: np.ndarray) -> None:
    """WFDB checksums are the 16-bit sum of each signal's samples: they catch data that do not match the header.
    Writers store them signed or unsigned, so compare modulo 2**16."""
    checked = [i for i, s in enumerate(header.signals) if s.checksum is not None]
    if not checked:
        return
    sums = np.nan_to_num(digital[:, checked], nan=0.0).sum(axis=0).astype(np.int64)
    # An invalid sample's code counts in the checksum: add it back where NaN stood.
    for k, i in enumerate(checked):
        missing = int(np.isnan(digital[:, i]).sum())
        if missing:
            sums[k] += missing * _invalid_code(header.signals[i].fmt)
    expected = np.array([header.signals[i].checksum for i in checked], dtype=np.int64)
    wrong = [header.signals[checked[k]].name for k in np.flatnonzero((sums - expected) % 65536)]
    if wrong:
        data_path = header.path.parent / header.signals[checked[0]].file_name
        raise ECGDataError(
            data_path,
            f"checksum of lead {', '.join(wrong)} does not match {header.path.name} (wrong sample count, signal "
            "count or format in the header, or a damaged data file)",
        )


def _invalid_code(fmt: str) -> int:
    if fmt in _NUMPY_FORMATS:
        return _NUMPY_FORMATS[fmt][1]
    return _PACKED_FORMATS.get(fmt, 0)


# ------------------------------------------------------------------------------------------------------ CPSC .mat


def _read_cpsc_mat(path: Path, sampling_rate: float | None) -> ECGRecord:
    """An original CPSC2018 `.mat` (struct `ECG` with `sex`, `age`, `data` 12 x N in mV, canonical lead order)."""
    try:
        from scipy.io import loadmat
    except ImportError as err:
        raise ImportError("Reading .mat records needs scipy: pip install scipy") from err
    try:
        contents = loadmat(str(path))
    except FileNotFoundError:
        raise ECGDataError(path, "file not found") from None
    except Exception as err:  # scipy raises several types for damaged, HDF5 (v7.3) or foreign files
        raise ECGDataError(path, f"not a readable MATLAB file ({type(err).__name__}: {err})") from None
    variables = sorted(key for key in contents if not key.startswith("__"))
    if "ECG" not in contents:
        if "val" in contents:
            raise ECGDataError(
                path, f"a WFDB-format signal (variable 'val') without its header {_header_of(path).name}"
            )
        raise ECGDataError(
            path, f"not a CPSC2018 record: no MATLAB struct 'ECG' with a 'data' field (variables: {variables})"
        )
    try:
        struct = contents["ECG"][0, 0]
        data = np.asarray(struct["data"], dtype=np.float64)
    except Exception:
        raise ECGDataError(
            path, "not a CPSC2018 record: the MATLAB variable 'ECG' has no numeric 'data' field"
        ) from None
    if data.ndim != 2 or data.shape[0] != len(STANDARD_LEADS) or data.shape[1] == 0:
        raise ECGDataError(path, f"ECG.data has shape {data.shape}, expected (12, samples)")
    metadata = {}
    for key in ("age", "sex"):
        value = _struct_scalar(struct, key)
        if value is not None:
            metadata[key.capitalize()] = str(value)
    return ECGRecord(
        name=str(path),
        signal=data.T,
        sampling_rate=float(sampling_rate or CPSC_SAMPLING_RATE),
        lead_names=list(STANDARD_LEADS),
        metadata=metadata,
    )


def _struct_scalar(struct, key):
    if key not in (struct.dtype.names or ()):
        return None
    value = np.asarray(struct[key]).ravel()
    return value[0] if value.size else None


# ------------------------------------------------------------------------------------------------------ CSV, NPY

_TIME_COLUMN = re.compile(r"^(time|t)\s*[_ ]?\s*[\[(]?\s*(s|sec|seconds|ms)?\s*[\])]?$", re.IGNORECASE)


def _read_csv(path: Path, sampling_rate: float | None, lead_names: list[str] | None, units: str) -> ECGRecord:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ECGDataError(path, "not a text file: expected a CSV with one column per lead") from None
    sample = text[:4096]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = [row for row in csv.reader(io.StringIO(text), dialect) if any(cell.strip() for cell in row)]
    if not rows:
        raise ECGDataError(path, "empty file")
    has_header = any(cell.strip() and not _is_number(cell) for cell in rows[0])
    if has_header:
        names, first_line, rows = [cell.strip() for cell in rows[0]], 2, rows[1:]
    elif lead_names is not None:
        names, first_line = list(lead_names), 1
    elif len(rows[0]) == len(STANDARD_LEADS):
        names, first_line = list(STANDARD_LEADS), 1
    else:
        raise ECGDataError(path, f"no header row naming the {len(rows[0])} columns: add one or pass --leads")
    if not rows:
        raise ECGDataError(path, "a header but no samples")
    values = np.empty((len(rows), len(names)), dtype=np.float64)
    for i, row in enumerate(rows):
        if len(row) != len(names):
            raise ECGDataError(path, f"line {first_line + i} has {len(row)} values, expected {len(names)} ({names})")
        for j, cell in enumerate(row):
            cell = cell.strip()
            try:
                values[i, j] = float(cell) if cell else math.nan
            except ValueError:
                raise ECGDataError(
                    path, f"line {first_line + i}, column {names[j]!r}: {cell[:40]!r} is not a number"
                ) from None

    time_columns = [j for j, name in enumerate(names) if _TIME_COLUMN.match(name)]
    if time_columns:
        j = time_columns[0]
        scale = 1e-3 if "ms" in names[j].lower() else 1.0
        rate = _rate_from_time(path, values[:, j] * scale)
        if sampling_rate is not None and not math.isclose(rate, float(sampling_rate), rel_tol=0.01):
            raise ECGDataError(
                path, f"--fs {sampling_rate:g} Hz disagrees with the time column ({rate:g} Hz): drop one of them"
            )
        sampling_rate = float(sampling_rate or rate)
        values = np.delete(values, j, axis=1)
        names = names[:j] + names[j + 1 :]
    elif sampling_rate is None:
        raise ECGDataError(path, "no sampling rate: add a 'time' column (seconds) or pass --fs")
    return ECGRecord(name=str(path), signal=values, sampling_rate=float(sampling_rate), lead_names=names, units=units)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _rate_from_time(path: Path, time: np.ndarray) -> float:
    steps = np.diff(time)
    if len(steps) == 0 or not np.isfinite(steps).all() or (steps <= 0).any():
        raise ECGDataError(path, "the time column must increase strictly, without gaps or blanks")
    step = float(np.median(steps))
    if np.abs(steps - step).max() > 0.01 * step:
        raise ECGDataError(path, f"irregular time column (steps from {steps.min():g} to {steps.max():g} s)")
    rate = 1.0 / step
    return float(round(rate)) if abs(rate - round(rate)) < 1e-3 * rate else rate


def _read_npy(path: Path, sampling_rate: float | None, lead_names: list[str] | None, units: str) -> ECGRecord:
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as err:
        raise ECGDataError(path, f"not a NumPy .npy array ({type(err).__name__}: {err})") from None
    if not isinstance(array, np.ndarray) or array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise ECGDataError(path, f"expected a 2-D numeric array (samples x leads), got {getattr(array, 'shape', '?')}")
    if sampling_rate is None or lead_names is None:
        raise ECGDataError(
            path, "a .npy record needs --fs (Hz) and --leads (its column names, e.g. I,II,V1,... or 'standard')"
        )
    leads = len(lead_names)
    notes = []
    if array.shape[1] != leads and array.shape[0] == leads:
        array = array.T
        notes.append(f"array read as {leads} leads x samples (transposed)")
    elif array.shape[1] != leads:
        raise ECGDataError(path, f"array of shape {array.shape} does not have the {leads} leads named by --leads")
    return ECGRecord(
        name=str(path),
        signal=array.astype(np.float64),
        sampling_rate=float(sampling_rate),
        lead_names=list(lead_names),
        units=units,
        notes=notes,
    )


__all__ = [
    "CPSC_SAMPLING_RATE",
    "ECGDataError",
    "ECGRecord",
    "STANDARD_LEADS",
    "UNIT_TO_MV",
    "WfdbHeader",
    "canonical_lead_name",
    "check_finite",
    "lead_columns",
    "millivolt_factors",
    "parse_lead_names",
    "read_record",
    "read_wfdb",
    "read_wfdb_header",
    "select_ecg_leads",
    "standard_leads_mv",
]
