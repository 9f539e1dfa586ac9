"""Shared pieces of the ECG dataset builders: features, metadata, the data fingerprint that keys the cache, the
train/validation/test split, shards, summaries, the command line and the builder base.

Records are read by the library's one reader (`modeling_ecgmamba.ecg_records`): the builders, the predictor and the
pipeline read a file the same way or refuse it with the same `ECGDataError` naming the file and the problem. Every
builder stores `(samples, 12)` float32 millivolts in the canonical lead order `STANDARD_LEADS`.
"""

import argparse
import hashlib
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from modeling_ecgmamba.ecg_records import STANDARD_LEADS, ECGDataError

logger = logging.getLogger(__name__)

UNITS = "mV"
# Prefix of the description line that carries the signal metadata as JSON (see `signal_metadata`).
_SIGNAL_LINE = "ECG signal: "


# ----------------------------------------------------------------------------------------------------------------
# Features, metadata and shared helpers
# ----------------------------------------------------------------------------------------------------------------

SEX = datasets.ClassLabel(names=["male", "female"])  # -1 where unknown


def sex_label(value) -> int:
    """`"Male"`/`"female"`/`0`/`1` (PTB-XL codes 0 = male, 1 = female) to the `SEX` class index; -1 if unknown."""
    text = str(value).strip().lower()
    return {"male": 0, "m": 0, "0": 0, "female": 1, "f": 1, "1": 1}.get(text, -1)


def number_or_none(text) -> float | None:
    """A header's `#Age: 53` -> 53.0; `NaN`, `Unknown`, empty or absent -> None."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return None if value != value else value  # NaN -> None


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


def read_table(path: Path, what: str, **read_csv_kwargs) -> pd.DataFrame:
    """A metadata CSV as a DataFrame; a missing, empty or unparsable file is an `ECGDataError` naming it."""
    if not path.is_file():
        raise ECGDataError(path, f"{what} not found")
    try:
        table = pd.read_csv(path, **read_csv_kwargs)
    except pd.errors.EmptyDataError:
        raise ECGDataError(path, f"empty file: the {what} has no header and no rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise ECGDataError(path, f"cannot read the {what} as CSV ({type(err).__name__}: {err})") from None
    if table.empty:
        raise ECGDataError(path, f"the {what} has a header but no rows")
    return table


# ----------------------------------------------------------------------------------------------------------------
# The data fingerprint: the cache follows the files
# ----------------------------------------------------------------------------------------------------------------

# Files a builder reads: record headers and signals, and metadata tables. Hidden files and folders are left out.
FINGERPRINT_SUFFIXES = (".hea", ".dat", ".mat", ".csv")


def data_fingerprint(folders) -> str | None:
    """A SHA-256 over every record and table file below `folders`: relative path, size, modification and change
    times (ns) and inode of each, plus the bytes of the `.csv` tables. None when a folder is missing.

    It keys the prepared cache (datasets' `hash`), so an edited label, records swapped or overwritten (`cp -p`
    included: the change time moves even when the modification time is restored), records added or removed all
    rebuild, while an untouched folder is a cache hit. Anything that touches a file's metadata (`chmod`, `touch`, a
    copy of the folder elsewhere) also rebuilds: a wasted build, never stale data. Cost, measured on the 2-core
    development machine with a warm file-system cache (`python -m benchmarks.data --fingerprint 88000`, load average
    about 5): 0.66 s for 88,000 files (PTB-XL's records100 + records500 hold 87,196), 1.34 s for the 176,506 files
    of the PhysioNet/CinC 2021 set (88,253 .hea + .mat pairs): 7.5 us a file. A cold cache or a network file system
    costs more; preparing those records takes minutes.
    """
    lines = []
    for folder in folders:
        root = Path(os.path.expanduser(str(folder)))
        if not root.is_dir():
            return None
        lines.append(f"{root.resolve()}\n")
        lines += _file_lines(root, "")
    return hashlib.sha256("".join(lines).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _file_lines(folder: Path, prefix: str):
    with os.scandir(folder) as entries:
        entries = sorted(entries, key=lambda entry: entry.name)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            yield from _file_lines(Path(entry.path), f"{prefix}{entry.name}/")
        elif entry.name.lower().endswith(FINGERPRINT_SUFFIXES):
            stat = entry.stat()
            yield f"{prefix}{entry.name}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}\0{stat.st_ino}\n"
            if entry.name.lower().endswith(".csv"):  # the labels: by content too
                yield hashlib.sha256(Path(entry.path).read_bytes()).hexdigest() + "\n"


# ----------------------------------------------------------------------------------------------------------------
# The train/validation/test split
# ----------------------------------------------------------------------------------------------------------------

SPLIT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def assign_split(record: str, seed: int = 0) -> str:
    """`"train"`, `"validation"` or `"test"` for one record, from a seeded SHA-256 of its name alone.

    The split of a record depends on nothing else: adding, removing or relabelling other records never moves it, on
    any machine or run (a position-based or rank-based stratified split moves many records when one is dropped,
    leaking test records into training). The price: stratification holds in expectation only. Every label
    combination (and every source) is split 80/10/10 on average, and a group of n records deviates binomially, so
    its validation or test share lies within 3 * sqrt(0.09 / n) of 10% in all but about 3 groups in 1000 (n = 6,877:
    +-1.1 points; n = 220: +-6 points). Exact balance in every label combination and records that never move
    cannot both hold: when any one record may disappear without moving another, each record's split can depend on
    that record alone.
    """
    position = stable_hash(f"{seed}:{record}") / 2**64
    if position < SPLIT_FRACTIONS["train"]:
        return "train"
    return "validation" if position < SPLIT_FRACTIONS["train"] + SPLIT_FRACTIONS["validation"] else "test"


def assign_splits(records, seed: int = 0) -> dict[str, str]:
    """Record name -> split for every name in `records` (`assign_split` of each: the others play no part)."""
    return {record: assign_split(record, seed) for record in records}


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

    def __init__(self, *args, **kwargs):
        # The cache folder is <name>/<config id>/<version>/<hash>: datasets' `hash` names what the data are (for Hub
        # datasets, their files). Here it is the fingerprint of the files in data_dir, so that a changed folder
        # rebuilds instead of serving the old cache.
        if kwargs.get("hash") is None and kwargs.get("data_dir") is not None:
            kwargs["hash"] = data_fingerprint(self.data_folders(kwargs["data_dir"]))
        super().__init__(*args, **kwargs)

    @classmethod
    def data_folders(cls, data_dir) -> list[Path]:
        """The folders `data_dir` names (one here; several for builders that read several)."""
        return [Path(os.path.expanduser(str(data_dir)))]

    def _data_dir(self):
        """What `_split_records` receives: the checked data folder."""
        return check_data_dir(self.config.data_dir, self.DISPLAY_NAME)

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
        self._skipped = getattr(self, "_skipped", [])
        splits = self._split_records(self._data_dir())
        generators = []
        for split, records in splits.items():
            if not records:
                total = sum(map(len, splits.values()))
                raise ECGDataError(
                    self.config.data_dir, f"no usable records for the {split} split ({total} in all splits)"
                )
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
        self._warn_stale_caches()

    def _warn_stale_caches(self):
        """Caches of earlier states of the same folder and options are never read again: say where they are."""
        version_dir = Path(self.cache_dir).parent
        stale = [p for p in version_dir.iterdir() if p.is_dir() and "." not in p.name and p.name != self.hash]
        if stale:
            size = sum(f.stat().st_size for p in stale for f in p.rglob("*") if f.is_file())
            logger.warning(
                "%s: the files in %s changed since %d earlier cache(s) of them were built; those are not used any "
                "more (%.1f MB): delete %s to free the space",
                self.DISPLAY_NAME,
                self.config.data_dir,
                len(stale),
                size / 1e6,
                " ".join(str(p) for p in stale),
            )


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


def prepare(builder, num_proc=None, rebuild: bool = False) -> datasets.DatasetDict:
    """`download_and_prepare` + `as_dataset`: a cache hit when these files were prepared with these options.

    Not needed after your files change: the cache is keyed on their fingerprint (`data_fingerprint`), so a changed
    folder rebuilds by itself; `rebuild=True` prepares again whatever the cache holds."""
    mode = datasets.DownloadMode.FORCE_REDOWNLOAD if rebuild else datasets.DownloadMode.REUSE_DATASET_IF_EXISTS
    builder.download_and_prepare(num_proc=num_proc, download_mode=mode)
    return builder.as_dataset()


def summary(dataset_dict: datasets.DatasetDict) -> str:
    """Records per split and per class (and per source, where there is a `source` column), as a small text table."""
    names = class_names(dataset_dict)
    splits = list(dataset_dict)
    rows = {"records": [dataset_dict[s].num_rows for s in splits]}
    source = dataset_dict[splits[0]].features.get("source")
    if isinstance(source, datasets.ClassLabel):
        found = [np.bincount(dataset_dict[s]["source"], minlength=source.num_classes) for s in splits]
        rows.update({f"source {name}": [int(f[i]) for f in found] for i, name in enumerate(source.names)})
    for split in splits:
        labels = np.asarray(dataset_dict[split].with_format("numpy")["labels"]).reshape(-1, len(names))
        for name, count in zip(names, labels.sum(axis=0).astype(int)):
            rows.setdefault(name, []).append(int(count))
    width = max(map(len, rows)) + 2
    lines = ["".ljust(width) + "".join(s.rjust(12) for s in splits)]
    lines += [name.ljust(width) + "".join(str(count).rjust(12) for count in counts) for name, counts in rows.items()]
    meta = signal_metadata(dataset_dict)
    lines.append(f"\n{meta['sampling_rate']} Hz, {meta['units']}, leads {' '.join(meta['leads'])}")
    return "\n".join(lines)


def cli(name: str, load, options: dict, argv=None, several_folders: bool = False):
    """The builders' shared command line: prepare the cache with `load(data_dir=..., **options)`, print `summary`.
    Bad data (a missing folder, a bad record) end it with the message and exit status 1, not a traceback."""
    parser = argparse.ArgumentParser(description=f"Prepare the {name} cache and print records per split and class.")
    if several_folders:
        parser.add_argument("--data_dir", required=True, nargs="+", help=f"your {name} folder(s)")
    else:
        parser.add_argument("--data_dir", required=True, help=f"your {name} folder")
    for flag, kwargs in options.items():
        parser.add_argument(flag, **kwargs)
    parser.add_argument("--cache_dir", default=None, help="Arrow cache folder (datasets' default when omitted)")
    parser.add_argument("--num_proc", type=int, default=None, help="processes that read records")
    parser.add_argument("--skip_bad_records", action="store_true", help="drop bad records with one warning")
    parser.add_argument(
        "--rebuild", action="store_true", help="prepare the cache again even if one exists for these files"
    )
    args = parser.parse_args(argv)
    try:
        ds = load(**vars(args))
    except ECGDataError as err:
        sys.exit(f"{parser.prog}: error: {err}")
    print(f"{name} from {args.data_dir}")
    print(summary(ds))
