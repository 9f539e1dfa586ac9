"""Shared pieces of the ECG dataset builders: features, metadata, splits into shards, summaries and the builder base.

Records are read by the library's one reader (`modeling_ecgmamba.ecg_records`): the builders, the predictor and the
pipeline read a file the same way or refuse it with the same `ECGDataError` naming the file and the problem. Every
builder stores `(samples, 12)` float32 millivolts in the canonical lead order `STANDARD_LEADS`.
"""

import argparse
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import datasets
import numpy as np

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
