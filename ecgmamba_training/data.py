"""Data on disk: the dataset folders, PhysioNet downloads and the train/validation/test splits."""

import logging
import os
import posixpath
from dataclasses import dataclass
from multiprocessing.pool import ThreadPool
from pathlib import Path

from dataset_scripts import load_cinc2021, load_cpsc2018, load_ptbxl
from dataset_scripts.cinc2021 import challenge_weights, scoring_table

logger = logging.getLogger("train_hf")

DEFAULT_DATA_ROOT = "~/.cache/ecgmamba/data"


class SetupError(RuntimeError):
    """Something to fix before training can start (data, Hub access). The message says what and how."""


@dataclass(frozen=True)
class DatasetSource:
    name: str  # human-readable
    folder: str  # its folder below ECGMAMBA_DATA_DIR
    physionet: str  # PhysioNet database directory (with version) that --download fetches
    url: str
    license: str


SOURCES = {
    "ptbxl": DatasetSource(
        "PTB-XL", "ptb-xl", "ptb-xl/1.0.3", "https://physionet.org/content/ptb-xl/1.0.3/", "CC BY 4.0"
    ),
    "cpsc2018": DatasetSource(
        "CPSC2018",
        "cpsc2018",
        "challenge-2020/1.0.2",
        "https://physionet.org/content/challenge-2020/1.0.2/training/cpsc_2018/",
        "CC BY 4.0 (PhysioNet/CinC Challenge 2020 redistribution)",
    ),
    "cinc2021": DatasetSource(
        "PhysioNet/CinC Challenge 2021",
        "cinc2021",
        "challenge-2021/1.0.3",
        "https://physionet.org/content/challenge-2021/1.0.3/",
        "CC BY 4.0",
    ),
}
# Options of one dataset's builder only (DataArguments field -> builder keyword).
DATASET_OPTIONS = {"cinc2021": ("leave_out_source", "drop_unscored")}


def resolve_data_dir(dataset: str, data_dir: str | None) -> Path:
    """The dataset's folder: `data_dir` itself, or `data_dir/<ptb-xl|cpsc2018|cinc2021>` when it holds the dataset
    folders; without `data_dir`, `$ECGMAMBA_DATA_DIR/<folder>` (default root `~/.cache/ecgmamba/data`)."""
    source = SOURCES[dataset]
    if data_dir:
        path = Path(data_dir).expanduser()
        nested = path / source.folder
        return nested if nested.is_dir() else path
    return Path(os.environ.get("ECGMAMBA_DATA_DIR") or DEFAULT_DATA_ROOT).expanduser() / source.folder


def has_data(dataset: str, path: Path) -> bool:
    if dataset == "ptbxl":
        return (path / "ptbxl_database.csv").is_file()
    return path.is_dir() and any(p.suffix in (".hea", ".mat") for p in path.rglob("*"))


def ensure_data(dataset: str, path: Path, download: bool, sampling_rate: int) -> Path:
    """Return `path` if it holds the dataset; with `download`, fetch what is missing first; else a SetupError that
    says where to put the data."""
    source = SOURCES[dataset]
    if download and dataset == "cinc2021":
        raise SetupError(
            f"--download does not fetch {source.name} (88,253 records from seven databases): download its "
            f"training/ folder from {source.url} yourself, then pass --data_dir."
        )
    if download and (dataset == "ptbxl" or not has_data(dataset, path)):
        try:
            (download_ptbxl if dataset == "ptbxl" else download_cpsc2018)(path, sampling_rate)
        except Exception as err:  # no network, PhysioNet down, disk full: say so before anything else happens
            raise SetupError(
                f"Could not download {source.name} from PhysioNet into {path} ({type(err).__name__}: {err}). "
                f"Download it yourself from {source.url} into that folder (or pass --data_dir), then run again."
            ) from err
    if not has_data(dataset, path):
        raise SetupError(
            f"{source.name} not found in {path}. Put your copy there (the PhysioNet layout, from {source.url}), "
            f"point --data_dir (or the ECGMAMBA_DATA_DIR environment variable, the folder holding "
            f"'{source.folder}/') at it, or add --download to fetch it from PhysioNet with wfdb."
        )
    return path


def _fetch(database: str, target: Path, files: list[str], desc: str):
    """Download PhysioNet files (relative paths) with wfdb's downloader, two connections, one progress bar."""
    from tqdm.auto import tqdm
    from wfdb.io import download as wfdb_download

    inputs = [(posixpath.basename(f), posixpath.dirname(f), database, str(target), True, False) for f in files]
    if not inputs:
        return
    wfdb_download.make_local_dirs(str(target), inputs, True)
    with ThreadPool(2) as pool:
        for _ in tqdm(pool.imap_unordered(wfdb_download.dl_pn_file, inputs), total=len(inputs), desc=desc):
            pass


def download_ptbxl(path: Path, sampling_rate: int):
    """The metadata tables and the records at `sampling_rate` that are not in `path` yet."""
    import pandas as pd

    database = SOURCES["ptbxl"].physionet
    tables = ["ptbxl_database.csv", "scp_statements.csv", "LICENSE.txt"]
    _fetch(database, path, [f for f in tables if not (path / f).is_file()], "PTB-XL tables")
    column = "filename_lr" if sampling_rate == 100 else "filename_hr"
    names = pd.read_csv(path / "ptbxl_database.csv", usecols=[column])[column]
    files = [f"{name}.{ext}" for name in names for ext in ("hea", "dat")]
    _fetch(database, path, [f for f in files if not (path / f).is_file()], f"PTB-XL records ({column})")


def download_cpsc2018(path: Path, sampling_rate: int):
    """The CPSC2018 part of the PhysioNet/CinC Challenge 2020 (WFDB headers with SNOMED codes + .mat signals)."""
    from wfdb.io import download as wfdb_download

    database = SOURCES["cpsc2018"].physionet
    files = []
    for group in range(1, 8):
        folder = f"training/cpsc_2018/g{group}"
        records = wfdb_download.get_record_list(f"{database}/{folder}")
        files += [f"{folder}/{record}.{ext}" for record in records for ext in ("hea", "mat")]
    _fetch(database, path, [f for f in files if not (path / f).is_file()], "CPSC2018 records")


def resolve_task(dataset: str, task: str | None) -> str:
    """PTB-XL's label task (default superdiagnostic); CPSC2018 and the CinC 2021 data have one label set, `default`."""
    if dataset == "ptbxl":
        return task or "superdiagnostic"
    if task not in (None, "default"):
        raise SetupError(f"{SOURCES[dataset].name} has one label set; --task {task!r} applies to PTB-XL only.")
    return "default"


def dataset_options(data_args) -> dict:
    """The builder options of `data_args` that belong to its dataset; a SetupError for one set on another dataset."""
    own = DATASET_OPTIONS.get(data_args.dataset, ())
    for dataset, names in DATASET_OPTIONS.items():
        for name in set(names) - set(own):
            if getattr(data_args, name):
                raise SetupError(f"--{name} applies to --dataset {dataset} only.")
    return {name: getattr(data_args, name) for name in own}


def load_splits(
    dataset: str, data_dir: Path, task: str, sampling_rate: int, cache_dir, num_proc, rebuild=False, **options
):
    """The dataset's `DatasetDict`; `rebuild` prepares its cache again, `options` go to its builder."""
    common = dict(sampling_rate=sampling_rate, cache_dir=cache_dir, num_proc=num_proc, rebuild=rebuild)
    if dataset == "ptbxl":
        return load_ptbxl(data_dir, task=task, **common, **options)
    if dataset == "cpsc2018":
        return load_cpsc2018(data_dir, **common, **options)
    return load_cinc2021(data_dir, **common, **options)


def metric_options(dataset: str, class_names) -> dict:
    """Extra options of the metric module for a dataset: the PhysioNet/CinC Challenge metric for cinc2021."""
    if dataset != "cinc2021":
        return {}
    return {"challenge_weights": challenge_weights(class_names), "normal_class": scoring_table().normal_class}
