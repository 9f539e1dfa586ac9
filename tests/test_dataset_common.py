"""What every builder shares: the cache follows the files (fingerprint), the split never moves a record when others
change, bad metadata tables and missing folders give a message naming the file."""

import logging
import math
import os
import shutil
import subprocess
import sys
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from dataset_scripts import ECGDataError, load_cpsc2018, load_ptbxl
from dataset_scripts.common import SPLIT_FRACTIONS, assign_split, assign_splits, data_fingerprint
from dataset_scripts.cpsc2018 import CLASSES, read_reference

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------------------------ the fingerprint


def test_fingerprint_sees_renames_and_restored_timestamps(tmp_path):
    a, b = tmp_path / "a.dat", tmp_path / "b.dat"
    a.write_bytes(b"\x01" * 64)
    b.write_bytes(b"\x02" * 64)
    for path in (a, b):
        os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    (tmp_path / "notes.txt").write_text("not read by the builders")
    first = data_fingerprint([tmp_path])
    assert data_fingerprint([tmp_path]) == first and len(first) == 16
    a.read_bytes()  # reading changes nothing
    (tmp_path / "notes.txt").write_text("still not read")
    assert data_fingerprint([tmp_path]) == first

    # Swapped by renames: same names, sizes and modification times; the inodes moved.
    a.rename(tmp_path / "tmp.dat")
    b.rename(a)
    (tmp_path / "tmp.dat").rename(b)
    swapped = data_fingerprint([tmp_path])
    assert swapped != first

    # Overwritten in place with the modification time put back (cp -p): the change time moved.
    a.write_bytes(b"\x03" * 64)
    os.utime(a, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    assert data_fingerprint([tmp_path]) != swapped
    assert data_fingerprint([tmp_path / "missing"]) is None


# ------------------------------------------------------------------------------------------------ stale caches


@pytest.fixture
def ptbxl_copy(ptbxl_dir, tmp_path):
    """A writable copy of the PTB-XL sample's tables and 100 Hz records."""
    root = tmp_path / "ptb-xl"
    root.mkdir()
    for name in ("ptbxl_database.csv", "scp_statements.csv"):
        shutil.copy(ptbxl_dir / name, root / name)
    shutil.copytree(ptbxl_dir / "records100", root / "records100")
    return root


def by_id(ds):
    return {row["ecg_id"]: row for split in ds for row in ds[split].with_format("numpy")}


def names(ds, row):
    return {ds["train"].features["diagnoses"].feature.names[i] for i in row["diagnoses"]}


def test_a_changed_folder_is_never_served_from_the_cache(ptbxl_copy, tmp_path, caplog):
    cache = str(tmp_path / "cache")
    before = load_ptbxl(ptbxl_copy, cache_dir=cache)
    rows = by_id(before)
    assert names(before, rows[1]) == {"NORM"} and names(before, rows[2]) == {"NORM"}
    assert load_ptbxl(ptbxl_copy, cache_dir=cache)["train"].cache_files == before["train"].cache_files  # a hit

    # 1. A label edited in the metadata table.
    table = pd.read_csv(ptbxl_copy / "ptbxl_database.csv")
    table.loc[table.ecg_id == 1, "scp_codes"] = "{'IMI': 100.0}"
    table.to_csv(ptbxl_copy / "ptbxl_database.csv", index=False)
    with caplog.at_level(logging.WARNING, logger="dataset_scripts"):
        edited = load_ptbxl(ptbxl_copy, cache_dir=cache)
    assert names(edited, by_id(edited)[1]) == {"MI"}
    assert any("1 earlier cache(s) of them" in r.getMessage() for r in caplog.records)

    # 2. The files of records 1 and 2 swapped: each name now holds the other's signal.
    folder = ptbxl_copy / "records100/00000"
    signal_1, signal_2 = rows[1]["input_values"], rows[2]["input_values"]
    headers = {n: (folder / f"0000{n}_lr.hea").read_text() for n in (1, 2)}
    for n, other in ((1, 2), (2, 1)):
        (folder / f"0000{other}_lr.dat").rename(folder / f"0000{n}_lr.swapped")
        (folder / f"0000{n}_lr.hea").write_text(headers[other].replace(f"0000{other}_lr", f"0000{n}_lr"))
    for n in (1, 2):
        (folder / f"0000{n}_lr.swapped").rename(folder / f"0000{n}_lr.dat")
    swapped = by_id(load_ptbxl(ptbxl_copy, cache_dir=cache))
    np.testing.assert_array_equal(swapped[1]["input_values"], signal_2)
    np.testing.assert_array_equal(swapped[2]["input_values"], signal_1)

    # 3. A record removed from the folder and the table; 4. its files gone while the table still lists it.
    table = table[table.ecg_id != 3]
    table.to_csv(ptbxl_copy / "ptbxl_database.csv", index=False)
    for path in folder.glob("00003_lr.*"):
        path.unlink()
    fewer = by_id(load_ptbxl(ptbxl_copy, cache_dir=cache))
    assert 3 not in fewer and set(fewer) == set(swapped) - {3}
    for path in folder.glob("00004_lr.*"):
        path.unlink()
    with pytest.raises(ECGDataError, match=r"00004_lr\.hea: header file not found"):
        load_ptbxl(ptbxl_copy, cache_dir=cache)


def test_rebuild_prepares_again_without_a_change(ptbxl_copy, tmp_path):
    cache = str(tmp_path / "cache")
    first = load_ptbxl(ptbxl_copy, cache_dir=cache)["test"].cache_files[0]["filename"]
    inode = os.stat(first).st_ino
    assert os.stat(load_ptbxl(ptbxl_copy, cache_dir=cache)["test"].cache_files[0]["filename"]).st_ino == inode
    rebuilt = load_ptbxl(ptbxl_copy, cache_dir=cache, rebuild=True)["test"].cache_files[0]["filename"]
    assert rebuilt == first and os.stat(rebuilt).st_ino != inode  # written again


def test_an_added_record_rebuilds(cpsc_sample_copy, tmp_path):
    cache = str(tmp_path / "cache")
    before = load_cpsc2018(cpsc_sample_copy, cache_dir=cache)
    mat = cpsc_sample_copy / "TrainingSet1"
    shutil.copy(mat / "A1981.mat", mat / "A0011.mat")  # REFERENCE.csv lists A0011
    after = load_cpsc2018(cpsc_sample_copy, cache_dir=cache)
    records = {split: list(after[split]["record"]) for split in after}
    assert sum(map(len, records.values())) == sum(before[s].num_rows for s in before) + 1
    assert "A0011" in records[assign_split("A0011")]


@pytest.fixture
def cpsc_sample_copy(data_dir, tmp_path):
    root = tmp_path / "cpsc2018"
    shutil.copytree(data_dir / "cpsc2018", root)
    return root


# ------------------------------------------------------------------------------------------------ stable splits


@pytest.fixture(scope="module")
def reference(data_dir):
    return read_reference(data_dir / "cpsc2018")


def test_split_proportions_on_the_full_reference_csv(reference):
    """80/10/10 within the stated tolerance: 3 standard deviations of a binomial share, overall and per class."""
    split = assign_splits(reference, seed=0)
    assert len(split) == 6877
    for members in [list(reference)] + [[r for r, cs in reference.items() if c in cs] for c in range(len(CLASSES))]:
        counts = Counter(split[r] for r in members)
        for name, fraction in SPLIT_FRACTIONS.items():
            tolerance = 3 * math.sqrt(fraction * (1 - fraction) / len(members))
            assert abs(counts[name] / len(members) - fraction) <= tolerance, (len(members), name, counts)
    assert Counter(split.values()) == {"train": 5476, "validation": 715, "test": 686}
    assert assign_splits(dict(reversed(list(reference.items()))), seed=0) == split  # order does not matter
    other_seed = assign_splits(reference, seed=1)
    assert sum(other_seed[r] != s for r, s in split.items()) > 1000  # the seed matters


def test_removing_or_adding_records_moves_no_other(reference):
    # 200 of the 6,877 possible removals (all of them take about a minute), drawn with a fixed seed.
    split = assign_splits(reference, seed=0)
    rng = np.random.default_rng(0)
    for removed in rng.choice(sorted(reference), size=200, replace=False):
        fewer = assign_splits([r for r in reference if r != removed], seed=0)
        assert fewer == {r: s for r, s in split.items() if r != removed}
    more = assign_splits([*reference, *(f"B{i:05d}" for i in range(500))], seed=0)
    assert {r: more[r] for r in reference} == split


# ------------------------------------------------------------------------------------------------ bad tables, CLI


def test_empty_metadata_tables_name_the_file(ptbxl_copy, cpsc_sample_copy, tmp_path):
    database = ptbxl_copy / "ptbxl_database.csv"
    header = database.read_text().splitlines()[0]
    database.write_text("")
    with pytest.raises(ECGDataError, match=r"ptbxl_database\.csv: empty file"):
        load_ptbxl(ptbxl_copy, cache_dir=str(tmp_path / "c"))
    database.write_text(header + "\n")
    with pytest.raises(ECGDataError, match=r"ptbxl_database\.csv: the PTB-XL metadata table has a header but no rows"):
        load_ptbxl(ptbxl_copy, cache_dir=str(tmp_path / "c"))
    (ptbxl_copy / "scp_statements.csv").write_text("")
    with pytest.raises(ECGDataError, match=r"scp_statements\.csv: empty file"):
        load_ptbxl(ptbxl_copy, cache_dir=str(tmp_path / "c"))
    (cpsc_sample_copy / "REFERENCE.csv").write_text("Recording,First_label,Second_label,Third_label\n")
    with pytest.raises(ECGDataError, match=r"REFERENCE\.csv: empty label table"):
        load_cpsc2018(cpsc_sample_copy, cache_dir=str(tmp_path / "c"))


def test_command_line_with_a_missing_folder_prints_the_message(tmp_path):
    # The shared command line (`dataset_scripts.common.cli`) of every builder; run as a user would.
    env = {**os.environ, "PYTHONPATH": REPO_ROOT}
    command = [sys.executable, "-m", "dataset_scripts.ptbxl", "--data_dir", str(tmp_path / "nowhere")]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 1
    assert f"error: {tmp_path / 'nowhere'}: PTB-XL folder not found" in done.stderr
    assert "Traceback" not in done.stderr
