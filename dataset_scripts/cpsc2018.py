"""CPSC2018 (China Physiological Signal Challenge 2018) as a `datasets` builder.

Nine classes, multi-label (up to three labels a record): Normal, AF, I-AVB, LBBB, RBBB, PAC, PVC, STD, STE
(the challenge's label numbers 1-9, in that order). Both releases are read, anywhere below `data_dir`:

- the original challenge layout: `TrainingSet*/A####.mat` (MATLAB struct `ECG`: `sex`, `age`, `data` 12 x N mV at
  500 Hz) with labels from `REFERENCE.csv` (`Recording,First_label,Second_label,Third_label`);
- the PhysioNet/CinC 2020 WFDB layout: `A####.hea` + `A####.mat`, labels as SNOMED CT codes in the `#Dx:` comment;
  where `#Dx:` is empty, labels come from `REFERENCE.csv` when one is present.

A `.mat` with a `.hea` of the same name is a WFDB record, one without is an original struct; every
`REFERENCE.csv` below `data_dir` is read. Records are 6-60 s at 500 Hz and kept whole, resampled to
`sampling_rate`: `input_values` has a variable length `(samples, 12)`, so training can crop windows and evaluation
can slide them.

There is no public test set. The split is defined here: each record goes to train, validation or test from a
SHA-256 hash of `f"{split_seed}:{record}"` alone (`dataset_scripts.common.assign_split`, shared with the CinC 2021
builder): 80/10/10 in expectation for every label combination, identical on every machine and run, and adding,
removing or relabelling records never moves another one. On the full `REFERENCE.csv` (6,877 records, seed 0) it
gives 5,476 / 715 / 686 records (79.6 / 10.4 / 10.0%), every class within the tolerance `assign_split` states.

```python
from dataset_scripts import load_cpsc2018
ds = load_cpsc2018("path/to/cpsc2018", sampling_rate=100)
ds["train"][0]["input_values"]       # (samples, 12) float32 mV, 6-60 s
ds["train"].features["diagnoses"].feature.names   # CLASSES, the order of `labels`
```

Bad input (missing folder or file, no records, truncated or inconsistent signal file, NaN samples, an unknown SNOMED
code, a record without labels, the same record twice) raises `ECGDataError` naming the file and the problem, and
nothing is cached; with `skip_bad_records=True` bad records are dropped instead and counted and named in one
warning. An empty split is always an error.
"""

import csv
from dataclasses import dataclass
from pathlib import Path

import datasets

from modeling_ecgmamba.ecg_records import ECGDataError, read_record, read_wfdb_header, standard_leads_mv
from modeling_ecgmamba.feature_extraction_ecgmamba import resample_signal

from .common import (
    SEX,
    ECGBuilder,
    assign_splits,
    cli,
    describe,
    label_features,
    multi_hot,
    number_or_none,
    prepare,
    sex_label,
    signal_feature,
)

# Bump when the output changes (the cache folder is keyed on the version, the options and the files' fingerprint).
# 1.1.0: records read by the library's shared reader (samples converted to mV in float64, then stored as float32).
# 1.2.0: the split comes from each record's own hash (records no longer move when others are added or removed).
VERSION = datasets.Version("1.2.0")
CLASSES = ("Normal", "AF", "I-AVB", "LBBB", "RBBB", "PAC", "PVC", "STD", "STE")
SOURCE_RATE = 500  # Hz, both releases
REFERENCE_CSV = "REFERENCE.csv"
# SNOMED CT codes of the CinC 2020 headers; the second PAC, PVC and RBBB codes are the ones the 2020 challenge
# scored as equivalent.
SNOMED = {
    "426783006": "Normal",  # sinus rhythm
    "164889003": "AF",
    "270492004": "I-AVB",
    "164909002": "LBBB",
    "59118001": "RBBB",
    "713427006": "RBBB",  # complete RBBB
    "284470004": "PAC",
    "63593006": "PAC",  # supraventricular premature beats
    "164884008": "PVC",  # ventricular ectopics
    "427172004": "PVC",  # premature ventricular contractions
    "429622005": "STD",
    "164931005": "STE",
}
SPLITS = {"train": datasets.Split.TRAIN, "validation": datasets.Split.VALIDATION, "test": datasets.Split.TEST}


def read_reference(data_dir: Path) -> dict[str, list[int]]:
    """Record name -> class indices from every `REFERENCE.csv` below `data_dir` (label numbers 1-9)."""
    labels, origin = {}, {}
    for path in sorted(data_dir.rglob(REFERENCE_CSV)):
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [(line, [cell.strip() for cell in row]) for line, row in enumerate(csv.reader(f), start=1)]
        rows = [(line, cells) for line, cells in rows if cells and cells[0] and cells[0].lower() != "recording"]
        if not rows:
            raise ECGDataError(path, "empty label table: no rows (expected Recording,First_label,Second_label,...)")
        for line, cells in rows:
            try:
                classes = sorted({int(float(cell)) - 1 for cell in cells[1:] if cell})
            except ValueError:
                raise ECGDataError(path, f"line {line}: labels {cells[1:]} are not numbers 1-9") from None
            if not classes or not all(0 <= c < len(CLASSES) for c in classes):
                raise ECGDataError(path, f"line {line}: labels {cells[1:]} are not numbers 1-9")
            name = cells[0]
            if name in labels and labels[name] != classes:
                raise ECGDataError(path, f"record {name}: labels differ from {origin[name]}")
            labels[name], origin[name] = classes, path
    return labels


@dataclass
class CPSC2018Config(datasets.BuilderConfig):
    """CPSC2018 options.

    Args:
        sampling_rate (`int`, defaults to 100): records are resampled from 500 Hz to this rate.
        skip_bad_records (`bool`, defaults to False): drop unreadable records with one warning instead of raising.
        split_seed (`int`, defaults to 0): seed of the train/validation/test assignment.
    """

    sampling_rate: int = 100
    skip_bad_records: bool = False
    split_seed: int = 0

    def __post_init__(self):
        super().__post_init__()
        self.validate()

    def validate(self):
        """Also called from `_info`: datasets sets keyword overrides with setattr, after `__post_init__`."""
        if not (isinstance(self.sampling_rate, int) and 0 < self.sampling_rate <= SOURCE_RATE):
            raise ValueError(f"sampling_rate must be an int in 1..{SOURCE_RATE} Hz, got {self.sampling_rate!r}.")


class CPSC2018(ECGBuilder):
    """CPSC2018 builder: `CPSC2018(data_dir=root, sampling_rate=100, cache_dir=...)`.

    Columns: `record` (e.g. `"A0001"`), `input_values` (`(samples, 12)` float32 mV, canonical lead order, variable
    length), `labels` (multi-hot float32 over `CLASSES`), `diagnoses` (class names), `age`, `sex`.
    Class names: `CPSC2018.class_names()` or `features["diagnoses"].feature.names`.
    """

    VERSION = VERSION
    BUILDER_CONFIG_CLASS = CPSC2018Config
    BUILDER_CONFIGS = [CPSC2018Config(name="default", version=VERSION, description="CPSC2018, nine classes")]
    DEFAULT_CONFIG_NAME = "default"
    DEFAULT_WRITER_BATCH_SIZE = 64  # records up to 60 s
    DISPLAY_NAME = "CPSC2018"

    @staticmethod
    def class_names() -> list[str]:
        return list(CLASSES)

    def _info(self):
        self.config.validate()
        text = (
            "CPSC2018 12-lead ECGs (Liu et al. 2018), nine classes, multi-label, whole records (6-60 s) resampled "
            f"from 500 Hz to {self.config.sampling_rate} Hz. Split 80/10/10, label-stratified, seed "
            f"{self.config.split_seed} by a hash of each record name (dataset_scripts.common.assign_split)."
        )
        features = datasets.Features(
            {
                "record": datasets.Value("string"),
                "input_values": signal_feature(None),
                **label_features(CLASSES),
                "age": datasets.Value("float32"),
                "sex": SEX,
            }
        )
        return datasets.DatasetInfo(
            description=describe(text, self.config.sampling_rate),
            features=features,
            homepage="http://2018.icbeb.org/Challenge.html",
        )

    def _split_records(self, data_dir: Path) -> dict[str, list[dict]]:
        self._reference = read_reference(data_dir)
        records = self._keep_good(_find_records(data_dir), self._labelled)
        split_of = assign_splits([r["record"] for r in records], self.config.split_seed)
        return {name: [r for r in records if split_of[r["record"]] == split] for split, name in SPLITS.items()}

    def _labelled(self, record: dict) -> dict:
        """The record with its classes: SNOMED codes in `#Dx`, else its `REFERENCE.csv` row."""
        path = Path(record["path"])
        dx = read_wfdb_header(path).comment("Dx") if record["layout"] == "wfdb" else None
        codes = [code.strip() for code in (dx or "").split(",") if code.strip()]
        if codes:
            unknown = [code for code in codes if code not in SNOMED]
            if unknown:
                raise ECGDataError(
                    path,
                    f"unknown SNOMED CT code(s) {unknown} in #Dx: CPSC2018 has nine classes (codes {sorted(SNOMED)}). "
                    "Records of the PhysioNet/CinC Challenge's other sources (CPSC2018-Extra Q*, Georgia E*, ...) "
                    "are read by load_cinc2021",
                )
            classes = sorted({CLASSES.index(SNOMED[code]) for code in codes})
        elif record["record"] in self._reference:
            classes = self._reference[record["record"]]
        else:
            where = "no #Dx codes and " if record["layout"] == "wfdb" else ""
            raise ECGDataError(path, f"{where}no row for {record['record']} in any {REFERENCE_CSV}")
        return {**record, "classes": classes}

    def _example(self, record: dict):
        ecg = read_record(record["path"])  # a WFDB record (.hea) or an original struct (.mat)
        return record["record"], {
            "record": record["record"],
            "input_values": resample_signal(standard_leads_mv(ecg), ecg.sampling_rate, self.config.sampling_rate),
            "labels": multi_hot(record["classes"], len(CLASSES)),
            "diagnoses": record["classes"],
            "age": number_or_none(ecg.metadata.get("Age")),
            "sex": sex_label(ecg.metadata.get("Sex")),
        }


def _find_records(data_dir: Path) -> list[dict]:
    """Every record below `data_dir`: a `.hea` is a WFDB record, a `.mat` without a `.hea` an original struct."""
    found = {}
    headers = sorted(data_dir.rglob("*.hea"))
    stems = {h.with_suffix("") for h in headers}
    mats = [m for m in sorted(data_dir.rglob("*.mat")) if m.with_suffix("") not in stems]
    for path, layout in [(h, "wfdb") for h in headers] + [(m, "original") for m in mats]:
        if path.stem in found:
            raise ECGDataError(
                path, f"record {path.stem} also at {found[path.stem]['path']}: point data_dir at one copy"
            )
        found[path.stem] = {"record": path.stem, "layout": layout, "path": str(path)}
    if not found:
        raise ECGDataError(data_dir, "no CPSC2018 records (.hea, or .mat structs) found")
    return [found[name] for name in sorted(found)]


def load_cpsc2018(
    data_dir,
    sampling_rate: int = 100,
    cache_dir=None,
    num_proc: int | None = None,
    skip_bad_records: bool = False,
    split_seed: int = 0,
    rebuild: bool = False,
) -> datasets.DatasetDict:
    """Prepare (once, cached) and load CPSC2018 as a `DatasetDict` with `train`, `validation` and `test`.

    Args:
        data_dir: your CPSC2018 folder (either release, see the module doc).
        sampling_rate: target rate in Hz (records are 500 Hz).
        cache_dir: where the Arrow cache goes (datasets' default cache when None).
        num_proc: processes that read, resample and encode records while preparing.
        skip_bad_records: drop bad records with one warning instead of raising `ECGDataError`.
        split_seed: seed of the split (see the module doc).
        rebuild: prepare again even if a cache exists (a changed folder rebuilds by itself: see `common.prepare`).

    Class names: `ds["train"].features["diagnoses"].feature.names` (== `CLASSES`); sampling rate, units and leads:
    `dataset_scripts.signal_metadata(ds)`.
    """
    builder = CPSC2018(
        data_dir=str(data_dir),
        cache_dir=cache_dir,
        sampling_rate=sampling_rate,
        skip_bad_records=skip_bad_records,
        split_seed=split_seed,
    )
    return prepare(builder, num_proc=num_proc, rebuild=rebuild)


def main(argv=None):
    options = {"--sampling_rate": {"type": int, "default": 100}, "--split_seed": {"type": int, "default": 0}}
    cli("CPSC2018", load_cpsc2018, options, argv)


if __name__ == "__main__":
    # Run the package's copy of this module, so the builder classes live in `dataset_scripts.cpsc2018`, not `__main__`.
    from dataset_scripts.cpsc2018 import main as package_main

    package_main()
