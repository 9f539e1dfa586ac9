"""ECG records: the one reader for every file format, the lead and unit rules, and the checks every path runs.

    record = read_record("00001_hr.hea")          # WFDB (.hea + .dat/.mat), CPSC2018 .mat, .csv or .npy
    record.signal, record.sampling_rate, record.lead_names, record.units, record.metadata
    for chunk in record.chunks():                 # a long record, a minute at a time, never all in memory
        ...

The dataset builders, the predictor, the pipeline and the explanations all read records here, so a file is either
read the same way everywhere or refused everywhere with the same [`ECGDataError`] naming the file and the problem.

Formats:
- WFDB: the header is parsed here (much faster than `wfdb.rdheader`, and tolerant of the PhysioNet/CinC 2020
  release, whose Georgia headers start with `E00009.mat 12 500 ...` instead of the record name); samples of the
  fixed-size storage formats (16, 61, 80, 24, 32, 212), in `.dat` files or MATLAB-wrapped `.mat` files, are read
  with NumPy at their byte offsets and checked against the header (file size; checksums once every sample has been
  read); other formats go through `wfdb.rdrecord`. Invalid samples (WFDB's reserved codes) become NaN.
- CPSC2018 original `.mat`: a MATLAB struct `ECG` with `data` 12 x N in mV (500 Hz), `age` and `sex`.
- `.csv`: one column per lead named in the header, an optional `time` column (seconds, or `time_ms`); parsed in
  blocks of rows.
- `.npy`: a `(samples, leads)` array (or transposed) with the rate and lead names given.

Reading is lazy: [`read_record`] parses the header (or the first rows) and checks what it can at once; the samples
are read when `record.signal` is first used, or a range at a time with `record.read(start, stop)` and
`record.chunks()`, so that a 24-hour Holter record never has to fit in memory.

The checks every path runs live here too: [`check_sampling_rate`] (a positive finite number of Hz in a plausible
range, not a bool) and [`check_ecg_amplitude`] (the amplitude of an ECG in mV: a record in uV, in ADC counts, or with
a header gain off by 10 is refused with what was seen and what to do).

This file travels inside checkpoints (the pipeline reads records with it): it imports only NumPy at module level;
scipy and wfdb are imported when a format needs them.
"""

from __future__ import annotations

import csv
import itertools
import math
import numbers
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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

# Plausible sampling rates of an ECG, in Hz. Below 50 Hz the QRS complex (most of its energy lies at 5-40 Hz) cannot
# be represented. Devices record at 100 Hz (PTB-XL's low-rate copy), 128-1000 Hz (Holters), 257 Hz (St Petersburg
# INCART), 500 Hz (PTB-XL, CPSC2018, Georgia), 1000 Hz (PTB) and up to 10-16 kHz (high-resolution and pacemaker-spike
# recordings). Outside [50, 20000] Hz the rate is a mistake: a time column in milliseconds read as seconds gives
# 0.5 Hz for a 500 Hz record, and 1e-6 Hz would "resample" a record into billions of samples.
MIN_SAMPLING_RATE, MAX_SAMPLING_RATE = 50.0, 20_000.0

# Amplitude plausibility. The statistic: each lead's robust peak-to-peak (0.5th to 99.5th percentile) over the first
# 60 s, in mV, and its median over the leads that are not constant. Measured on every real record at hand with
# `ECGMAMBA_DATA_DIR=../shared/data python -m benchmarks.amplitudes` (833 records: PTB-XL at 100 and 500 Hz, CPSC2018
# .mat and WFDB, CinC 2020 incl. Georgia (gain 4880/mV) and the PTB-XL copy HR00599 (gain 200/mV)): min 0.133 mV
# (Georgia E00015), 1st percentile 0.60, median 1.12, 99th percentile 2.83, max 4.79 mV (CPSC-Extra Q0010); PTB-XL's
# low-voltage (LVOLT) records 0.58-0.68 mV. Accepted: 0.02-8 mV, 6.6x below the lowest and 1.7x above the highest
# record measured. Refused: uV or ADC counts read as mV (x1000 or more), V (x0.001), a unit of uV written for samples
# in mV, and x10 mistakes (a header gain of 100 instead of 1000 per mV) of every record above 0.8 mV (89% of the
# records measured; a x10 low-voltage record stays within what real records measure).
AMPLITUDE_RANGE_MV = (0.02, 8.0)
AMPLITUDE_CHECK_SECONDS = 60.0
CHUNK_SECONDS = 60.0  # records are read, checked and resampled a minute at a time


class ECGDataError(ValueError):
    """A record or data file that cannot be read or used. `str(err)` names the file; `err.problem` is the message
    alone and `err.path` the file."""

    def __init__(self, path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self):  # picklable across worker processes despite the two-argument signature
        return type(self), (self.path, self.problem)


# ------------------------------------------------------------------------------------------------------ checks


def check_sampling_rate(sampling_rate, name, what: str = "sampling rate") -> float:
    """The rate as a float, or an [`ECGDataError`] naming `name` unless it is a real number (not a bool), finite, and
    within [`MIN_SAMPLING_RATE`, `MAX_SAMPLING_RATE`] Hz."""
    if isinstance(sampling_rate, (bool, np.bool_)) or not isinstance(sampling_rate, numbers.Real):
        raise ECGDataError(name, f"the {what} must be a number of Hz, got {sampling_rate!r}")
    rate = float(sampling_rate)
    if not math.isfinite(rate) or rate <= 0:
        raise ECGDataError(name, f"the {what} must be a positive, finite number of Hz, got {sampling_rate!r}")
    if not MIN_SAMPLING_RATE <= rate <= MAX_SAMPLING_RATE:
        raise ECGDataError(
            name,
            f"a {what} of {rate:g} Hz is not plausible for an ECG (accepted: {MIN_SAMPLING_RATE:g}-"
            f"{MAX_SAMPLING_RATE:g} Hz): give the rate in Hz",
        )
    return rate


def peak_to_peak_mv(signal_mv, sampling_rate: float) -> float | None:
    """The amplitude statistic [`check_ecg_amplitude`] judges: over the first `AMPLITUDE_CHECK_SECONDS`, each lead's
    0.5th-to-99.5th percentile range, and the median over the leads that are not constant (None if all are)."""
    head = np.asarray(signal_mv[: max(1, int(round(AMPLITUDE_CHECK_SECONDS * sampling_rate)))], dtype=np.float64)
    low, high = np.percentile(head, [0.5, 99.5], axis=0)
    ranges = (high - low)[high > low]  # a constant lead is the flat-lead check's business
    return float(np.median(ranges)) if len(ranges) else None


def check_ecg_amplitude(signal_mv, sampling_rate: float, name, units: Sequence[str] | str | None = None) -> None:
    """Raise an [`ECGDataError`] saying what was seen and what to do when `signal_mv` (`(samples, leads)`, already
    converted to mV with `units`) cannot be an ECG in mV (see `AMPLITUDE_RANGE_MV` for the statistic and bounds)."""
    value = peak_to_peak_mv(signal_mv, sampling_rate)
    low, high = AMPLITUDE_RANGE_MV
    if value is None or low <= value <= high:
        return
    if value > 100:
        hint = (
            "it looks like uV or ADC counts, not mV: pass units='uV' (--units uV) for samples in uV, or check the "
            "gain (ADC units per mV) in the header"
        )
    elif value > high:
        hint = (
            f"about {value / 1.1:.0f}x the median record (1.1 mV): check the gain in the header (ADC units per mV: "
            "100 where it should be 1000?) and the units"
        )
    else:
        hint = (
            f"about {1.1 / value:.0f}x smaller than the median record (1.1 mV): samples in V need units='V'; samples "
            "in mV given or labelled as uV (units=..., or the header's unit) are divided by 1000; check the units and "
            "the header gain"
        )
    seen = f"{value:.3g}" if value < 1000 else f"{value:.0f}"
    given = sorted({str(unit) for unit in ([units] if isinstance(units, str) else units or [])})
    said = f" (read as {', '.join(given)})" if given and given != ["mV"] else ""
    raise ECGDataError(
        name,
        f"implausible amplitude for an ECG in mV{said}: the median peak-to-peak of the leads is {seen} mV "
        f"(0.5-99.5th percentiles over the first {AMPLITUDE_CHECK_SECONDS:g} s; real 12-lead records measure about "
        f"0.13-4.8 mV, accepted {low:g}-{high:g} mV): {hint}. If the amplitude is real, turn the check off "
        "(check_amplitude=False, --no-amplitude-check)",
    )


def check_finite_samples(signal, sampling_rate: float, lead_names: Sequence[str], name, start: int = 0) -> None:
    """Raise an [`ECGDataError`] locating NaN/inf gaps (time and leads), which the model cannot read. `start` is the
    index of `signal`'s first sample in the record (for a chunk)."""
    bad = ~np.isfinite(signal)
    if not bad.any():
        return
    leads = [lead_names[j] for j in np.flatnonzero(bad.any(0))]
    rows = bad.any(1).astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], rows, [0])))) + start
    runs = list(zip(edges[::2], edges[1::2]))
    where = ", ".join(f"{a / sampling_rate:.2f}-{b / sampling_rate:.2f} s" for a, b in runs[:3])
    more = f" and {len(runs) - 3} more" if len(runs) > 3 else ""
    raise ECGDataError(
        name,
        f"{int(bad.sum())} missing (NaN/inf) samples in lead(s) {leads} at {where}{more}; the model needs every "
        "lead throughout: crop the record to a clean segment or fill the gap",
    )


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


def chunk_samples(sampling_rate: float) -> int:
    """Samples per chunk at `sampling_rate`: `CHUNK_SECONDS` of the record."""
    return max(1, int(math.ceil(CHUNK_SECONDS * sampling_rate)))


class ECGRecord:
    """A raw record: `(samples, channels)` samples in `units` at `sampling_rate` Hz, named after its file.

    The samples are either in memory (`signal=`) or read from a file on demand (`source=`, what the reader makes):
    `record.signal` reads them all (once), `record.read(start, stop)` a range, `record.chunks()` the whole record a
    chunk at a time (the way long records are predicted). `metadata` holds what the file says besides the signal: a
    WFDB header's `#Key: value` comments (`Age`, `Sex`, `Dx` in the PhysioNet/CinC releases), a CPSC2018 struct's
    `age` and `sex`.
    """

    def __init__(
        self,
        name,
        signal=None,
        sampling_rate: float | None = None,
        lead_names: Sequence[str] | None = None,
        units: str | Sequence[str] | None = None,
        notes: list[str] | None = None,
        metadata: dict[str, str] | None = None,
        *,
        source=None,
    ):
        self.name = str(name)
        if (signal is None) == (source is None):
            raise TypeError("ECGRecord needs either a signal or a source")
        if sampling_rate is None:
            raise ECGDataError(self.name, "sampling_rate is required (the rate of the recording in Hz)")
        self.sampling_rate = check_sampling_rate(sampling_rate, self.name)
        self._signal = None if signal is None else as_signal_array(signal, self.name)
        self._source = source
        columns = self._signal.shape[1] if source is None else source.num_signals
        self.lead_names = list(STANDARD_LEADS) if lead_names is None else [str(lead) for lead in lead_names]
        if len(self.lead_names) != columns:
            raise ECGDataError(self.name, f"{len(self.lead_names)} lead names for {columns} channels")
        if not units:
            units = "mV"
        self.units = [units] * columns if isinstance(units, str) else list(units)
        self.notes = list(notes or [])
        self.metadata = dict(metadata or {})

    def __repr__(self) -> str:
        where = "in memory" if self._signal is not None else "on disk"
        return (
            f"ECGRecord({self.name!r}, {self.num_samples} x {len(self.lead_names)} at {self.sampling_rate:g} Hz, "
            f"{where})"
        )

    @classmethod
    def from_array(cls, signal, sampling_rate, lead_names=None, units="mV", name="record") -> ECGRecord:
        """An in-memory record `(samples, leads)` (NumPy or torch); `lead_names=None` means the 12 standard leads."""
        return cls(name, as_signal_array(signal, name), sampling_rate, parse_lead_names(lead_names), units)

    @property
    def signal(self) -> np.ndarray:
        """Every sample, `(samples, channels)` float64 (read from the file on first use)."""
        if self._signal is None:
            chunks = list(self._source.chunks(max(self._source.num_samples or 0, chunk_samples(self.sampling_rate))))
            self._signal = np.concatenate(chunks) if len(chunks) != 1 else chunks[0]
            self._source = None
        return self._signal

    @signal.setter
    def signal(self, value) -> None:
        self._signal, self._source = as_signal_array(value, self.name), None

    @property
    def num_samples(self) -> int | None:
        """Samples per channel; None for a CSV file that has not been read through yet."""
        return len(self._signal) if self._signal is not None else self._source.num_samples

    @property
    def duration(self) -> float | None:
        return None if self.num_samples is None else self.num_samples / self.sampling_rate

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples `start:stop` (float64, physical units), read from the file without the rest of it."""
        if self._signal is not None:
            return self._signal[start:stop]
        return self._source.read(max(0, int(start)), int(stop))

    def chunks(self, size: int | None = None) -> Iterator[np.ndarray]:
        """The whole record, `size` samples at a time (default `CHUNK_SECONDS`); a file's checks that need every
        sample (WFDB checksums) run after its last chunk."""
        size = size or chunk_samples(self.sampling_rate)
        if self._signal is not None:
            for start in range(0, max(len(self._signal), 1), size):
                yield self._signal[start : start + size]
        else:
            yield from self._source.chunks(size)


def as_signal_array(signal, name, dtype=np.float64) -> np.ndarray:
    """A record's samples (NumPy, torch or nested lists) as a 2-D `(samples, leads)` array of numbers: float64, or
    with `dtype=None` the array's own type (an array is not copied: what the extractor's streaming needs)."""
    if hasattr(signal, "detach"):
        signal = signal.detach().cpu().numpy()
    signal = np.asarray(signal)
    if signal.ndim != 2:
        raise ECGDataError(name, f"expected a 2-D (samples, leads) array, got shape {signal.shape}")
    if not (np.issubdtype(signal.dtype, np.number) or signal.dtype == bool):
        raise ECGDataError(name, f"expected numbers, got an array of {signal.dtype}")
    return signal if dtype is None else signal.astype(dtype, copy=False)


class _Columns:
    """Some channels of a record's source (what [`select_ecg_leads`] keeps of a record on disk)."""

    def __init__(self, source, columns: list[int]):
        self.source, self.columns, self.num_signals = source, columns, len(columns)

    @property
    def num_samples(self):
        return self.source.num_samples

    def read(self, start, stop):
        return self.source.read(start, stop)[:, self.columns]

    def chunks(self, size):
        for chunk in self.source.chunks(size):
            yield chunk[:, self.columns]


def select_ecg_leads(record: ECGRecord) -> ECGRecord:
    """Drop channels that are not ECG leads (respiration, markers...), with a note; fail if no lead is left."""
    keep = [j for j, name in enumerate(record.lead_names) if canonical_lead_name(name) is not None]
    if not keep:
        raise ECGDataError(record.name, f"no ECG lead among the channels {record.lead_names}: not an ECG record?")
    if len(keep) == len(record.lead_names):
        return record
    dropped = [name for j, name in enumerate(record.lead_names) if j not in keep]
    in_memory = record._signal is not None
    return ECGRecord(
        record.name,
        record.signal[:, keep] if in_memory else None,
        record.sampling_rate,
        [record.lead_names[j] for j in keep],
        [record.units[j] for j in keep],
        record.notes + [f"ignored non-ECG channel(s) {dropped}"],
        record.metadata,
        source=None if in_memory else _Columns(record._source, keep),
    )


def standard_leads_mv(
    record: ECGRecord, leads: Sequence[str] = STANDARD_LEADS, check_amplitude: bool = True
) -> np.ndarray:
    """The record as float32 `(samples, len(leads))` millivolts in the given lead order, every sample finite and
    (unless `check_amplitude=False`) the amplitude of an ECG in mV: what the dataset builders store. Other channels are
    dropped; missing leads or samples, or an implausible amplitude, raise an `ECGDataError`."""
    columns = lead_columns(record.lead_names, leads, record.name, ignore_other_channels=True)
    factors = millivolt_factors(record.units, len(record.lead_names), record.name)[columns]
    signal = record.signal[:, columns]
    check_finite_samples(signal, record.sampling_rate, list(leads), record.name)
    signal = signal * factors
    if check_amplitude:
        check_ecg_amplitude(signal, record.sampling_rate, record.name, [record.units[j] for j in columns])
    return signal.astype(np.float32)


# ------------------------------------------------------------------------------------------------------ dispatch


def read_record(
    path,
    sampling_rate: float | None = None,
    lead_names: Sequence[str] | str | None = None,
    units: str = "mV",
) -> ECGRecord:
    """Read one ECG record from disk; raise [`ECGDataError`] naming the file and the problem.

    The header (or the first rows of a CSV) is read and checked now, the samples on demand (see [`ECGRecord`]).

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
    if sampling_rate is not None:
        sampling_rate = check_sampling_rate(sampling_rate, path, "sampling rate given")
    suffix = path.suffix.lower()
    if path.is_dir():
        raise ECGDataError(path, "a directory, not a record file")
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
        if sampling_rate is not None and not math.isclose(sampling_rate, record.sampling_rate, rel_tol=1e-6):
            given.append(f"--fs {sampling_rate:g} ignored: the record says {record.sampling_rate:g} Hz")
        if lead_names is not None and suffix != ".mat":
            given.append("--leads ignored: the header names the leads")
        record.notes.extend(given)
    return record


RECORD_SUFFIXES = (".hea", ".mat", ".csv", ".tsv", ".npy")


def record_key(path) -> Path:
    """What identifies a record on disk: a WFDB record's header (whichever of its files is named), else the file;
    two paths with the same key are the same record."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".hea", ".dat", "") or (suffix == ".mat" and _header_of(path).is_file()):
        header = _header_of(path)
        if header.is_file() or suffix == ".hea":
            return header.resolve()
    return path.resolve()


def records_in(folder) -> list[Path]:
    """The records in a folder and its subfolders, sorted, each once: WFDB records by their `.hea` (their data files
    are not listed again), CPSC `.mat` files without a header, `.csv`, `.tsv` and `.npy` files."""
    found = []
    for path in sorted(Path(folder).rglob("*")):
        suffix = path.suffix.lower()
        if not path.is_file() or suffix not in RECORD_SUFFIXES:
            continue
        if suffix == ".mat" and _header_of(path).is_file():
            continue  # the signal file of a WFDB record: listed by its header
        found.append(path)
    return found


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
    """A WFDB record (its header, as a path or parsed by [`read_wfdb_header`], and its data files) in physical units.
    The header and the data files' sizes are checked now; the samples are read on demand (checksums once all are)."""
    if not isinstance(header, WfdbHeader):
        header = read_wfdb_header(header)
    fs = check_sampling_rate(header.fs, header.path, "header's sampling rate")
    if header.num_samples < 1:
        raise ECGDataError(header.path, "the header gives no signal length (sig_len)")
    for signal in header.signals:
        if signal.gain <= 0:
            raise ECGDataError(
                header.path, f"lead {signal.name}: cannot calibrate gain {signal.gain} (an uncalibrated signal)"
            )
    return ECGRecord(
        str(name if name is not None else header.path),
        None,
        fs,
        [s.name for s in header.signals],
        [s.units for s in header.signals],
        metadata=header.metadata,
        source=_WfdbSamples(header),
    )


class _WfdbSamples:
    """The samples of a WFDB record in physical units, read a range at a time from its data files."""

    def __init__(self, header: WfdbHeader):
        self.header = header
        self.num_samples, self.num_signals = header.num_samples, len(header.signals)
        self.baselines = np.array([s.baseline for s in header.signals], dtype=np.float64)
        self.gains = np.array([s.gain for s in header.signals], dtype=np.float64)
        self.files = []  # (data file, storage format, byte offset, indices of its signals)
        by_file: dict[str, list[int]] = {}
        for index, signal in enumerate(header.signals):
            by_file.setdefault(signal.file_name, []).append(index)
        for file_name, indices in by_file.items():
            data_path = header.path.parent / file_name
            formats = {(header.signals[i].fmt, header.signals[i].byte_offset) for i in indices}
            if len(formats) != 1:
                raise ECGDataError(header.path, f"signals of {file_name} mix storage formats {sorted(formats)}")
            fmt, offset = formats.pop()
            if not data_path.is_file():
                raise ECGDataError(data_path, f"signal file named in {header.path.name} not found")
            _check_size(header, data_path, fmt, offset, len(indices))
            self.files.append((data_path, fmt, offset, indices))

    def digital(self, start: int, stop: int) -> np.ndarray:
        """Digital samples `start:stop` of every signal as float64, NaN where WFDB marks a sample invalid."""
        stop = min(stop, self.num_samples)
        digital = np.empty((max(stop - start, 0), self.num_signals), dtype=np.float64)
        for data_path, fmt, offset, indices in self.files:
            if fmt in _NUMPY_FORMATS or fmt in _PACKED_FORMATS:
                digital[:, indices] = _read_fixed_format(data_path, fmt, offset, len(indices), start, stop)
            else:
                digital[:, indices] = _read_with_wfdb(self.header, indices, start, stop)
        return digital

    def physical(self, digital: np.ndarray) -> np.ndarray:
        return (digital - self.baselines) / self.gains  # invalid samples are NaN already

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.physical(self.digital(start, stop))

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        sums = np.zeros(self.num_signals, dtype=np.int64)
        for start in range(0, self.num_samples, size):
            digital = self.digital(start, start + size)
            sums += _checksum_sums(self.header, digital)
            yield self.physical(digital)
        _check_checksums(self.header, sums)


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


def _read_fixed_format(data_path: Path, fmt: str, offset: int, num_signals: int, start: int, stop: int) -> np.ndarray:
    """Samples `start:stop` `(stop - start, num_signals)` of one data file as float64, NaN at WFDB's invalid-sample
    code; only the bytes of that range are read."""
    first, count = start * num_signals, (stop - start) * num_signals
    if fmt in _NUMPY_FORMATS:
        dtype, invalid = _NUMPY_FORMATS[fmt]
        size = np.dtype(dtype).itemsize
        raw = np.fromfile(data_path, dtype=dtype, count=count, offset=offset + first * size).astype(np.int64)
        if fmt == "80":
            raw -= 128
    elif fmt == "24":
        invalid = _PACKED_FORMATS[fmt]
        data = np.fromfile(data_path, dtype=np.uint8, count=3 * count, offset=offset + 3 * first).astype(np.int64)
        triples = data.reshape(-1, 3)
        raw = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        raw = np.where(raw >= 2**23, raw - 2**24, raw)
    else:  # 212: two 12-bit samples in three bytes; a range may start in the middle of a pair
        invalid = _PACKED_FORMATS[fmt]
        pair = first // 2
        pairs = (first + count + 1) // 2 - pair
        data = np.fromfile(data_path, dtype=np.uint8, count=3 * pairs, offset=offset + 3 * pair).astype(np.int64)
        data = np.concatenate([data, np.zeros(-len(data) % 3, dtype=np.int64)])  # an odd total ends on 2 bytes
        triples = data.reshape(-1, 3)
        low = triples[:, 0] | ((triples[:, 1] & 0x0F) << 8)
        high = triples[:, 2] | ((triples[:, 1] & 0xF0) << 4)
        raw = np.stack([low, high], axis=1).reshape(-1)[first - 2 * pair :][:count]
        raw = np.where(raw >= 2048, raw - 4096, raw)
    if len(raw) != count:
        raise ECGDataError(data_path, f"ends before sample {stop} announced by the header (a truncated file)")
    samples = raw.reshape(-1, num_signals).astype(np.float64)
    samples[raw.reshape(-1, num_signals) == invalid] = np.nan
    return samples


def _read_with_wfdb(header: WfdbHeader, indices: list[int], start: int, stop: int) -> np.ndarray:
    """Formats NumPy does not read here (difference and compressed formats), through `wfdb.rdrecord`."""
    try:
        import wfdb
    except ImportError as err:
        raise ImportError("Reading this WFDB storage format needs the wfdb package: pip install wfdb") from err
    fmt = header.signals[indices[0]].fmt
    try:
        record = wfdb.rdrecord(
            str(header.path.with_suffix("")),
            sampfrom=start,
            sampto=stop,
            physical=False,
            return_res=64,
            channels=indices,
        )
        digital = np.asarray(record.d_signal, dtype=np.float64)
    except Exception as err:  # wfdb raises several types for damaged files
        raise ECGDataError(header.path, f"cannot read format {fmt} samples ({type(err).__name__}: {err})") from None
    invalid = -(2 ** (int(record.adc_res[0] or 16) - 1)) if record.adc_res else None
    if invalid is not None:
        digital[digital == invalid] = np.nan
    return digital


def _checksum_sums(header: WfdbHeader, digital: np.ndarray) -> np.ndarray:
    """Each signal's sum of digital samples (an invalid sample counts with its code), toward WFDB's checksums."""
    sums = np.nan_to_num(digital, nan=0.0).sum(axis=0).astype(np.int64)
    missing = np.isnan(digital).sum(axis=0)
    for i in np.flatnonzero(missing):
        sums[i] += int(missing[i]) * _invalid_code(header.signals[i].fmt)
    return sums


def _check_checksums(header: WfdbHeader, sums: np.ndarray) -> None:
    """WFDB checksums are the 16-bit sum of each signal's samples: they catch data that do not match the header.
    Writers store them signed or unsigned, so compare modulo 2**16."""
    checked = [i for i, s in enumerate(header.signals) if s.checksum is not None]
    if not checked:
        return
    expected = np.array([header.signals[i].checksum for i in checked], dtype=np.int64)
    wrong = [header.signals[checked[k]].name for k in np.flatnonzero((sums[checked] - expected) % 65536)]
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
_CSV_PROBE_ROWS = 4096  # rows parsed when the file is opened: the columns, the rate, the first errors


def _read_csv(path: Path, sampling_rate: float | None, lead_names: list[str] | None, units: str) -> ECGRecord:
    samples = _CsvSamples(path, sampling_rate, lead_names)
    return ECGRecord(str(path), None, samples.sampling_rate, samples.lead_names, units, source=samples)


class _CsvSamples:
    """A CSV record's samples, parsed a block of rows at a time (NumPy's C parser; a block it refuses is parsed again
    cell by cell to name the line and column at fault). The time column, if any, gives the rate and is checked for
    regular steps throughout."""

    def __init__(self, path: Path, sampling_rate: float | None, lead_names: list[str] | None):
        self.path = path
        try:
            with open(path, encoding="utf-8-sig") as file:
                sample = file.read(4096)
        except UnicodeDecodeError:
            raise ECGDataError(path, "not a text file: expected a CSV with one column per lead") from None
        except OSError as err:
            raise ECGDataError(path, f"cannot read the file ({type(err).__name__}: {err.strerror or err})") from None
        try:
            self.dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            self.dialect = csv.excel
        first_line, first = next(
            ((number, line) for number, line in enumerate(sample.splitlines(), 1) if not self._blank(line)),
            (None, None),
        )
        if first is None:
            raise ECGDataError(path, "empty file")
        cells = next(csv.reader([first], self.dialect))
        if any(cell.strip() and not _is_number(cell) for cell in cells):
            names, self.skip_lines = [cell.strip() for cell in cells], first_line
        elif lead_names is not None:
            names, self.skip_lines = list(lead_names), first_line - 1
        elif len(cells) == len(STANDARD_LEADS):
            names, self.skip_lines = list(STANDARD_LEADS), first_line - 1
        else:
            raise ECGDataError(path, f"no header row naming the {len(cells)} columns: add one or pass --leads")
        self.names = names
        time_columns = [j for j, name in enumerate(names) if _TIME_COLUMN.match(name)]
        self.time_column = time_columns[0] if time_columns else None
        self.lead_columns = [j for j in range(len(names)) if j != self.time_column]
        self.lead_names = [names[j] for j in self.lead_columns]
        self.num_signals = len(self.lead_columns)
        self.num_samples = None  # known once the file has been read through

        probe = next(self._blocks(_CSV_PROBE_ROWS), None)
        if probe is None:
            raise ECGDataError(path, "a header but no samples")
        if len(probe) < _CSV_PROBE_ROWS:
            self.num_samples = len(probe)
        if self.time_column is None:
            if sampling_rate is None:
                raise ECGDataError(path, "no sampling rate: add a 'time' column (seconds) or pass --fs")
            self.step = None
            self.sampling_rate = float(sampling_rate)
            return
        self.time_scale = 1e-3 if "ms" in names[self.time_column].lower() else 1.0
        rate, self.step = _rate_from_time(path, probe[:, self.time_column] * self.time_scale)
        if not MIN_SAMPLING_RATE <= rate <= MAX_SAMPLING_RATE:
            unit = "milliseconds (name the column 'time_ms')" if rate < MIN_SAMPLING_RATE else "seconds"
            raise ECGDataError(
                path,
                f"the time column {names[self.time_column]!r} steps by {self.step:g} s, {rate:g} Hz: not a plausible "
                f"ECG rate ({MIN_SAMPLING_RATE:g}-{MAX_SAMPLING_RATE:g} Hz). Are the times in {unit}? Or drop the "
                "column and pass --fs",
            )
        if sampling_rate is not None and not math.isclose(rate, float(sampling_rate), rel_tol=0.01):
            raise ECGDataError(
                path, f"--fs {sampling_rate:g} Hz disagrees with the time column ({rate:g} Hz): drop one of them"
            )
        self.sampling_rate = float(sampling_rate or rate)

    def _blank(self, line: str) -> bool:
        return not line.strip(" \t\r\n" + self.dialect.delimiter)

    def _blocks(self, rows: int) -> Iterator[np.ndarray]:
        """The file's rows, `rows` at a time, as float64 arrays of every column (blank cells are NaN)."""
        with open(self.path, encoding="utf-8-sig") as file:
            number = self.skip_lines
            for _ in range(self.skip_lines):
                file.readline()
            while True:
                lines = list(itertools.islice(file, rows))
                if not lines:
                    return
                first_number, number = number + 1, number + len(lines)
                kept = [line for line in lines if not self._blank(line)]
                while len(kept) < rows:  # blank lines do not count: fill the block
                    more = list(itertools.islice(file, rows - len(kept)))
                    if not more:
                        break
                    lines += more
                    number += len(more)
                    kept += [line for line in more if not self._blank(line)]
                if kept:
                    yield self._parse(lines, kept, first_number)

    def _parse(self, lines: list[str], kept: list[str], first_number: int) -> np.ndarray:
        try:
            values = np.loadtxt(
                kept, delimiter=self.dialect.delimiter, quotechar='"', comments=None, ndmin=2, dtype=np.float64
            )
            if values.shape[1] == len(self.names):
                return values
        except ValueError:
            pass
        # Cell by cell, to say where the problem is (and to read blank cells as NaN).
        values = np.empty((len(kept), len(self.names)), dtype=np.float64)
        rows = (row for row in zip(itertools.count(first_number), csv.reader(lines, self.dialect)))
        i = 0
        for number, row in rows:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(self.names):
                raise ECGDataError(
                    self.path, f"line {number} has {len(row)} values, expected {len(self.names)} ({self.names})"
                )
            for j, cell in enumerate(row):
                cell = cell.strip()
                try:
                    values[i, j] = float(cell) if cell else math.nan
                except ValueError:
                    raise ECGDataError(
                        self.path, f"line {number}, column {self.names[j]!r}: {cell[:40]!r} is not a number"
                    ) from None
            i += 1
        return values[:i]

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        count, last_time = 0, None
        for block in self._blocks(size):
            if self.time_column is not None:
                time = block[:, self.time_column] * self.time_scale
                _check_time_steps(self.path, time if last_time is None else np.r_[last_time, time], self.step)
                last_time = time[-1]
            count += len(block)
            yield block[:, self.lead_columns]
        self.num_samples = count

    def read(self, start: int, stop: int) -> np.ndarray:
        parts, position = [], 0
        for chunk in self.chunks(max(stop - start, 1, _CSV_PROBE_ROWS)):
            if position + len(chunk) > start:
                parts.append(chunk[max(start - position, 0) : stop - position])
            position += len(chunk)
            if position >= stop:
                break
        return np.concatenate(parts) if parts else np.empty((0, self.num_signals))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _rate_from_time(path: Path, time: np.ndarray) -> tuple[float, float]:
    """The rate (Hz) and step (s) of a time column's first values; an error unless they increase regularly."""
    steps = np.diff(time)
    if len(steps) == 0:
        raise ECGDataError(path, "a single row: the time column gives no rate")
    step = float(np.median(steps))
    _check_time_steps(path, time, step)
    rate = 1.0 / step
    return (float(round(rate)) if abs(rate - round(rate)) < 1e-3 * rate else rate), step


def _check_time_steps(path: Path, time: np.ndarray, step: float) -> None:
    steps = np.diff(time)
    if not np.isfinite(steps).all() or (steps <= 0).any():
        raise ECGDataError(path, "the time column must increase strictly, without gaps or blanks")
    if len(steps) and np.abs(steps - step).max() > 0.01 * step:
        raise ECGDataError(path, f"irregular time column (steps from {steps.min():g} to {steps.max():g} s)")


def _read_npy(path: Path, sampling_rate: float | None, lead_names: list[str] | None, units: str) -> ECGRecord:
    samples = _NpySamples(path, lead_names)
    if sampling_rate is None or lead_names is None:
        raise ECGDataError(
            path, "a .npy record needs --fs (Hz) and --leads (its column names, e.g. I,II,V1,... or 'standard')"
        )
    notes = ["array read as leads x samples (transposed)"] if samples.transposed else []
    return ECGRecord(str(path), None, sampling_rate, lead_names, units, notes, source=samples)


class _NpySamples:
    """A `.npy` array's samples, a range at a time through a memory map that is dropped after each read (so that
    reading a long record does not keep it resident)."""

    def __init__(self, path: Path, lead_names: list[str] | None):
        self.path = path
        array = self._map()
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
            raise ECGDataError(path, f"expected a 2-D numeric array (samples x leads), got {array.shape}")
        leads = len(lead_names) if lead_names is not None else array.shape[1]
        self.transposed = array.shape[1] != leads and array.shape[0] == leads
        if array.shape[1] != leads and not self.transposed:
            raise ECGDataError(path, f"array of shape {array.shape} does not have the {leads} leads named by --leads")
        self.num_samples, self.num_signals = array.shape[::-1] if self.transposed else array.shape

    def _map(self) -> np.ndarray:
        try:
            return np.load(self.path, mmap_mode="r", allow_pickle=False)
        except Exception as err:
            raise ECGDataError(self.path, f"not a NumPy .npy array ({type(err).__name__}: {err})") from None

    def read(self, start: int, stop: int) -> np.ndarray:
        array = self._map()
        part = array[:, start:stop].T if self.transposed else array[start:stop]
        return np.array(part, dtype=np.float64)

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        for start in range(0, self.num_samples, size):
            yield self.read(start, start + size)


__all__ = [
    "AMPLITUDE_RANGE_MV",
    "CPSC_SAMPLING_RATE",
    "ECGDataError",
    "ECGRecord",
    "MAX_SAMPLING_RATE",
    "MIN_SAMPLING_RATE",
    "STANDARD_LEADS",
    "UNIT_TO_MV",
    "WfdbHeader",
    "canonical_lead_name",
    "check_ecg_amplitude",
    "check_finite_samples",
    "check_sampling_rate",
    "lead_columns",
    "millivolt_factors",
    "parse_lead_names",
    "peak_to_peak_mv",
    "read_record",
    "read_wfdb",
    "read_wfdb_header",
    "record_key",
    "records_in",
    "select_ecg_leads",
    "standard_leads_mv",
]
