"""Shared pieces of the ECG dataset builders: record reading with checks, features, metadata, summaries.

Every reader returns a float32 array of shape `(samples, 12)` in millivolts with the leads in the canonical order
`STANDARD_LEADS`, or raises `ECGDataError` naming the file and the problem.
"""

import argparse
import hashlib
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from modeling_ecgmamba.feature_extraction_ecgmamba import (
    STANDARD_LEADS,
    UNIT_TO_MV,
    canonical_lead_name,
)

logger = logging.getLogger(__name__)

UNITS = "mV"
# Prefix of the description line that carries the signal metadata as JSON (see `signal_metadata`).
_SIGNAL_LINE = "ECG signal: "
# WFDB format 16 stores a missing sample as the smallest int16.
_WFDB_INVALID_16 = -32768


class ECGDataError(ValueError):
    """A data file is missing, malformed or inconsistent. The message names the file and the problem."""

    def __init__(self, path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self):  # picklable across worker processes despite the two-argument signature
        return self.__class__, (self.path, self.problem)


# ----------------------------------------------------------------------------------------------------------------
# WFDB records
# ----------------------------------------------------------------------------------------------------------------


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


_GAIN_RE = re.compile(r"^([-+0-9.eE]+)(?:\(([-+0-9]+)\))?(?:/(\S+))?$")
_FORMAT_RE = re.compile(r"^(\d+)(?:\+(\d+))?$")


def read_wfdb_header(hea_path) -> WfdbHeader:
    """Parse a WFDB `.hea` file (single segment). Much faster than `wfdb.rdheader`, which dominates reading time."""
    hea_path = Path(hea_path)
    try:
        text = hea_path.read_text(encoding="latin-1")
    except FileNotFoundError:
        raise ECGDataError(hea_path, "header file not found") from None
    lines = [line.strip() for line in text.splitlines()]
    comments = [line.lstrip("#").strip() for line in lines if line.startswith("#")]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise ECGDataError(hea_path, "empty WFDB header")
    record = lines[0].split()
    try:
        num_signals = int(record[1])
        fs = float(re.split(r"[/(]", record[2])[0])
        num_samples = int(record[3])
    except (IndexError, ValueError):
        raise ECGDataError(
            hea_path, f"cannot parse the record line {lines[0]!r} (need name, signals, fs, samples)"
        ) from None
    if len(lines) - 1 != num_signals:
        raise ECGDataError(
            hea_path, f"record line announces {num_signals} signals but {len(lines) - 1} signal lines follow"
        )
    signals = [_parse_signal_line(hea_path, line) for line in lines[1:]]
    return WfdbHeader(hea_path, fs, num_samples, signals, comments)


def _parse_signal_line(hea_path: Path, line: str) -> WfdbSignal:
    # file format[+offset] gain(baseline)/units adcres adczero initval checksum blocksize description
    fields = line.split(maxsplit=8)
    fmt = _FORMAT_RE.match(fields[1]) if len(fields) > 2 else None
    gain = _GAIN_RE.match(fields[2]) if len(fields) > 2 else None
    if fmt is None or gain is None:
        raise ECGDataError(hea_path, f"cannot parse the signal line {line!r}")
    try:
        adc_zero = int(fields[4]) if len(fields) > 4 else 0
        checksum = int(fields[6]) if len(fields) > 6 else None
    except ValueError:
        raise ECGDataError(hea_path, f"cannot parse the signal line {line!r}") from None
    return WfdbSignal(
        file_name=fields[0],
        fmt=fmt.group(1),
        byte_offset=int(fmt.group(2) or 0),
        gain=float(gain.group(1)),
        baseline=int(gain.group(2)) if gain.group(2) is not None else adc_zero,
        units=gain.group(3) or "mV",
        checksum=checksum,
        name=fields[8].strip() if len(fields) > 8 else "",
    )


def read_wfdb_signal(header: WfdbHeader) -> np.ndarray:
    """Read the samples of a 12-lead WFDB record as `(samples, 12)` float32 mV in canonical lead order.

    Only format 16 (interleaved little-endian int16, optionally after a byte offset, as in PTB-XL `.dat` and CinC
    `.mat` files) is read. The file size, missing samples, checksums, gains and units are checked against the header.
    """
    path = header.path
    signals = header.signals
    files = {s.file_name for s in signals}
    formats = {(s.fmt, s.byte_offset) for s in signals}
    if len(files) != 1 or formats - {("16", signals[0].byte_offset)}:
        raise ECGDataError(
            path, f"unsupported WFDB storage {sorted(formats)} in {sorted(files)}: only format 16, one file"
        )
    order = lead_order([s.name for s in signals], path)
    data_path = path.parent / signals[0].file_name
    num_signals, offset = len(signals), signals[0].byte_offset
    expected = offset + header.num_samples * num_signals * 2
    try:
        size = data_path.stat().st_size
    except FileNotFoundError:
        raise ECGDataError(data_path, f"signal file named in {path.name} not found") from None
    if size != expected:
        found = max(0, size - offset) / (num_signals * 2)
        problem = "truncated" if size < expected else "longer than announced"
        raise ECGDataError(
            data_path,
            f"{problem}: {path.name} announces {header.num_samples} samples x {num_signals} signals "
            f"({expected} bytes) but the file has {size} bytes ({found:g} samples)",
        )
    digital = np.fromfile(data_path, dtype="<i2", offset=offset).reshape(header.num_samples, num_signals)

    missing = digital.min(axis=0) == _WFDB_INVALID_16
    if missing.any():
        names = [signals[i].name for i in np.flatnonzero(missing)]
        raise ECGDataError(data_path, f"missing (NaN) samples in lead(s) {', '.join(names)}")
    # WFDB checksums are the 16-bit sum of each signal's samples: catches data that do not match the header.
    # Writers store it signed or unsigned, so compare modulo 2**16.
    checked = [i for i, s in enumerate(signals) if s.checksum is not None]
    expected_sums = np.array([signals[i].checksum for i in checked], dtype=np.int64)
    wrong = (digital[:, checked].sum(axis=0, dtype=np.int64) - expected_sums) % 65536 != 0
    if wrong.any():
        s = signals[checked[int(np.argmax(wrong))]]
        raise ECGDataError(data_path, f"checksum of lead {s.name} does not match the header's {s.checksum}")

    scale = np.empty(num_signals, dtype=np.float32)
    for i, s in enumerate(signals):
        factor = UNIT_TO_MV.get(s.units.lower())
        if s.gain <= 0 or factor is None:
            raise ECGDataError(path, f"lead {s.name}: cannot calibrate gain {s.gain} {s.units!r} to mV")
        scale[i] = factor / s.gain  # mV per digital unit
    baselines = np.array([s.baseline for s in signals], dtype=np.float32)
    return (digital[:, order] - baselines[order]) * scale[order]


def lead_order(names, path) -> list[int]:
    """Indices that put the given lead names in `STANDARD_LEADS` order; an error unless exactly the 12 leads."""
    canonical = [canonical_lead_name(n) for n in names]
    if sorted(map(str, canonical)) != sorted(STANDARD_LEADS):
        raise ECGDataError(path, f"expected the 12 standard leads {list(STANDARD_LEADS)}, found {list(names)}")
    return [canonical.index(lead) for lead in STANDARD_LEADS]


def read_cpsc_struct(mat_path) -> tuple[np.ndarray, float | None, str | None]:
    """Read an original CPSC2018 `.mat` file (struct `ECG` with `sex`, `age`, `data` 12 x N in mV, leads in the
    canonical order). Returns `(signal (N, 12) float32 mV, age, sex)`."""
    from scipy.io import loadmat

    try:
        ecg = loadmat(mat_path)["ECG"][0, 0]
        data = np.asarray(ecg["data"], dtype=np.float64)
    except FileNotFoundError:
        raise ECGDataError(mat_path, "file not found") from None
    except Exception as err:  # scipy raises several types for damaged or foreign .mat files
        raise ECGDataError(mat_path, f"not a CPSC2018 MATLAB struct 'ECG' with a 'data' field ({err})") from None
    if data.ndim != 2 or data.shape[0] != len(STANDARD_LEADS) or data.shape[1] == 0:
        raise ECGDataError(mat_path, f"ECG.data has shape {data.shape}, expected (12, samples)")
    if not np.isfinite(data).all():
        raise ECGDataError(mat_path, "NaN or infinite samples in ECG.data")
    age = _first_scalar(ecg, "age")
    sex = _first_scalar(ecg, "sex")
    return (
        data.T.astype(np.float32),
        (float(age) if age is not None else None),
        (str(sex) if sex is not None else None),
    )


def _first_scalar(struct, field):
    if field not in (struct.dtype.names or ()):
        return None
    value = np.asarray(struct[field]).ravel()
    return value[0] if value.size else None


# ----------------------------------------------------------------------------------------------------------------
# Features, metadata and shared helpers
# ----------------------------------------------------------------------------------------------------------------

SEX = datasets.ClassLabel(names=["male", "female"])  # -1 where unknown


def sex_label(value) -> int:
    """`"Male"`/`"female"`/`0`/`1` (PTB-XL codes 0 = male, 1 = female) to the `SEX` class index; -1 if unknown."""
    text = str(value).strip().lower()
    return {"male": 0, "m": 0, "0": 0, "female": 1, "f": 1, "1": 1}.get(text, -1)


def label_features(class_names) -> dict:
    """`labels`: multi-hot float32 for the Trainer; `diagnoses`: the same classes as human-readable names."""
    return {
        "labels": datasets.List(datasets.Value("float32"), length=len(class_names)),
        "diagnoses": datasets.List(datasets.ClassLabel(names=list(class_names))),
    }


def signal_feature(num_samples: int | None) -> datasets.Array2D:
    """`input_values`: `(samples, 12)` float32 mV; `num_samples=None` for variable-length records."""
    return datasets.Array2D(shape=(num_samples, len(STANDARD_LEADS)), dtype="float32")


def multi_hot(indices, num_classes: int) -> list[float]:
    hot = [0.0] * num_classes
    for i in indices:
        hot[i] = 1.0
    return hot


def describe(text: str, sampling_rate: int) -> str:
    """A `DatasetInfo.description` ending in one machine-readable line with the signal metadata."""
    meta = {"sampling_rate": sampling_rate, "units": UNITS, "leads": list(STANDARD_LEADS), "layout": "(time, lead)"}
    return f"{text.strip()}\n\n{_SIGNAL_LINE}{json.dumps(meta)}"


def signal_metadata(dataset) -> dict:
    """Sampling rate, units, lead names and layout of a dataset built here.

    Accepts a `Dataset`, `DatasetDict` or `DatasetInfo`: `signal_metadata(ds)["sampling_rate"]` -> `100`.
    """
    if isinstance(dataset, datasets.DatasetDict):
        dataset = next(iter(dataset.values()))
    info = dataset if isinstance(dataset, datasets.DatasetInfo) else dataset.info
    for line in (info.description or "").splitlines():
        if line.startswith(_SIGNAL_LINE):
            return json.loads(line[len(_SIGNAL_LINE) :])
    raise ValueError("This dataset carries no ECG signal metadata (was it built by dataset_scripts?).")


def class_names(dataset) -> list[str]:
    """The class names of a dataset built here, in the order of its `labels` vectors."""
    if isinstance(dataset, datasets.DatasetDict):
        dataset = next(iter(dataset.values()))
    return list(dataset.features["diagnoses"].feature.names)


def check_data_dir(data_dir, what: str) -> Path:
    if data_dir is None:
        raise ECGDataError("<data_dir>", f"no data_dir given: pass the folder of your {what} copy")
    path = Path(os.path.expanduser(str(data_dir)))
    if not path.is_dir():
        raise ECGDataError(path, f"{what} folder not found")
    return path


class ECGBuilder(datasets.GeneratorBasedBuilder):
    """Plumbing shared by the ECG builders: cheap checks first, each record file read once, bad records named once.

    Subclasses implement `_split_records(data_dir)` (split name -> records, from tables and headers only, using
    `_keep_good` for per-record checks) and `_example(record)` (reads the files: `(key, example)`). Record files
    are read only while generating, in `num_proc` processes; a bad one raises `ECGDataError` from the main process,
    or, with `config.skip_bad_records`, is left out and named in one warning together with the rest. A split left
    empty is always an error, and nothing is cached then.
    """

    DISPLAY_NAME = "ECG"  # in messages
    _report_dir = None  # set while preparing; None when streaming (problems are then raised or logged directly)

    def _split_records(self, data_dir: Path) -> dict[str, list[dict]]:
        raise NotImplementedError

    def _example(self, record: dict) -> tuple:
        raise NotImplementedError

    def _keep_good(self, items, check) -> list[dict]:
        """`check(item)` -> record, or None to drop it quietly (no label in the task); `ECGDataError` for a bad one."""
        good = []
        for item in items:
            try:
                record = check(item)
            except ECGDataError as err:
                if not self.config.skip_bad_records:
                    raise
                self._skipped.append(str(err))
                continue
            if record is not None:
                good.append(record)
        return good

    def _split_generators(self, dl_manager):
        data_dir = check_data_dir(self.config.data_dir, self.DISPLAY_NAME)
        self._skipped = getattr(self, "_skipped", [])
        splits = self._split_records(data_dir)
        generators = []
        for split, records in splits.items():
            if not records:
                total = sum(map(len, splits.values()))
                raise ECGDataError(data_dir, f"no usable records for the {split} split ({total} in all splits)")
            gen_kwargs = {"shards": shards(records), "report_dir": self._report_dir}
            generators.append(datasets.SplitGenerator(name=split, gen_kwargs=gen_kwargs))
        return generators

    def _generate_examples(self, shards, report_dir):
        for shard in shards:
            for record in shard:
                try:
                    key, example = self._example(record)
                except ECGDataError as err:
                    if report_dir is None:  # streaming
                        if not self.config.skip_bad_records:
                            raise
                        logger.warning("skipped a bad record (skip_bad_records=True): %s", err)
                        continue
                    # Workers may be other processes: leave the problem where the main process finds it.
                    with open(Path(report_dir) / f"{os.getpid()}.jsonl", "a") as f:
                        f.write(json.dumps({"path": err.path, "problem": err.problem}) + "\n")
                    if not self.config.skip_bad_records:
                        raise
                    continue
                yield key, example

    def _download_and_prepare(self, dl_manager, verification_mode, **prepare_split_kwargs):
        self._skipped = []
        with tempfile.TemporaryDirectory(prefix="ecg-records-") as report_dir:
            self._report_dir = report_dir
            try:
                super()._download_and_prepare(dl_manager, verification_mode, **prepare_split_kwargs)
            except datasets.exceptions.DatasetGenerationError:
                reported = _read_reports(report_dir)
                if reported:
                    raise reported[0] from None
                raise
            self._skipped += [str(err) for err in _read_reports(report_dir)]
        if self._skipped:
            logger.warning(
                "%s %s: skipped %d bad record(s) (skip_bad_records=True):\n  %s",
                self.DISPLAY_NAME,
                self.config.data_dir,
                len(self._skipped),
                "\n  ".join(self._skipped),
            )
        for split, info in self.info.splits.items():
            if not info.num_examples:
                raise ECGDataError(self.config.data_dir, f"every record of the {split} split was bad")


def _read_reports(report_dir) -> list[ECGDataError]:
    errors = []
    for path in sorted(Path(report_dir).glob("*.jsonl")):
        errors += [ECGDataError(**json.loads(line)) for line in path.read_text().splitlines()]
    return errors


# A process pool costs about 0.4 s to start (measured on 2 cores, forking a process that has torch loaded) and
# saves about 0.6 ms a record: below ~600 records a split is faster in one process.
MIN_SHARD_RECORDS = 500


def shards(items: list, max_shards: int = 16) -> list[list]:
    """Contiguous chunks, so that `download_and_prepare(num_proc=N)` can read in N processes and keep the order.

    Chunks hold at least `MIN_SHARD_RECORDS` records: datasets writes a split of one chunk in the main process.
    Their number is a power of two, so that 2, 4 or 8 processes get equal shares.
    """
    count = 1
    while count * 2 <= min(max_shards, len(items) // MIN_SHARD_RECORDS):
        count *= 2
    bounds = np.linspace(0, len(items), count + 1).astype(int)
    return [items[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def stable_hash(text: str) -> int:
    """A hash that is the same on every machine and Python run (unlike `hash()`)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def prepare(builder, num_proc=None, download_mode=None) -> datasets.DatasetDict:
    """`download_and_prepare` (a cache hit when already prepared) + `as_dataset`."""
    builder.download_and_prepare(num_proc=num_proc, download_mode=download_mode)
    return builder.as_dataset()


def summary(dataset_dict: datasets.DatasetDict) -> str:
    """Records per split and per class, as a small text table."""
    names = class_names(dataset_dict)
    splits = list(dataset_dict)
    counts = {}
    for split in splits:
        labels = dataset_dict[split].with_format("numpy")["labels"]
        counts[split] = np.asarray(labels).reshape(-1, len(names)).sum(axis=0).astype(int)
    width = max(len(n) for n in [*names, "records"]) + 2
    lines = ["".ljust(width) + "".join(s.rjust(12) for s in splits)]
    lines.append("records".ljust(width) + "".join(str(dataset_dict[s].num_rows).rjust(12) for s in splits))
    for i, name in enumerate(names):
        lines.append(name.ljust(width) + "".join(str(counts[s][i]).rjust(12) for s in splits))
    meta = signal_metadata(dataset_dict)
    lines.append(f"\n{meta['sampling_rate']} Hz, {meta['units']}, leads {' '.join(meta['leads'])}")
    return "\n".join(lines)


def cli(name: str, load, options: dict, argv=None):
    """The builders' shared command line: prepare the cache with `load(data_dir=..., **options)`, print `summary`."""
    parser = argparse.ArgumentParser(description=f"Prepare the {name} cache and print records per split and class.")
    parser.add_argument("--data_dir", required=True, help=f"your {name} folder")
    for flag, kwargs in options.items():
        parser.add_argument(flag, **kwargs)
    parser.add_argument("--cache_dir", default=None, help="Arrow cache folder (datasets' default when omitted)")
    parser.add_argument("--num_proc", type=int, default=None, help="processes that read records")
    parser.add_argument("--skip_bad_records", action="store_true", help="drop bad records with one warning")
    args = parser.parse_args(argv)
    ds = load(**vars(args))
    print(f"{name} from {args.data_dir}")
    print(summary(ds))
