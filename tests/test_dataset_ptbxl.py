"""PTB-XL builder: the 400-record sample against an independent reading of its CSVs, and synthetic bad records."""

import ast
import csv
import logging

import numpy as np
import pytest
import wfdb

from dataset_scripts import PTBXL, ECGDataError, class_names, common, load_ptbxl, signal_metadata
from dataset_scripts.ptbxl import main
from modeling_ecgmamba.feature_extraction_ecgmamba import STANDARD_LEADS, resample_signal

TASKS = ["all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm"]
SIZES = {"all": 71, "diagnostic": 44, "subdiagnostic": 23, "superdiagnostic": 5, "form": 19, "rhythm": 12}
FOLDS = {"train": range(1, 9), "validation": [9], "test": [10]}


@pytest.fixture(scope="session")
def ptbxl(ptbxl_dir, tmp_path_factory):
    """`ptbxl(task, sampling_rate)`: each config prepared once per session, in a temporary cache."""
    cache_dir, built = tmp_path_factory.mktemp("ptbxl_cache"), {}

    def get(task="superdiagnostic", sampling_rate=100):
        if (task, sampling_rate) not in built:
            built[task, sampling_rate] = load_ptbxl(ptbxl_dir, task, sampling_rate, cache_dir=str(cache_dir))
        return built[task, sampling_rate]

    get.cache_dir = cache_dir
    return get


def expected_labels(ptbxl_dir, task):
    """ecg_id -> (strat_fold, set of class names), straight from the CSVs (the benchmark's aggregation)."""
    with open(ptbxl_dir / "scp_statements.csv", newline="") as f:
        statements = {row[""]: row for row in csv.DictReader(f)}

    def classes(code):
        s = statements[code]
        diagnostic = s["diagnostic"] == "1.0"
        return {
            "all": code,
            "diagnostic": code if diagnostic else None,
            "subdiagnostic": s["diagnostic_subclass"] if diagnostic else None,
            "superdiagnostic": s["diagnostic_class"] if diagnostic else None,
            "form": code if s["form"] == "1.0" else None,
            "rhythm": code if s["rhythm"] == "1.0" else None,
        }[task]

    names = sorted({classes(code) for code in statements} - {None})
    result = {}
    with open(ptbxl_dir / "ptbxl_database.csv", newline="") as f:
        for row in csv.DictReader(f):
            labels = {classes(code) for code in ast.literal_eval(row["scp_codes"])} - {None}
            if labels:
                result[int(row["ecg_id"])] = (int(row["strat_fold"]), labels)
    return names, result


@pytest.mark.parametrize("task", TASKS)
def test_records_and_class_counts_match_the_csvs(ptbxl, ptbxl_dir, task):
    ds = ptbxl(task)
    names, expected = expected_labels(ptbxl_dir, task)
    assert class_names(ds) == names and len(names) == SIZES[task]
    for split, folds in FOLDS.items():
        ids = sorted(i for i, (fold, _) in expected.items() if fold in folds)
        assert sorted(ds[split]["ecg_id"]) == ids
        counts = [sum(name in expected[i][1] for i in ids) for name in names]
        labels = np.asarray(ds[split].with_format("numpy")["labels"])
        assert labels.shape == (len(ids), len(names)) and labels.dtype == np.float32
        assert labels.sum(axis=0).astype(int).tolist() == counts
        # `diagnoses` names the same classes as the multi-hot `labels`
        for row in ds[split].select(range(5)):
            assert row["diagnoses"] == [i for i, v in enumerate(row["labels"]) if v == 1.0]


def test_known_records(ptbxl):
    def names_of(task, ecg_id):
        ds = ptbxl(task)
        for split in ds:
            rows = ds[split].filter(lambda x: x == ecg_id, input_columns="ecg_id")
            if rows.num_rows:
                row = rows[0]
                return split, {class_names(ds)[i] for i in row["diagnoses"]}, row
        return None, None, None

    split, labels, row = names_of("superdiagnostic", 1)
    assert (split, labels) == ("train", {"NORM"})
    assert row["patient_id"] == 15709 and row["strat_fold"] == 3 and row["sex"] == 1 and row["age"] == 56.0
    assert row["device"] == "CS-12   E" and row["static_noise"] == " , I-V1,  " and row["validated_by_human"] is True
    assert names_of("all", 1)[1] == {"NORM", "LVOLT", "SR"}
    assert names_of("superdiagnostic", 8)[:2] == ("validation", {"MI"})
    assert names_of("subdiagnostic", 8)[1] == {"IMI"}
    assert names_of("superdiagnostic", 39)[1] == {"MI", "STTC"}
    assert names_of("rhythm", 17)[1] == {"AFIB", "AFLT"}
    assert names_of("superdiagnostic", 17)[0] is None  # rhythm/form codes only: no label in this task


def test_signals_match_wfdb_and_sampling_rates(ptbxl, ptbxl_dir):
    lo, hi = ptbxl("superdiagnostic", 100), ptbxl("superdiagnostic", 500)
    assert signal_metadata(lo) == {
        "sampling_rate": 100,
        "units": "mV",
        "leads": list(STANDARD_LEADS),
        "layout": "(time, lead)",
    }
    assert signal_metadata(hi)["sampling_rate"] == 500
    assert lo["test"]["ecg_id"] == hi["test"]["ecg_id"] and lo["test"]["labels"] == hi["test"]["labels"]
    x_lo = np.asarray(lo["train"].with_format("numpy")[0]["input_values"])
    x_hi = np.asarray(hi["train"].with_format("numpy")[0]["input_values"])
    assert x_lo.shape == (1000, 12) and x_hi.shape == (5000, 12) and x_lo.dtype == np.float32
    reference, _ = wfdb.rdsamp(str(ptbxl_dir / "records100/00000/00001_lr"))  # leads already in canonical order
    np.testing.assert_allclose(x_lo, reference, atol=1e-6)
    downsampled = resample_signal(x_hi, 500, 100)
    for lead in range(12):
        assert np.corrcoef(downsampled[:, lead], x_lo[:, lead])[0, 1] > 0.95


def test_two_processes_give_the_same_dataset(ptbxl, ptbxl_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(common, "MIN_SHARD_RECORDS", 100)  # the sample's train split in two shards, one per process
    one = ptbxl("superdiagnostic")
    two = load_ptbxl(ptbxl_dir, "superdiagnostic", cache_dir=str(tmp_path), num_proc=2)
    assert len(list(tmp_path.rglob("ptbxl-train-*-of-00002.arrow"))) == 2  # one file per process
    for split in one:
        assert two[split]["ecg_id"] == one[split]["ecg_id"]
        a, b = one[split].with_format("numpy"), two[split].with_format("numpy")
        np.testing.assert_array_equal(a[-3:]["input_values"], b[-3:]["input_values"])


def test_class_names_and_cli(ptbxl, ptbxl_dir, capsys):
    assert PTBXL.class_names("superdiagnostic", ptbxl_dir) == ["CD", "HYP", "MI", "NORM", "STTC"]
    ptbxl("rhythm")
    main(["--data_dir", str(ptbxl_dir), "--task", "rhythm", "--cache_dir", str(ptbxl.cache_dir)])
    out = capsys.readouterr().out
    assert "records" in out and "SR" in out and "validation" in out and "100 Hz" in out


# ---------------------------------------------------------------------------------------------------------------
# Synthetic records: bad input
# ---------------------------------------------------------------------------------------------------------------

STATEMENTS = """,description,diagnostic,form,rhythm,diagnostic_class,diagnostic_subclass
NORM,normal ECG,1.0,,,NORM,NORM
IMI,inferior myocardial infarction,1.0,,,MI,IMI
LVOLT,low QRS voltages,,1.0,,,
SR,sinus rhythm,,,1.0,,
"""
HEADER = (
    "ecg_id,patient_id,age,sex,height,weight,nurse,site,device,recording_date,report,scp_codes,heart_axis,"
    "infarction_stadium1,infarction_stadium2,validated_by,second_opinion,initial_autogenerated_report,"
    "validated_by_human,baseline_drift,static_noise,burst_noise,electrodes_problems,extra_beats,pacemaker,"
    "strat_fold,filename_lr,filename_hr"
)
WFDB_LEADS = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def write_record(folder, name, signal):
    wfdb.wrsamp(
        name,
        fs=100,
        units=["mV"] * 12,
        sig_name=WFDB_LEADS,
        p_signal=signal,
        fmt=["16"] * 12,
        adc_gain=[1000.0] * 12,
        baseline=[0] * 12,
        write_dir=str(folder),
    )


def make_ptbxl(root, folds=(1, 2, 9, 10), codes=None):
    """A tiny PTB-XL copy: one 100 Hz record per fold, written with wfdb.wrsamp (the first four; the rest are
    copies, renamed, because wrsamp is slow)."""
    folder = root / "records100/00000"
    folder.mkdir(parents=True)
    (root / "scp_statements.csv").write_text(STATEMENTS)
    lines = [HEADER]
    rng = np.random.default_rng(0)
    for ecg_id, fold in enumerate(folds, start=1):
        name = f"{ecg_id:05d}_lr"
        if ecg_id <= 4:
            write_record(folder, name, rng.normal(0, 0.5, (1000, 12)))
        else:
            (folder / f"{name}.dat").write_bytes((folder / "00004_lr.dat").read_bytes())
            (folder / f"{name}.hea").write_text((folder / "00004_lr.hea").read_text().replace("00004_lr", name))
        scp = (codes or {}).get(ecg_id, "{'NORM': 100.0, 'SR': 0.0}")
        lines.append(
            f'{ecg_id},{100 + ecg_id}.0,60.0,0,,,,0.0,CS-12,2000-01-01 00:00:00,report,"{scp}",,,,,False,False,True,'
            f",,,,,,{fold},records100/00000/{name},records500/00000/{ecg_id:05d}_hr"
        )
    (root / "ptbxl_database.csv").write_text("\n".join(lines) + "\n")
    return root


def test_synthetic_copy_loads(tmp_path):
    ds = load_ptbxl(make_ptbxl(tmp_path / "ptbxl"), "superdiagnostic", cache_dir=str(tmp_path / "cache"))
    assert {s: ds[s].num_rows for s in ds} == {"train": 2, "validation": 1, "test": 1}
    assert class_names(ds) == ["MI", "NORM"]  # from the statement table, not from the records present


def expect_error(root, tmp_path, match, **kwargs):
    with pytest.raises(ECGDataError, match=match):
        load_ptbxl(root, "superdiagnostic", cache_dir=str(tmp_path / "cache"), **kwargs)


def test_missing_folder(tmp_path):
    expect_error(tmp_path / "nowhere", tmp_path, "PTB-XL folder not found")


def test_csv_row_without_record(tmp_path):
    root = make_ptbxl(tmp_path / "ptbxl")
    (root / "records100/00000/00002_lr.hea").unlink()
    expect_error(root, tmp_path, r"00002_lr\.hea: header file not found")
    make_ptbxl(tmp_path / "ptbxl2")
    (tmp_path / "ptbxl2/records100/00000/00003_lr.dat").unlink()
    expect_error(tmp_path / "ptbxl2", tmp_path, r"00003_lr\.dat: signal file named in 00003_lr\.hea not found")


def test_truncated_dat(tmp_path):
    root = make_ptbxl(tmp_path / "ptbxl")
    dat = root / "records100/00000/00001_lr.dat"
    dat.write_bytes(dat.read_bytes()[:-100])
    expect_error(root, tmp_path, r"00001_lr\.dat: truncated")


def test_header_disagrees_with_data(tmp_path):
    root = make_ptbxl(tmp_path / "ptbxl")
    hea = root / "records100/00000/00002_lr.hea"
    hea.write_text(hea.read_text().replace(" 100 1000", " 100 900", 1))
    expect_error(root, tmp_path, r"00002_lr\.hea: 900 samples at 100 Hz, expected 1000")
    # same size, different samples: the header's checksums catch it
    dat = root / "records100/00000/00003_lr.dat"
    data = bytearray(dat.read_bytes())
    data[0] ^= 1
    dat.write_bytes(bytes(data))
    hea.write_text(hea.read_text().replace(" 100 900", " 100 1000", 1))
    expect_error(root, tmp_path, r"00003_lr\.dat: checksum of lead I")


def test_nan_samples(tmp_path):
    root = make_ptbxl(tmp_path / "ptbxl")
    signal, _ = wfdb.rdsamp(str(root / "records100/00000/00004_lr"))
    signal[10:20, 6] = np.nan
    write_record(root / "records100/00000", "00004_lr", signal)
    expect_error(
        root, tmp_path, r"00004_lr\.hea: 10 missing \(NaN/inf\) samples in lead\(s\) \['V1'\] at 0\.10-0\.20 s"
    )


def test_unknown_scp_code(tmp_path):
    root = make_ptbxl(tmp_path / "ptbxl", codes={3: "{'NORM': 100.0, 'XYZ': 50.0}"})
    expect_error(root, tmp_path, r"ptbxl_database\.csv \(ecg_id 3\): unknown SCP code\(s\) \['XYZ'\]")


def test_empty_split_is_an_error(tmp_path):
    expect_error(make_ptbxl(tmp_path / "ptbxl", folds=(1, 2, 9)), tmp_path, "no usable records for the test split")
    # every test record bad: skipped, but the empty split is still an error and nothing is cached
    root = make_ptbxl(tmp_path / "ptbxl2")
    (root / "records100/00000/00004_lr.dat").write_bytes(b"")
    expect_error(root, tmp_path, "every record of the test split was bad", skip_bad_records=True)
    assert not list((tmp_path / "cache").rglob("*.arrow"))


def test_bad_record_with_two_processes(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "MIN_SHARD_RECORDS", 100)
    root = make_ptbxl(tmp_path / "ptbxl", folds=(1,) * 200 + (2,) * 200 + (9, 10))
    dat = root / "records100/00000/00300_lr.dat"
    dat.write_bytes(dat.read_bytes()[:-24])
    expect_error(root, tmp_path, r"00300_lr\.dat: truncated: .* \(ecg_id 300\)", num_proc=2)


def test_skip_bad_records_counts_and_names_them(tmp_path, caplog):
    root = make_ptbxl(tmp_path / "ptbxl", folds=(1, 2, 3, 9, 10), codes={2: "{'FOO': 100.0}"})
    dat = root / "records100/00000/00003_lr.dat"
    dat.write_bytes(dat.read_bytes()[:-2])
    with caplog.at_level(logging.WARNING, logger="dataset_scripts"):
        ds = load_ptbxl(root, cache_dir=str(tmp_path / "cache"), skip_bad_records=True)
    assert ds["train"]["ecg_id"] == [1]
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 1 and "skipped 2 bad record(s)" in warnings[0]
    assert "'FOO'" in warnings[0] and "00003_lr.dat: truncated" in warnings[0]


def test_bad_config():
    with pytest.raises(ValueError, match="sampling_rate"):
        load_ptbxl("/nonexistent", sampling_rate=250)
    with pytest.raises(ValueError, match="Unknown PTB-XL task"):
        PTBXL.class_names("everything", "/nonexistent")


def test_duplicate_ecg_id_and_bad_scp_codes(tmp_path):
    root = make_ptbxl(tmp_path / "ptbxl", codes={2: "NORM"})
    expect_error(root, tmp_path, r"ecg_id 2\): scp_codes 'NORM' is not a dict literal")
    csv_path = root / "ptbxl_database.csv"
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join([*lines, lines[1]]) + "\n")
    expect_error(root, tmp_path, r"ptbxl_database\.csv: duplicate ecg_id \[1\]")


def test_cache_is_keyed_on_version_rate_and_folder(ptbxl_dir, tmp_path):
    lo = PTBXL(config_name="rhythm", data_dir=str(ptbxl_dir), cache_dir=str(tmp_path))
    hi = PTBXL(config_name="rhythm", data_dir=str(ptbxl_dir), cache_dir=str(tmp_path), sampling_rate=500)
    other = PTBXL(config_name="rhythm", data_dir=str(make_ptbxl(tmp_path / "copy")), cache_dir=str(tmp_path))
    assert lo.config.version == PTBXL.VERSION and lo.cache_dir.endswith(f"/{PTBXL.VERSION}/{lo.hash}")
    assert len({lo.cache_dir, hi.cache_dir, other.cache_dir}) == 3


def test_shards_keep_order_and_share_evenly():
    items = list(range(2750))
    chunks = common.shards(items)
    assert [i for chunk in chunks for i in chunk] == items  # contiguous: the split keeps the table's order
    assert len(chunks) == 4 and max(map(len, chunks)) - min(map(len, chunks)) <= 1
    assert len(common.shards(items[:400])) == 1  # too few records to pay for a process pool


@pytest.mark.parametrize(
    "old, new, match",
    [
        (" 1000.0(0)/mV 16 0", " gain?/mV 16 0", "cannot parse the signal line"),
        (" 0 V6", " 0 X6", r"missing lead\(s\) \['V6'\].*\(channels that are no ECG lead: \['X6'\]\)"),
        ("1000.0(0)/mV", "0(0)/mV", "lead I: cannot calibrate gain 0.0"),
        ("00002_lr 12 100 1000", "00002_lr 12 250 1000", "1000 samples at 250 Hz, expected 1000 at 100 Hz"),
    ],
)
def test_malformed_headers(tmp_path, old, new, match):
    root = make_ptbxl(tmp_path / "ptbxl")
    hea = root / "records100/00000/00002_lr.hea"
    hea.write_text(hea.read_text().replace(old, new, 1))
    expect_error(root, tmp_path, r"00002_lr\.(hea|dat): " + match)


def test_streaming_reads_the_same_records(ptbxl, ptbxl_dir, tmp_path):
    streamed = PTBXL(config_name="superdiagnostic", data_dir=str(ptbxl_dir), cache_dir=str(tmp_path))
    first = next(iter(streamed.as_streaming_dataset()["test"]))
    prepared = ptbxl("superdiagnostic")["test"].with_format("numpy")[0]
    assert first["ecg_id"] == prepared["ecg_id"] and list(first["labels"]) == list(prepared["labels"])
    np.testing.assert_array_equal(np.asarray(first["input_values"]), prepared["input_values"])
