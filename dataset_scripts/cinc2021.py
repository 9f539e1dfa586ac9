"""The PhysioNet/CinC Challenge 2020/2021 training data as a `datasets` builder: 88,253 labelled 12-lead ECGs from
seven sources, the largest public collection (Reyna et al. 2021, https://physionet.org/content/challenge-2021/).

Every record is a WFDB header (`NAME.hea`, comment lines `#Age:`, `#Sex:`, `#Dx:` with SNOMED CT codes) and a
MATLAB v4 signal file (`NAME.mat`). The name's prefix says the source:

| prefix | source (`source` column) | records (2021) | rate |
|---|---|---|---|
| `A` | CPSC2018 | 6,877 | 500 Hz |
| `Q` | CPSC2018-Extra | 3,453 | 500 Hz |
| `I` | INCART (St Petersburg) | 74, 30 min each | 257 Hz |
| `S` | PTB | 516 | 1000 Hz |
| `HR` | PTB-XL | 21,837 | 500 Hz |
| `E` | Georgia | 10,344 | 500 Hz |
| `JS` | Chapman-Shaoxing and Ningbo | 45,152 | 500 Hz |

```python
from dataset_scripts import load_cinc2021
ds = load_cinc2021("path/to/challenge-2021/training", sampling_rate=100, num_proc=2)   # or a list of folders
ds["train"][0]["input_values"]    # (samples, 12) float32 mV, the whole record at 100 Hz
ds["train"][0]["labels"]          # multi-hot over the Challenge's 26 scored classes (CLASSES)
ds["train"][0]["source"], ds["train"][0]["unscored"]   # source index; SNOMED codes outside the scored classes
```

`data_dir` is one folder or several (a list, or paths joined by `os.pathsep`); every `.hea` below them is a record,
and a record name found twice is an error naming both files.

Labels follow the Challenge's scoring table (`cinc2021_scoring/`, copied from physionetchallenges/evaluation-2021
with its source and licence): the 30 scored codes of `dx_mapping_scored.csv` make 26 classes once the equivalent
codes its notes name are merged (CLBBB with LBBB, CRBBB with RBBB, PAC with SVPB, PVC with VPB), in the order of
`weights.csv`. A record's other codes go to the `unscored` column; `dx` keeps every code of `#Dx` (repeats removed). Records with no
scored code are kept (all-zero `labels`, as in the Challenge's data) or, with `drop_unscored=True`, dropped.

Whole records are stored, resampled from their own rate (257, 500 or 1000 Hz) to `sampling_rate`: `input_values`
has a variable length (10 s for most, 30 min for INCART). Columns also: `record`, `source`, `age`, `sex`,
`source_sampling_rate`.

Splits: train/validation/test 80/10/10 from a seeded hash of each record name (`dataset_scripts.common.assign_split`,
shared with CPSC2018): every source and label combination is split 80/10/10 in expectation, and adding or removing
records (a new source, a bad record skipped) never moves another. `leave_out_source="Georgia"` makes that source the
test split, trains on the others and keeps the usual validation records of the others. The Challenge's own test
sets are hidden; PTB-XL's patient-wise folds are not used here (the CinC copies carry no patient id), so records of
one patient may fall in different splits.

Bad input (a missing or truncated `.mat`, a `.mat` without its header, a header that disagrees with its data, a
`#Dx` line that is missing, empty or not a list of numeric codes, a name without a known prefix, duplicate names)
raises `ECGDataError` naming the
file, and nothing is cached; with `skip_bad_records=True` bad records are dropped and named in one warning. The ten
CPSC2018 headers of the shared sample (`cpsc2018/WFDB`) have an empty `#Dx`: their labels live in `REFERENCE.csv`,
which `load_cpsc2018` reads; here they are bad records.
"""

import functools
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from modeling_ecgmamba.ecg_records import ECGDataError, read_record, read_wfdb_header, standard_leads_mv
from modeling_ecgmamba.feature_extraction_ecgmamba import resample_signal

from .common import (
    SEX,
    ECGBuilder,
    assign_splits,
    check_data_dir,
    cli,
    describe,
    label_features,
    multi_hot,
    number_or_none,
    prepare,
    read_table,
    sex_label,
    signal_feature,
)

logger = logging.getLogger(__name__)

# Bump when the output changes (the cache folder is keyed on the version, the options and the files' fingerprint).
VERSION = datasets.Version("1.0.0")
SCORING_DIR = Path(__file__).resolve().with_name("cinc2021_scoring")
SOURCES = {  # record-name prefix -> source
    "A": "CPSC2018",
    "Q": "CPSC2018-Extra",
    "I": "INCART",
    "S": "PTB",
    "HR": "PTB-XL",
    "E": "Georgia",
    "JS": "Chapman-Ningbo",
}
SOURCE_NAMES = tuple(SOURCES.values())
_RECORD_NAME = re.compile(r"^(" + "|".join(sorted(SOURCES, key=len, reverse=True)) + r")\d+$")
_SAME_DIAGNOSIS = re.compile(r"We score (\d+) and (\d+) as the same diagnosis")
NORMAL_CODE = "426783006"  # sinus rhythm: the Challenge metric's inactive (baseline) class
MAX_SAMPLING_RATE = 1000  # the highest source rate (PTB)


# ----------------------------------------------------------------------------------------------------------------
# The scoring table
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoringTable:
    """The Challenge's classes: `names[i]` (e.g. `"CRBBB|RBBB"`) holds the codes `codes[i]`; `weights` is the reward
    matrix in the same order; `unscored` the codes of `dx_mapping_unscored.csv`."""

    names: tuple[str, ...]
    codes: tuple[frozenset[str], ...]
    weights: np.ndarray
    unscored: frozenset[str]

    @functools.cached_property
    def class_of_code(self) -> dict[str, int]:
        return {code: i for i, codes in enumerate(self.codes) for code in codes}

    @property
    def normal_class(self) -> str:
        return self.names[self.class_of_code[NORMAL_CODE]]

    def classify(self, codes) -> tuple[list[int], list[str]]:
        """SNOMED CT codes -> (sorted scored class indices, the other codes in their order)."""
        class_of_code = self.class_of_code
        classes = sorted({class_of_code[code] for code in codes if code in class_of_code})
        return classes, [code for code in codes if code not in class_of_code]


@functools.cache
def scoring_table(folder: Path = SCORING_DIR) -> ScoringTable:
    """Read and cross-check `dx_mapping_scored.csv`, `dx_mapping_unscored.csv` and `weights.csv` (see the README in
    `cinc2021_scoring/`); an `ECGDataError` naming the file for anything inconsistent."""
    scored_path = folder / "dx_mapping_scored.csv"
    rows = _table_rows(scored_path)
    abbreviation = {row["SNOMEDCTCode"]: row["Abbreviation"] for row in rows}
    if len(abbreviation) != len(rows) or not all(code.isdigit() for code in abbreviation):
        raise ECGDataError(scored_path, "SNOMEDCTCode must hold distinct numeric codes")
    # The equivalences of the `Notes` column, as groups of codes in the table's row order.
    group_of = {code: {code} for code in abbreviation}
    for row in rows:
        for first, second in _SAME_DIAGNOSIS.findall(row["Notes"] or ""):
            if first not in group_of or second not in group_of:
                raise ECGDataError(scored_path, f"{row['Notes']!r} names a code that is not in the table")
            merged = group_of[first] | group_of[second]
            for code in merged:
                group_of[code] = merged
    groups = {frozenset(group) for group in group_of.values()}

    weights_path = folder / "weights.csv"
    table = read_table(weights_path, "Challenge weights table", index_col=0, dtype=str)
    header = [name.strip() for name in table.columns]
    if [name.strip() for name in table.index] != header:
        raise ECGDataError(weights_path, "not a square table whose rows and columns name the same classes")
    codes = []
    for name in header:
        matches = [group for group in groups if set(name.split("|")) <= group]
        if len(matches) != 1:
            raise ECGDataError(weights_path, f"class {name!r} matches {len(matches)} classes of {scored_path.name}")
        codes.append(matches[0])
    if set(codes) != groups or len(codes) != len(groups):
        raise ECGDataError(weights_path, f"its classes do not cover the {len(groups)} classes of {scored_path.name}")
    try:
        weights = table.to_numpy(dtype=np.float64)
    except ValueError as err:
        raise ECGDataError(weights_path, f"weights must be numbers ({err})") from None
    if not np.allclose(np.diag(weights), 1.0) or weights.min() < 0 or weights.max() > 1:
        raise ECGDataError(weights_path, "weights must lie in [0, 1] with 1 on the diagonal")
    order = list(abbreviation)
    names = tuple("|".join(abbreviation[c] for c in sorted(group, key=order.index)) for group in codes)
    unscored = frozenset(row["SNOMEDCTCode"] for row in _table_rows(folder / "dx_mapping_unscored.csv"))
    return ScoringTable(names, tuple(codes), weights, unscored)


def _table_rows(path: Path) -> list[dict]:
    """The rows of a scoring table as dicts of stripped strings (codes stay text: 67741000119109 is one)."""
    table = read_table(path, "Challenge scoring table", dtype=str, keep_default_na=False)
    return [{key: value.strip() for key, value in row.items()} for row in table.to_dict("records")]


CLASSES = scoring_table().names


def challenge_weights(class_names=None) -> list[list[float]]:
    """The Challenge metric's reward matrix for `class_names` (default `CLASSES`), for `metrics/ecg_multilabel`."""
    table = scoring_table()
    index = [table.names.index(name) for name in (class_names or table.names)]
    return table.weights[np.ix_(index, index)].tolist()


def parse_dx(text, path) -> list[str]:
    """The codes of a `#Dx:` value (`"164889003,59118001"`), in order, without repeats; an `ECGDataError` naming the
    header for a missing or empty line or a value that is not a comma-separated list of numeric codes."""
    if text is None:
        raise ECGDataError(path, "no #Dx line: the header carries no diagnosis")
    if not text.strip():
        raise ECGDataError(
            path,
            "#Dx is empty: the header carries no diagnosis (CPSC2018 copies whose labels are in REFERENCE.csv are "
            "read by load_cpsc2018)",
        )
    codes = [code.strip() for code in text.split(",")]
    bad = [code for code in codes if not code.isdigit()]
    if bad:
        raise ECGDataError(path, f"malformed #Dx {text!r}: {bad} are not SNOMED CT codes (digits, comma-separated)")
    return list(dict.fromkeys(codes))


# ----------------------------------------------------------------------------------------------------------------
# The builder
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class CinC2021Config(datasets.BuilderConfig):
    """PhysioNet/CinC Challenge 2021 options.

    Args:
        sampling_rate (`int`, defaults to 100): every record is resampled from its own rate to this one (Hz).
        skip_bad_records (`bool`, defaults to False): drop bad records with one warning instead of raising.
        split_seed (`int`, defaults to 0): seed of the train/validation/test assignment.
        drop_unscored (`bool`, defaults to False): drop the records that carry none of the 26 scored classes.
        leave_out_source (`str`, *optional*): a name of `SOURCE_NAMES`; its records form the test split.
    """

    sampling_rate: int = 100
    skip_bad_records: bool = False
    split_seed: int = 0
    drop_unscored: bool = False
    leave_out_source: str | None = None

    def __post_init__(self):
        super().__post_init__()
        self.validate()

    def validate(self):
        """Also called from `_info`: datasets sets keyword overrides with setattr, after `__post_init__`."""
        if not (isinstance(self.sampling_rate, int) and 0 < self.sampling_rate <= MAX_SAMPLING_RATE):
            raise ValueError(f"sampling_rate must be an int in 1..{MAX_SAMPLING_RATE} Hz, got {self.sampling_rate!r}.")
        if self.leave_out_source not in (None, *SOURCE_NAMES):
            raise ValueError(f"leave_out_source must be one of {SOURCE_NAMES}, got {self.leave_out_source!r}.")


class CinC2021(ECGBuilder):
    """PhysioNet/CinC Challenge 2020/2021 builder: `CinC2021(data_dir=root, sampling_rate=100, cache_dir=...)`.

    Columns: `record`, `source` (class label over `SOURCE_NAMES`), `input_values` (`(samples, 12)` float32 mV,
    canonical lead order, variable length), `labels` (multi-hot float32 over `CLASSES`), `diagnoses` (class names),
    `dx` (every SNOMED CT code of `#Dx`), `unscored` (the codes outside the scored classes), `age`, `sex`,
    `source_sampling_rate`.
    """

    VERSION = VERSION
    BUILDER_CONFIG_CLASS = CinC2021Config
    BUILDER_CONFIGS = [CinC2021Config(name="default", version=VERSION, description="CinC 2021, 26 scored classes")]
    DEFAULT_CONFIG_NAME = "default"
    DEFAULT_WRITER_BATCH_SIZE = 16  # INCART records are 30 min long (8.6 MB each at 100 Hz)
    DISPLAY_NAME = "PhysioNet/CinC 2021"

    @staticmethod
    def class_names() -> list[str]:
        return list(CLASSES)

    @classmethod
    def data_folders(cls, data_dir) -> list[Path]:
        return [Path(os.path.expanduser(part)) for part in str(data_dir).split(os.pathsep) if part]

    def _data_dir(self) -> list[Path]:
        return [check_data_dir(folder, self.DISPLAY_NAME) for folder in self.data_folders(self.config.data_dir)]

    def _info(self):
        self.config.validate()
        held_out = self.config.leave_out_source
        split = f"test = {held_out}, train/validation from the other sources" if held_out else "80/10/10"
        text = (
            "PhysioNet/CinC Challenge 2021 12-lead ECGs (Reyna et al. 2021), 26 scored classes (equivalent SNOMED "
            f"CT codes merged), multi-label, whole records resampled to {self.config.sampling_rate} Hz. Split "
            f"{split}, seed {self.config.split_seed}, by a hash of each record name (dataset_scripts.common."
            "assign_split)."
        )
        features = datasets.Features(
            {
                "record": datasets.Value("string"),
                "source": datasets.ClassLabel(names=list(SOURCE_NAMES)),
                "input_values": signal_feature(None),
                **label_features(CLASSES),
                "dx": datasets.List(datasets.Value("string")),
                "unscored": datasets.List(datasets.Value("string")),
                "age": datasets.Value("float32"),
                "sex": SEX,
                "source_sampling_rate": datasets.Value("float32"),
            }
        )
        return datasets.DatasetInfo(
            description=describe(text, self.config.sampling_rate),
            features=features,
            homepage="https://physionet.org/content/challenge-2021/",
            license="CC BY 4.0",
        )

    def _split_records(self, folders: list[Path]) -> dict[str, list[dict]]:
        records = self._keep_good(_find_records(folders), self._labelled)
        known = scoring_table().unscored
        unknown = Counter(code for r in records for code in r["unscored"] if code not in known)
        if unknown:  # kept in `unscored`, but a code the Challenge's tables never list may be a typo
            logger.warning(
                "%s: %d SNOMED CT code(s) in neither of the Challenge's tables, kept in the unscored column: %s",
                self.DISPLAY_NAME,
                len(unknown),
                ", ".join(f"{code} ({count} records)" for code, count in unknown.most_common()),
            )
        split_of = assign_splits([r["record"] for r in records], self.config.split_seed)
        held_out = self.config.leave_out_source
        if held_out:  # the held-out source is the test split; the others keep their validation records
            for r in records:
                usual = split_of[r["record"]]
                split_of[r["record"]] = "test" if r["source"] == held_out else "train" if usual == "test" else usual
        splits = {"train": datasets.Split.TRAIN, "validation": datasets.Split.VALIDATION, "test": datasets.Split.TEST}
        return {name: [r for r in records if split_of[r["record"]] == split] for split, name in splits.items()}

    def _labelled(self, item: dict) -> dict | None:
        """The record with its source, codes, classes and header metadata; None when dropped as unscored."""
        if "orphan" in item:
            raise ECGDataError(item["path"], f"a signal file without its header {item['record']}.hea: not readable")
        if "duplicate_of" in item:
            raise ECGDataError(
                item["path"], f"record {item['record']} also at {item['duplicate_of']}: point data_dir at one copy"
            )
        match = _RECORD_NAME.match(item["record"])
        if match is None:
            raise ECGDataError(
                item["path"],
                f"record name {item['record']!r} does not start with a Challenge source prefix "
                f"({', '.join(f'{p} {s}' for p, s in SOURCES.items())}) followed by digits",
            )
        header = read_wfdb_header(item["path"])
        codes = parse_dx(header.comment("Dx"), item["path"])
        classes, unscored = scoring_table().classify(codes)
        if not classes and self.config.drop_unscored:
            return None
        return {
            **item,
            "source": SOURCES[match.group(1)],
            "dx": codes,
            "classes": classes,
            "unscored": unscored,
            "age": number_or_none(header.comment("Age")),
            "sex": sex_label(header.comment("Sex")),
        }

    def _example(self, record: dict):
        ecg = read_record(record["path"])
        signal = resample_signal(standard_leads_mv(ecg), ecg.sampling_rate, self.config.sampling_rate)
        return record["record"], {
            "record": record["record"],
            "source": SOURCE_NAMES.index(record["source"]),
            "input_values": signal,
            "labels": multi_hot(record["classes"], len(CLASSES)),
            "diagnoses": record["classes"],
            "dx": record["dx"],
            "unscored": record["unscored"],
            "age": record["age"],
            "sex": record["sex"],
            "source_sampling_rate": ecg.sampling_rate,
        }


def _find_records(folders: list[Path]) -> list[dict]:
    """Every `.hea` below `folders`, once per file (a folder inside another is read once). A record name found in
    two files gives both an entry saying where the other copy is (in the order the folders were given, so the first
    error names the same file on every machine); a `.mat` without its `.hea` an entry saying so."""
    headers, signals = {}, {}
    for folder in folders:  # keyed on the real folder, so that a folder given twice (or inside another) counts once
        for path in sorted(folder.rglob("*.hea")):
            headers.setdefault(path.parent.resolve() / path.name, path)
        for path in folder.rglob("*.mat"):
            signals.setdefault(path.parent.resolve() / path.name, path)
    if not headers:
        raise ECGDataError(os.pathsep.join(map(str, folders)), "no PhysioNet/CinC records (.hea headers) found")
    by_name = {}
    for path in headers.values():
        by_name.setdefault(path.stem, []).append(path)
    items = []
    for name in sorted(by_name):
        copies = by_name[name]
        for path in copies:
            item = {"record": name, "path": str(path)}
            if len(copies) > 1:
                item["duplicate_of"] = ", ".join(str(other) for other in copies if other != path)
            items.append(item)
    stems = {key.with_suffix("") for key in headers}
    orphans = sorted(path for key, path in signals.items() if key.with_suffix("") not in stems)
    return items + [{"record": path.stem, "path": str(path), "orphan": True} for path in orphans]


def load_cinc2021(
    data_dir,
    sampling_rate: int = 100,
    cache_dir=None,
    num_proc: int | None = None,
    skip_bad_records: bool = False,
    split_seed: int = 0,
    drop_unscored: bool = False,
    leave_out_source: str | None = None,
    rebuild: bool = False,
) -> datasets.DatasetDict:
    """Prepare (once, cached) and load the Challenge data as a `DatasetDict` with `train`, `validation` and `test`.

    Args:
        data_dir: a folder, or several (a list, or one string joined by `os.pathsep`), holding `.hea` + `.mat` records
            anywhere below (the Challenge's `training/` folder, or some of its source folders).
        sampling_rate: target rate in Hz (records are 257, 500 or 1000 Hz).
        cache_dir: where the Arrow cache goes (datasets' default cache when None).
        num_proc: processes that read, resample and encode records while preparing.
        skip_bad_records: drop bad records with one warning instead of raising `ECGDataError`.
        split_seed: seed of the split (see the module doc).
        drop_unscored: drop the records without any of the 26 scored classes.
        leave_out_source: one of `SOURCE_NAMES`: its records become the test split.
        rebuild: prepare again even if a cache exists (a changed folder rebuilds by itself: see `common.prepare`).

    Class names: `ds["train"].features["diagnoses"].feature.names` (== `CLASSES`); the Challenge metric's weights:
    `challenge_weights()`.
    """
    if isinstance(data_dir, (list, tuple)):
        data_dir = os.pathsep.join(str(folder) for folder in data_dir)
    builder = CinC2021(
        data_dir=str(data_dir),
        cache_dir=cache_dir,
        sampling_rate=sampling_rate,
        skip_bad_records=skip_bad_records,
        split_seed=split_seed,
        drop_unscored=drop_unscored,
        leave_out_source=leave_out_source,
    )
    return prepare(builder, num_proc=num_proc, rebuild=rebuild)


def main(argv=None):
    options = {
        "--sampling_rate": {"type": int, "default": 100},
        "--split_seed": {"type": int, "default": 0},
        "--drop_unscored": {"action": "store_true", "help": "drop records without a scored class"},
        "--leave_out_source": {"default": None, "choices": SOURCE_NAMES, "help": "its records form the test split"},
    }
    cli("PhysioNet/CinC 2021", load_cinc2021, options, argv, several_folders=True)


if __name__ == "__main__":
    # Run the package's copy of this module, so the builder classes live in `dataset_scripts.cinc2021`, not `__main__`.
    from dataset_scripts.cinc2021 import main as package_main

    package_main()
