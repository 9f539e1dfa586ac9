"""CPSC2018 builder: the sample's two layouts, REFERENCE.csv, the split, and synthetic bad records."""

import csv
import logging
import shutil

import numpy as np
import pytest
import scipy.io
import wfdb
from conftest import require_data

from dataset_scripts import CPSC2018, ECGDataError, class_names, load_cpsc2018, signal_metadata
from dataset_scripts.cpsc2018 import CLASSES, SNOMED, main, read_reference

CODE = {name: code for code, name in reversed(SNOMED.items())}  # class -> its first (canonical) SNOMED code
LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


@pytest.fixture(scope="session")
def cpsc_dir(data_dir):
    return require_data(data_dir / "cpsc2018", f"CPSC2018 sample not found at {data_dir / 'cpsc2018'}")


@pytest.fixture(scope="session")
def cpsc(cpsc_dir, tmp_path_factory):
    """`cpsc(sampling_rate)`: the sample prepared once per rate per session."""
    cache_dir, built = tmp_path_factory.mktemp("cpsc_cache"), {}

    def get(sampling_rate=100):
        if sampling_rate not in built:
            built[sampling_rate] = load_cpsc2018(cpsc_dir, sampling_rate, cache_dir=str(cache_dir))
        return built[sampling_rate]

    get.cache_dir = cache_dir
    return get


def reference_rows(path):
    with open(path, newline="") as f:
        return {row[0]: {int(c) - 1 for c in row[1:] if c} for row in list(csv.reader(f))[1:]}


def test_sample_records_and_class_counts(cpsc, cpsc_dir):
    ds = cpsc()
    reference = reference_rows(cpsc_dir / "REFERENCE.csv")
    names = sorted(p.stem for p in (cpsc_dir / "WFDB").glob("*.hea")) + sorted(
        p.stem for p in (cpsc_dir / "TrainingSet1").glob("*.mat")
    )
    assert class_names(ds) == list(CLASSES) == CPSC2018.class_names()
    assert sorted(r for split in ds for r in ds[split]["record"]) == sorted(names)
    assert {s: ds[s].num_rows for s in ds} == {"train": 14, "validation": 3, "test": 3}
    for split in ds:
        labels = np.asarray(ds[split].with_format("numpy")["labels"])
        expected = [[float(c in reference[r]) for c in range(9)] for r in ds[split]["record"]]
        np.testing.assert_array_equal(labels, expected)
        assert [[i for i, v in enumerate(row) if v] for row in expected] == list(ds[split]["diagnoses"])


def test_split_is_fixed(cpsc):
    # The split of the sample, written down: it must not change across runs, machines or library versions.
    ds = cpsc()
    assert list(ds["validation"]["record"]) == ["A0003", "A1980", "A1987"]
    assert list(ds["test"]["record"]) == ["A1982", "A1984", "A1985"]


def test_removing_a_record_moves_no_other(cpsc, cpsc_dir, tmp_path):
    # A user's copy that lacks one record (or skips a bad one) has the same split for every other record.
    full = {row["record"]: split for split in cpsc() for row in cpsc()[split]}
    copy = tmp_path / "cpsc"
    shutil.copytree(cpsc_dir, copy)
    for path in (copy / "WFDB").glob("A0003.*"):
        path.unlink()
    (copy / "TrainingSet1/A1984.mat").unlink()
    fewer = load_cpsc2018(copy, cache_dir=str(tmp_path / "cache"))
    assert {row["record"]: split for split in fewer for row in fewer[split]} == {
        name: split for name, split in full.items() if name not in ("A0003", "A1984")
    }


def test_sample_signals_and_rates(cpsc, cpsc_dir):
    lo, hi = cpsc(100), cpsc(500)
    assert signal_metadata(lo)["sampling_rate"] == 100 and signal_metadata(hi)["sampling_rate"] == 500
    assert signal_metadata(hi)["leads"] == LEADS and signal_metadata(hi)["units"] == "mV"
    assert list(lo["train"]["record"]) == list(hi["train"]["record"])
    for split in lo:
        for a, b in zip(lo[split].with_format("numpy"), hi[split].with_format("numpy")):
            assert b["input_values"].shape[1] == 12 and abs(len(b["input_values"]) / 5 - len(a["input_values"])) < 1
    row = hi["train"].with_format("numpy")[0]
    assert row["record"] == "A0001" and row["age"] == 74 and row["sex"] == 0
    reference, _ = wfdb.rdsamp(str(cpsc_dir / "WFDB/A0001"))  # CinC .mat signal file, format 16+24
    np.testing.assert_allclose(row["input_values"], reference, atol=1e-6)
    original = hi.filter(lambda r: r == "A1981", input_columns="record")["train"].with_format("numpy")[0]
    mat = scipy.io.loadmat(cpsc_dir / "TrainingSet1/A1981.mat")["ECG"][0, 0]
    np.testing.assert_allclose(original["input_values"], mat["data"].T, atol=1e-6)
    assert original["sex"] == 1 and original["age"] == 48


def test_cli(cpsc, cpsc_dir, capsys):
    cpsc(100)
    main(["--data_dir", str(cpsc_dir), "--cache_dir", str(cpsc.cache_dir)])
    out = capsys.readouterr().out
    assert "I-AVB" in out and "records" in out and "test" in out


def test_reference_csv_multi_labels(cpsc_dir):
    labels = read_reference(cpsc_dir)
    assert len(labels) == 6877
    assert {name: set(v) for name, v in labels.items()} == reference_rows(cpsc_dir / "REFERENCE.csv")
    # 476 records carry two or three labels (A0953 lists PAC twice: one label)
    assert sum(len(v) == 2 for v in labels.values()) == 470 and sum(len(v) == 3 for v in labels.values()) == 6
    assert labels["A0001"] == [CLASSES.index("RBBB")] and labels["A1236"] == [4, 5, 8]


# ---------------------------------------------------------------------------------------------------------------
# Synthetic records
# ---------------------------------------------------------------------------------------------------------------


def write_original(folder, name, signal, age=50, sex="Male"):
    """An original-release record: MATLAB struct ECG with sex, age and data (12 x N, mV)."""
    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(folder / f"{name}.mat", {"ECG": {"sex": sex, "age": age, "data": signal.T}})


def write_cinc(folder, name, signal, dx="", age=50, sex="Male"):
    """A CinC 2020 record: WFDB header + MATLAB v4 `val` (int16, 12 x N, gain 1000/mV) = format 16 at offset 24."""
    folder.mkdir(parents=True, exist_ok=True)
    digital = np.round(signal * 1000).astype(np.int16)
    scipy.io.savemat(folder / f"{name}.mat", {"val": digital.T}, format="4")
    lines = [f"{name} 12 500 {len(signal)}"]
    for i, lead in enumerate(LEADS):
        checksum = int(digital[:, i].sum()) % 65536
        lines.append(f"{name}.mat 16+24 1000/mV 16 0 {digital[0, i]} {checksum} 0 {lead}")
    lines += [f"#Age: {age}", f"#Sex: {sex}", f"#Dx: {dx}"]
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")


def write_reference(path, labels):
    rows = ["Recording,First_label,Second_label,Third_label"]
    rows += [
        f"{name}," + ",".join([str(c + 1) for c in classes] + [""] * (3 - len(classes)))
        for name, classes in labels.items()
    ]
    path.write_text("\r\n".join(rows) + "\r\n")


def synthetic_labels(n=13):  # 13: S0004 in validation, S0011 and S0012 in test
    return {f"S{i:04d}": sorted({i % 9, (i * 4) % 9}) for i in range(n)}


def make_cpsc(root, layout, labels, dx=True, reference=True):
    rng = np.random.default_rng(0)
    for i, (name, classes) in enumerate(labels.items()):
        signal = np.round(rng.normal(0, 0.3, (3000 + 250 * i, 12)), 3)  # 6-10 s at 500 Hz, whole microvolts
        if layout == "original":
            write_original(root / "TrainingSet1", name, signal)
        else:
            write_cinc(root / "WFDB", name, signal, ",".join(CODE[CLASSES[c]] for c in classes) if dx else "")
    if reference:
        write_reference(root / "REFERENCE.csv", labels)
    return root


def rows_by_record(ds):
    return {row["record"]: (split, row) for split in ds for row in ds[split].with_format("numpy")}


def test_both_layouts_give_the_same_records(tmp_path):
    labels = synthetic_labels()
    original = load_cpsc2018(make_cpsc(tmp_path / "orig", "original", labels), cache_dir=str(tmp_path / "c"))
    cinc = load_cpsc2018(make_cpsc(tmp_path / "cinc", "wfdb", labels, reference=False), cache_dir=str(tmp_path / "c"))
    a, b = rows_by_record(original), rows_by_record(cinc)
    assert a.keys() == b.keys() == labels.keys()
    for name, classes in labels.items():
        assert a[name][0] == b[name][0]  # same split
        assert list(a[name][1]["diagnoses"]) == list(b[name][1]["diagnoses"]) == classes
        np.testing.assert_allclose(a[name][1]["input_values"], b[name][1]["input_values"], atol=1e-5)
    assert sum(len(c) > 1 for c in labels.values()) > 0  # multi-label records among them


def test_sample_records_converted_to_cinc_layout(cpsc_dir, tmp_path):
    # The sample's ten TrainingSet1 records, and the same converted to the CinC layout with SNOMED codes in #Dx.
    reference = reference_rows(cpsc_dir / "REFERENCE.csv")
    (tmp_path / "orig").mkdir()
    shutil.copy(cpsc_dir / "REFERENCE.csv", tmp_path / "orig/REFERENCE.csv")
    for mat in sorted((cpsc_dir / "TrainingSet1").glob("*.mat")):
        shutil.copy(mat, tmp_path / "orig" / mat.name)
        data = scipy.io.loadmat(mat)["ECG"][0, 0]["data"].T
        write_cinc(tmp_path / "cinc", mat.stem, data, ",".join(CODE[CLASSES[c]] for c in sorted(reference[mat.stem])))
    original = rows_by_record(load_cpsc2018(tmp_path / "orig", cache_dir=str(tmp_path / "c")))
    cinc = rows_by_record(load_cpsc2018(tmp_path / "cinc", cache_dir=str(tmp_path / "c")))
    assert original.keys() == cinc.keys() and len(cinc) == 10
    for name, (split, row) in cinc.items():
        assert set(row["diagnoses"]) == reference[name] and split == original[name][0]
        np.testing.assert_allclose(row["input_values"], original[name][1]["input_values"], atol=1e-3)


def test_reference_fills_empty_dx(tmp_path):
    labels = synthetic_labels()
    ds = load_cpsc2018(make_cpsc(tmp_path / "d", "wfdb", labels, dx=False), cache_dir=str(tmp_path / "c"))
    assert {name: list(row["diagnoses"]) for name, (_, row) in rows_by_record(ds).items()} == labels


def expect_error(root, tmp_path, match, **kwargs):
    with pytest.raises(ECGDataError, match=match):
        load_cpsc2018(root, cache_dir=str(tmp_path / "cache"), **kwargs)


def test_missing_folder_and_no_records(tmp_path):
    expect_error(tmp_path / "nowhere", tmp_path, "CPSC2018 folder not found")
    (tmp_path / "empty").mkdir()
    expect_error(tmp_path / "empty", tmp_path, r"no CPSC2018 records")


def test_unknown_snomed_code(tmp_path):
    root = make_cpsc(tmp_path / "d", "wfdb", synthetic_labels(), reference=False)
    hea = root / "WFDB/S0003.hea"
    hea.write_text(hea.read_text().replace("#Dx: ", "#Dx: 999999,"))
    expect_error(root, tmp_path, r"S0003\.hea: unknown SNOMED CT code\(s\) \['999999'\].* load_cinc2021")


def test_record_without_labels(tmp_path):
    root = make_cpsc(tmp_path / "d", "wfdb", synthetic_labels(), dx=False, reference=False)
    expect_error(root, tmp_path, r"S0000\.hea: no #Dx codes and no row for S0000 in any REFERENCE\.csv")
    root = make_cpsc(tmp_path / "o", "original", synthetic_labels(), reference=False)
    expect_error(root, tmp_path, r"S0000\.mat: no row for S0000")


def test_header_sample_count_and_truncation(tmp_path):
    root = make_cpsc(tmp_path / "d", "wfdb", synthetic_labels())
    hea = root / "WFDB/S0002.hea"
    hea.write_text(hea.read_text().replace("S0002 12 500 3500", "S0002 12 500 3600"))
    expect_error(root, tmp_path, r"S0002\.mat: truncated: S0002\.hea announces 3600 samples")
    hea.write_text(hea.read_text().replace("S0002 12 500 3600", "S0002 12 500 3400"))
    expect_error(root, tmp_path, r"S0002\.mat: longer than announced")
    hea.write_text(hea.read_text().replace("S0002 12 500 3400", "S0002 12 500 3500"))
    mat = root / "WFDB/S0005.mat"
    mat.write_bytes(mat.read_bytes()[:-7])
    expect_error(root, tmp_path, r"S0005\.mat: truncated")


def test_nan_and_damaged_original_records(tmp_path):
    root = make_cpsc(tmp_path / "d", "original", synthetic_labels())
    signal = np.zeros((3000, 12))
    signal[100, 2] = np.nan
    write_original(root / "TrainingSet1", "S0004", signal)
    expect_error(root, tmp_path, r"S0004\.mat: 1 missing \(NaN/inf\) samples in lead\(s\) \['III'\] at 0\.20-0\.20 s")
    write_original(root / "TrainingSet1", "S0004", np.zeros((3000, 8)))
    expect_error(root, tmp_path, r"S0004\.mat: ECG\.data has shape \(8, 3000\)")
    (root / "TrainingSet1/S0004.mat").write_bytes(b"not a mat file")
    expect_error(root, tmp_path, r"S0004\.mat: not a readable MATLAB file")


def test_wfdb_nan_samples_and_duplicates(tmp_path):
    root = make_cpsc(tmp_path / "d", "wfdb", synthetic_labels())
    signal = np.round(np.random.default_rng(1).normal(0, 0.3, (3000, 12)), 3)
    signal[5, LEADS.index("V1")] = -32.768  # WFDB's invalid-sample code (-32768 at 1000/mV), checksum included
    write_cinc(root / "WFDB", "S0001", signal, "426783006")
    expect_error(root, tmp_path, r"S0001\.hea: 1 missing \(NaN/inf\) samples in lead\(s\) \['V1'\] at 0\.01-0\.01 s")
    root = make_cpsc(tmp_path / "dup", "wfdb", synthetic_labels())
    write_original(root / "TrainingSet1", "S0007", np.zeros((3000, 12)))
    expect_error(root, tmp_path, r"record S0007 also at")


def test_skip_bad_records_and_empty_split(tmp_path, caplog):
    labels = synthetic_labels(22)  # 20 usable records, two in validation and two in test
    root = make_cpsc(tmp_path / "d", "wfdb", labels)
    (root / "WFDB/S0003.mat").write_bytes(b"")
    hea = root / "WFDB/S0008.hea"
    hea.write_text(hea.read_text().replace("#Dx: ", "#Dx: 1,"))
    with caplog.at_level(logging.WARNING, logger="dataset_scripts"):
        ds = load_cpsc2018(root, cache_dir=str(tmp_path / "c"), skip_bad_records=True)
    assert set(rows_by_record(ds)) == set(labels) - {"S0003", "S0008"}
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 1 and "skipped 2 bad record(s)" in warnings[0]
    assert "S0003.mat: truncated" in warnings[0] and "S0008.hea: unknown SNOMED" in warnings[0]
    expect_error(
        make_cpsc(tmp_path / "few", "wfdb", synthetic_labels(5)), tmp_path, "no usable records for the test split"
    )


def test_bad_sampling_rate(tmp_path):
    with pytest.raises(ValueError, match="sampling_rate"):
        load_cpsc2018(tmp_path, sampling_rate=1000)


def test_cache_is_keyed_on_version_and_options(cpsc_dir, tmp_path):
    default = CPSC2018(data_dir=str(cpsc_dir), cache_dir=str(tmp_path))
    other = CPSC2018(data_dir=str(cpsc_dir), cache_dir=str(tmp_path), split_seed=1)
    assert default.config.version == CPSC2018.VERSION and default.cache_dir.endswith(
        f"/{CPSC2018.VERSION}/{default.hash}"
    )
    assert default.cache_dir != other.cache_dir
