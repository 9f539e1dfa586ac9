"""PhysioNet/CinC 2021 builder: the code mapping against the scoring table files themselves, the real sample records
(CPSC2018-Extra, Georgia with its header quirk, PTB-XL), synthetic records of the absent sources (INCART 257 Hz
30 min, PTB 1000 Hz, Chapman/Ningbo), several folders, options and bad input."""

import csv
import hashlib
import logging
import os
import shutil

import numpy as np
import pytest
import scipy.io
import wfdb
from conftest import require_data

from dataset_scripts import CinC2021, ECGDataError, class_names, load_cinc2021, signal_metadata
from dataset_scripts.cinc2021 import (
    CLASSES,
    SCORING_DIR,
    SOURCE_NAMES,
    challenge_weights,
    main,
    scoring_table,
)
from dataset_scripts.common import assign_split
from modeling_ecgmamba.feature_extraction_ecgmamba import resample_signal

LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
REAL = ["E00009", "E00015", "HR00599", "Q0001", "Q0010", "Q0012", "Q0017", "Q0022", "Q0026", "Q0027", "Q0033"]
REAL += ["Q0048", "Q0050"]


@pytest.fixture(scope="session")
def cinc_dir(data_dir):
    return require_data(data_dir / "cinc2020", f"PhysioNet/CinC sample not found at {data_dir / 'cinc2020'}")


def table_rows(name):
    with open(SCORING_DIR / name, newline="") as f:
        return list(csv.DictReader(f))


def expected_classes(codes) -> set[str]:
    """Class names for SNOMED codes, straight from dx_mapping_scored.csv: a class is the abbreviations of codes its
    `Notes` score as the same diagnosis, joined by '|' in the table's order."""
    rows = table_rows("dx_mapping_scored.csv")
    order = [row["SNOMEDCTCode"] for row in rows]
    abbreviation = {row["SNOMEDCTCode"]: row["Abbreviation"] for row in rows}
    same = {code: {code} for code in order}
    for row in rows:
        words = row["Notes"].split()
        if words[:2] == ["We", "score"]:
            group = same[words[2]] | same[words[4]]
            for code in group:
                same[code] = group
    return {"|".join(abbreviation[c] for c in sorted(same[code], key=order.index)) for code in codes if code in same}


# ------------------------------------------------------------------------------------------------ the scoring table


def test_scoring_files_are_the_published_ones():
    sums = {
        "dx_mapping_scored.csv": "f334ecc903136febd74dcd75267c8d606692941169fa32a73e5c5edcf93c6039",
        "dx_mapping_unscored.csv": "d087de6c2113ca96e5926ae8bbbcfc185ed2e410a913ec96b49ed3dc58f4197b",
        "weights.csv": "70ab2f76dd793e567ab99267754f36568af509a523144458f63881e70429e70a",
        "LICENSE": "0138baed895501492abbab782fe19ad64e47de74fb84a0ddff0362406a4cd174",
    }
    readme = (SCORING_DIR / "README.md").read_text()
    for name, digest in sums.items():
        assert hashlib.sha256((SCORING_DIR / name).read_bytes()).hexdigest() == digest
        assert digest in readme


def test_every_scored_code_maps_to_its_class_as_the_table_says():
    rows = table_rows("dx_mapping_scored.csv")
    assert len(rows) == 30 and len(CLASSES) == 26 and len(set(CLASSES)) == 26
    table = scoring_table()
    for row in rows:
        classes, unscored = table.classify([row["SNOMEDCTCode"]])
        assert [CLASSES[c] for c in classes] == sorted(expected_classes([row["SNOMEDCTCode"]])), row
        assert row["Abbreviation"] in CLASSES[classes[0]].split("|") and unscored == []
    # The four equivalences of the Notes column, each pair one class.
    for first, second in [("733534002", "164909002"), ("713427006", "59118001"), ("284470004", "63593006")] + [
        ("427172004", "17338001")
    ]:
        assert table.classify([first])[0] == table.classify([second])[0] == table.classify([first, second])[0]
    assert table.normal_class == "NSR"


def test_every_unscored_code_goes_to_the_unscored_column():
    rows = table_rows("dx_mapping_unscored.csv")
    assert len(rows) == 103
    codes = [row["SNOMEDCTCode"] for row in rows]
    assert scoring_table().classify(codes) == ([], codes)
    assert scoring_table().classify(["164884008", "426783006", "999"]) == (
        [CLASSES.index("NSR")],
        ["164884008", "999"],
    )


def test_weights_match_the_file_cell_by_cell():
    with open(SCORING_DIR / "weights.csv", newline="") as f:
        table = list(csv.reader(f))
    header = [set(name.split("|")) for name in table[0][1:]]
    table_codes = scoring_table().codes
    weights = np.asarray(challenge_weights())
    assert weights.shape == (26, 26) and np.allclose(weights, weights.T) and (np.diag(weights) == 1).all()
    for i, codes_i in enumerate(header):
        for j, codes_j in enumerate(header):
            row = next(k for k, codes in enumerate(table_codes) if codes_i <= codes)
            col = next(k for k, codes in enumerate(table_codes) if codes_j <= codes)
            assert weights[row, col] == float(table[i + 1][j + 1])
    assert weights[CLASSES.index("AF"), CLASSES.index("AFL")] == 0.5
    sub = challenge_weights(["NSR", "AF"])
    assert sub == [[1.0, 0.25], [0.25, 1.0]]


# ------------------------------------------------------------------------------------------------ the real sample


@pytest.fixture(scope="session")
def cinc(cinc_dir, tmp_path_factory):
    return load_cinc2021(cinc_dir, sampling_rate=500, cache_dir=str(tmp_path_factory.mktemp("cinc_cache")))


def dx_of(path):
    for line in path.read_text().splitlines():
        key, _, value = line.lstrip("#").partition(":")
        if line.startswith("#") and key.strip() == "Dx":  # "#Dx: ..." (the Challenge), "# Dx: ..." (wfdb.wrsamp)
            return [code.strip() for code in value.split(",")]
    raise AssertionError(path)


def reference_signal(record):
    """The record in mV read independently: MATLAB `val` over the header's gains (wfdb.rdsamp refuses the Georgia
    headers, whose first line starts with `E00009.mat`)."""
    lines = [line.split() for line in record.with_suffix(".hea").read_text().splitlines()[1:13]]
    assert [line[-1] for line in lines] == LEADS and all(line[4] == "0" for line in lines)  # order; baseline 0
    gains = np.array([float(line[2].split("/")[0]) for line in lines])
    return scipy.io.loadmat(record.with_suffix(".mat"))["val"].T / gains


def rows_by_record(ds):
    return {row["record"]: (split, row) for split in ds for row in ds[split].with_format("numpy")}


def test_real_records_labels_sources_and_signals(cinc, cinc_dir):
    rows = rows_by_record(cinc)
    assert sorted(rows) == REAL and class_names(cinc) == list(CLASSES) == CinC2021.class_names()
    assert signal_metadata(cinc) == {"sampling_rate": 500, "units": "mV", "leads": LEADS, "layout": "(time, lead)"}
    for name, (split, row) in rows.items():
        codes = dx_of(cinc_dir / f"{name}.hea")
        assert {CLASSES[i] for i in row["diagnoses"]} == expected_classes(codes), name
        assert row["labels"].tolist() == [float(i in row["diagnoses"]) for i in range(26)]
        assert list(row["dx"]) == list(dict.fromkeys(codes))
        assert set(row["unscored"]) == set(codes) - {r["SNOMEDCTCode"] for r in table_rows("dx_mapping_scored.csv")}
        source = {"Q": "CPSC2018-Extra", "E": "Georgia", "H": "PTB-XL"}[name[0]]
        assert SOURCE_NAMES[row["source"]] == source and split == assign_split(name)
        assert row["source_sampling_rate"] == 500
        np.testing.assert_allclose(row["input_values"], reference_signal(cinc_dir / name), atol=1e-6)
    assert {CLASSES[i] for i in rows["Q0027"][1]["diagnoses"]} == {"CRBBB|RBBB"}  # 713427006, complete RBBB
    assert {CLASSES[i] for i in rows["Q0017"][1]["diagnoses"]} == {"PAC|SVPB"}  # 63593006, SVPB
    assert list(rows["E00015"][1]["dx"]) == ["251146004", "284470004"]  # listed twice in the header
    q = rows["Q0001"][1]
    assert (q["age"], q["sex"], list(q["unscored"])) == (53, 0, ["164867002"])
    assert rows["HR00599"][1]["sex"] == 1


def test_rates_resampled_and_options(cinc, cinc_dir, tmp_path):
    low = load_cinc2021(cinc_dir, sampling_rate=100, cache_dir=str(tmp_path / "c"), drop_unscored=True)
    rows, full = rows_by_record(low), rows_by_record(cinc)
    assert sorted(rows) == REAL  # every sample record carries a scored class
    for name, (_, row) in rows.items():
        np.testing.assert_allclose(row["input_values"], resample_signal(full[name][1]["input_values"], 500, 100))
    held = load_cinc2021(cinc_dir, cache_dir=str(tmp_path / "c"), leave_out_source="Georgia")
    assert sorted(held["test"]["record"]) == ["E00009", "E00015"]
    assert held["validation"]["record"] == [r for r in cinc["validation"]["record"] if not r.startswith("E")]
    with pytest.raises(ValueError, match="leave_out_source must be one of"):
        load_cinc2021(cinc_dir, leave_out_source="Mars")
    with pytest.raises(ValueError, match="sampling_rate must be an int"):
        load_cinc2021(cinc_dir, sampling_rate=2000)


def test_cpsc2018_sample_headers_have_an_empty_dx(cinc_dir, data_dir, tmp_path, caplog):
    wfdb_dir = data_dir / "cpsc2018/WFDB"
    with pytest.raises(ECGDataError, match=r"A0001\.hea: #Dx is empty: .* load_cpsc2018"):
        load_cinc2021([cinc_dir, wfdb_dir], cache_dir=str(tmp_path / "c"))
    with caplog.at_level(logging.WARNING, logger="dataset_scripts"):
        ds = load_cinc2021([cinc_dir, wfdb_dir], cache_dir=str(tmp_path / "c"), skip_bad_records=True)
    assert sorted(rows_by_record(ds)) == REAL
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert (
        len(warnings) == 1 and "skipped 10 bad record(s)" in warnings[0] and "A0010.hea: #Dx is empty" in warnings[0]
    )


# ------------------------------------------------------------------------------------------------ synthetic records


def write_record(folder, name, signal, fs=500, dx="426783006", gain=1000, leads=LEADS, age="60", sex="Female"):
    """A record in the Challenge's layout: WFDB header + MATLAB v4 `val` (int16, leads x samples) = format 16+24."""
    folder.mkdir(parents=True, exist_ok=True)
    digital = np.round(np.asarray(signal) * gain).astype(np.int16)
    scipy.io.savemat(folder / f"{name}.mat", {"val": digital.T}, format="4")
    lines = [f"{name} {len(leads)} {fs} {len(digital)} 05-May-2020 14:50:55"]
    for i, lead in enumerate(leads):
        checksum = int(digital[:, i].astype(np.int64).sum()) % 65536
        lines.append(f"{name}.mat 16+24 {gain}/mV 16 0 {digital[0, i]} {checksum} 0 {lead}")
    lines += [f"#Age: {age}", f"#Sex: {sex}", f"#Dx: {dx}", "#Rx: Unknown", "#Hx: Unknown", "#Sx: Unknown"]
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")
    return digital / gain


def ecg(seconds, fs, seed=0, leads=12):
    t = np.arange(int(round(seconds * fs))) / fs
    rng = np.random.default_rng(seed)
    return np.stack([np.sin(2 * np.pi * (1 + k / 7) * t) * 0.8 + rng.normal(0, 0.01, len(t)) for k in range(leads)], 1)


# Records JS00001-JS00024 give every split at least one record (JS00024 is in test, JS00002 in validation); JS00023
# carries an unscored code only.
def make_sources(root):
    """One record of each absent source, plus Chapman/Ningbo records carrying every scored code between them."""
    signals = {
        "I0001": write_record(root / "incart", "I0001", ecg(30 * 60, 257), fs=257, dx="164884008,426783006"),
        "A0001": write_record(root / "cpsc", "A0001", ecg(15, 500, 1), dx="59118001"),
    }
    # PTB: 1000 Hz, 15 channels (the 12 leads and Frank's vx, vy, vz), written by wfdb itself.
    ptb = ecg(32, 1000, 2, leads=15)
    (root / "ptb").mkdir()
    wfdb.wrsamp(
        "S0001",
        fs=1000,
        units=["mV"] * 15,
        sig_name=[*LEADS, "vx", "vy", "vz"],
        p_signal=ptb,
        fmt=["16"] * 15,
        adc_gain=[2000.0] * 15,
        baseline=[0] * 15,
        comments=["Age: 55", "Sex: Male", "Dx: 164865005,426783006"],
        write_dir=str(root / "ptb"),
    )
    signals["S0001"] = np.round(ptb[:, :12] * 2000) / 2000
    codes = [row["SNOMEDCTCode"] for row in table_rows("dx_mapping_scored.csv")]
    for i in range(24):
        dx = ",".join(codes[2 * i : 2 * i + 2]) if i < 15 else "164884008" if i == 22 else codes[i]
        signals[f"JS{i + 1:05d}"] = write_record(root / "ningbo", f"JS{i + 1:05d}", ecg(10, 500, 3 + i), dx=dx)
    return signals


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("cinc_synthetic")
    signals = make_sources(root)
    ds = load_cinc2021(root, sampling_rate=100, cache_dir=str(root / "cache"))
    return root, signals, ds


def test_absent_sources_rates_lengths_and_every_scored_code(synthetic):
    root, signals, ds = synthetic
    rows = rows_by_record(ds)
    assert sorted(rows) == sorted(signals)
    incart, ptb = rows["I0001"][1], rows["S0001"][1]
    assert SOURCE_NAMES[incart["source"]] == "INCART" and incart["source_sampling_rate"] == 257
    assert incart["input_values"].shape == (180_000, 12)  # 30 min stored whole at 100 Hz
    assert SOURCE_NAMES[ptb["source"]] == "PTB" and ptb["source_sampling_rate"] == 1000
    assert ptb["input_values"].shape == (3200, 12) and ptb["age"] == 55 and ptb["sex"] == 0  # vx, vy, vz dropped
    assert SOURCE_NAMES[rows["A0001"][1]["source"]] == "CPSC2018"
    for name, signal in signals.items():
        fs = {"I": 257, "S": 1000}.get(name[0], 500)
        expected = resample_signal(signal.astype(np.float32), fs, 100)
        np.testing.assert_allclose(rows[name][1]["input_values"], expected, atol=1e-5)
    seen = set()
    for name in signals:
        hea = next(root.rglob(f"{name}.hea"))
        codes = dx_of(hea)
        assert {CLASSES[i] for i in rows[name][1]["diagnoses"]} == expected_classes(codes), name
        seen |= expected_classes(codes)
    assert seen == set(CLASSES)  # every class, through every one of the 30 scored codes
    assert list(rows["JS00023"][1]["labels"]) == [0.0] * 26 and list(rows["JS00023"][1]["unscored"]) == ["164884008"]


def test_records_without_a_scored_class_can_be_dropped(synthetic, tmp_path):
    root, signals, _ = synthetic
    ds = load_cinc2021(root, sampling_rate=100, cache_dir=str(tmp_path), drop_unscored=True)
    assert sorted(rows_by_record(ds)) == sorted(set(signals) - {"JS00023"})


def test_removing_a_record_moves_no_other(synthetic, tmp_path):
    root, signals, ds = synthetic
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("cache", "I0001.*"))
    fewer = rows_by_record(load_cinc2021(copy, sampling_rate=100, cache_dir=str(tmp_path / "c")))
    assert {name: split for name, (split, _) in fewer.items()} == {
        name: split for name, (split, _) in rows_by_record(ds).items() if name != "I0001"
    }


def test_several_folders_duplicates_and_an_edited_header(cinc_dir, tmp_path, caplog):
    mine = tmp_path / "mine"
    for i in range(24):
        write_record(mine, f"JS{i + 1:05d}", ecg(10, 500, i), dx="164889003")
    cache = str(tmp_path / "c")
    both = rows_by_record(load_cinc2021([cinc_dir, mine], cache_dir=cache))
    assert sorted(both) == sorted(REAL + [f"JS{i + 1:05d}" for i in range(24)])
    # An edited #Dx in one of the folders: rebuilt, not served from the cache.
    hea = mine / "JS00003.hea"
    hea.write_text(hea.read_text().replace("#Dx: 164889003", "#Dx: 164890007"))
    edited = rows_by_record(load_cinc2021(os.pathsep.join([str(cinc_dir), str(mine)]), cache_dir=cache))
    assert [CLASSES[i] for i in edited["JS00003"][1]["diagnoses"]] == ["AFL"]
    # The same record name in two folders.
    for suffix in ("hea", "mat"):
        shutil.copy(cinc_dir / f"Q0010.{suffix}", mine / f"Q0010.{suffix}")
    with pytest.raises(ECGDataError, match=r"cinc2020/Q0010\.hea: record Q0010 also at .*mine/Q0010\.hea"):
        load_cinc2021([cinc_dir, mine], cache_dir=cache)
    with caplog.at_level(logging.WARNING, logger="dataset_scripts"):
        kept = rows_by_record(load_cinc2021([cinc_dir, mine], cache_dir=cache, skip_bad_records=True))
    assert "Q0010" not in kept and len(kept) == len(both) - 1
    assert "skipped 2 bad record(s)" in caplog.text
    # A folder inside another is one folder: its records are not duplicates of themselves.
    assert len(rows_by_record(load_cinc2021([tmp_path, mine], cache_dir=cache))) == 25


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda d: (d / "JS00005.mat").unlink(), r"JS00005\.mat: signal file named in JS00005\.hea not found"),
        (lambda d: truncate(d / "JS00005.mat", 10), r"JS00005\.mat: truncated"),
        (lambda d: edit(d / "JS00005.hea", " 500 5000 ", " 500 4000 "), r"JS00005\.mat: longer than announced"),
        (lambda d: edit(d / "JS00005.hea", "#Dx: 426783006", "#Dx: "), r"JS00005\.hea: #Dx is empty"),
        (lambda d: edit(d / "JS00005.hea", "#Dx: 426783006", "#Dx: AF, 426783006"), r"JS00005\.hea: malformed #Dx"),
        (lambda d: edit(d / "JS00005.hea", "#Dx: 426783006", "#Dx: 426783006,"), r"JS00005\.hea: malformed #Dx"),
        (lambda d: edit(d / "JS00005.hea", "#Dx: 426783006\n", ""), r"JS00005\.hea: no #Dx line"),
        (lambda d: edit(d / "JS00005.hea", "16+24 1000/mV", "16+24 gain/mV"), r"JS00005\.hea: cannot parse"),
        (lambda d: rename(d, "JS00005", "X00005"), r"X00005\.hea: record name 'X00005' does not start with"),
        (lambda d: (d / "JS00005.hea").unlink(), r"JS00005\.mat: a signal file without its header JS00005\.hea"),
    ],
)
def test_bad_records_name_the_file_or_are_skipped(tmp_path, change, match, caplog):
    folder = tmp_path / "d"
    for i in range(24):
        write_record(folder, f"JS{i + 1:05d}", ecg(10, 500, i))
    change(folder)
    with pytest.raises(ECGDataError, match=match):
        load_cinc2021(folder, cache_dir=str(tmp_path / "c"))
    with caplog.at_level(logging.WARNING, logger="dataset_scripts"):
        ds = load_cinc2021(folder, cache_dir=str(tmp_path / "c"), skip_bad_records=True)
    assert len(rows_by_record(ds)) == 23 and "skipped 1 bad record(s)" in caplog.text


def test_a_code_in_neither_table_is_kept_and_reported(tmp_path, caplog):
    folder = tmp_path / "d"
    for i in range(24):
        write_record(folder, f"JS{i + 1:05d}", ecg(10, 500, i), dx="999999,426783006" if i == 4 else "426783006")
    with caplog.at_level(logging.WARNING, logger="dataset_scripts"):
        rows = rows_by_record(load_cinc2021(folder, cache_dir=str(tmp_path / "c")))
    assert list(rows["JS00005"][1]["unscored"]) == ["999999"] and rows["JS00005"][1]["diagnoses"] == [
        CLASSES.index("NSR")
    ]
    assert (
        "1 SNOMED CT code(s) in neither of the Challenge's tables" in caplog.text
        and "999999 (1 records)" in caplog.text
    )


def truncate(path, size):
    path.write_bytes(path.read_bytes()[:-size])


def edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def rename(folder, old, new):
    for suffix in ("hea", "mat"):
        (folder / f"{old}.{suffix}").rename(folder / f"{new}.{suffix}")
    edit(folder / f"{new}.hea", f"{old}.mat", f"{new}.mat")


def test_missing_folder_and_no_records(tmp_path):
    with pytest.raises(ECGDataError, match="PhysioNet/CinC 2021 folder not found"):
        load_cinc2021(tmp_path / "nowhere", cache_dir=str(tmp_path / "c"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ECGDataError, match=r"no PhysioNet/CinC records \(\.hea headers\) found"):
        load_cinc2021(tmp_path / "empty", cache_dir=str(tmp_path / "c"))


def test_cli_prints_sources_and_classes(synthetic, capsys):
    root, _, _ = synthetic
    main(["--data_dir", str(root / "ningbo"), str(root / "incart"), "--cache_dir", str(root / "cache")])
    out = capsys.readouterr().out
    assert "source INCART" in out and "source Chapman-Ningbo" in out and "CRBBB|RBBB" in out and "100 Hz" in out
