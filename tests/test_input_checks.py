"""Inputs a clinician can trust: implausible units, gains and rates are refused everywhere with the file and the
problem (the extractor, the reader, the builders, the predictor and the CLI), and one bad input never loses the other
results of a batch."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from test_dataset_ptbxl import make_ptbxl
from test_predict import make_checkpoint, write_record

from dataset_scripts import load_ptbxl
from ecgmamba_apps.predict import main
from modeling_ecgmamba import ECGDataError, ECGMambaFeatureExtractor, ECGPredictor, ECGRecord, read_record
from modeling_ecgmamba import inference_ecgmamba as inference
from modeling_ecgmamba.ecg_records import (
    AMPLITUDE_RANGE_MV,
    check_ecg_amplitude,
    check_sampling_rate,
    peak_to_peak_mv,
    standard_leads_mv,
)

MI_RECORD = "00008"  # PTB-XL: inferior MI (the example of --units uV turning it into NORM)
BAD_RATES = [0, -500, math.nan, True, 1e-6, math.inf, "500"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, ptbxl_dir) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("checkpoint"), ptbxl_dir)


@pytest.fixture(scope="module")
def source(ptbxl_dir) -> ECGRecord:
    return read_record(ptbxl_dir / "records500" / "00000" / f"{MI_RECORD}_hr.hea")


def write_csv(path, signal, names, fs=500, time_unit="s", time_name="time"):
    """A CSV with a time column (seconds, or milliseconds when `time_unit="ms"`) and one column per lead."""
    time = np.arange(len(signal)) / fs * (1000.0 if time_unit == "ms" else 1.0)
    rows = [",".join([time_name, *names])]
    rows += [",".join(f"{v:.6f}" for v in (t, *row)) for t, row in zip(time, signal)]
    Path(path).write_text("\n".join(rows) + "\n")
    return Path(path)


def edit_header(path, old, new):
    """Replace `old` by `new` in every signal line of a WFDB header (the record line is left alone)."""
    lines = Path(path).read_text().splitlines()
    lines[1:] = [line.replace(old, new) for line in lines[1:]]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def run(argv, capsys) -> tuple[int, str, str]:
    status = main([*argv, "--no-progress", "--device", "cpu"])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def by_name(document) -> dict:
    return {Path(r["record"]).name: r for r in document["records"]}


# ---------------------------------------------------------------------------------------------------------- amplitude


def test_the_real_records_pass_and_the_bounds_have_margins(data_dir):
    low, high = AMPLITUDE_RANGE_MV
    values = []
    for path in [
        *sorted((data_dir / "cinc2020").glob("*.hea")),
        *sorted((data_dir / "cpsc2018" / "WFDB").glob("*.hea")),
    ]:
        record = read_record(path)
        values.append(peak_to_peak_mv(standard_leads_mv(record), record.sampling_rate))  # runs the check too
    # Georgia's low-amplitude records and HR00599 (gain 200) are the extremes measured (benchmarks/amplitudes.py).
    assert low * 5 < min(values) < 0.2 and 4 < max(values) < high / 1.5


@pytest.mark.parametrize(
    "factor, units, message",
    [
        (1000.0, "mV", r"looks like uV or ADC counts, not mV: pass units='uV'"),
        (10.0, "mV", r"about \d+x the median record .* check the gain in the header"),
        (1.0, "uV", r"\(read as uV\).*smaller than the median record"),
        (0.001, "mV", r"smaller than the median record .* samples in V need units='V'"),
    ],
    ids=["x1000", "x10", "uV-on-mV", "V-as-mV"],
)
def test_the_extractor_refuses_implausible_amplitudes(source, factor, units, message):
    extractor = ECGMambaFeatureExtractor()
    signal = source.signal * factor
    with pytest.raises(ECGDataError, match=rf"^patient\.csv: implausible amplitude for an ECG in mV.*{message}"):
        extractor(signal, sampling_rate=500, lead_names=source.lead_names, units=units, record_names=["patient.csv"])
    # The explicit override: the user says the amplitude is real.
    assert extractor(signal, 500, source.lead_names, units=units, check_amplitude=False)["input_values"].shape == (
        1,
        1000,
        12,
    )
    saved_off = ECGMambaFeatureExtractor(check_amplitude=False)
    assert saved_off(signal, 500, source.lead_names, units=units)["input_values"].shape == (1, 1000, 12)


def test_the_amplitude_check_ignores_constant_leads_and_says_what_it_saw(source):
    signal = standard_leads_mv(source)
    signal[:, :5] = 0.0  # five disconnected leads: the median of the others decides, the flat-lead check names them
    check_ecg_amplitude(signal, 500, "x")
    with pytest.raises(ECGDataError, match=r"flat"):
        ECGMambaFeatureExtractor()(signal, sampling_rate=500)
    value = peak_to_peak_mv(standard_leads_mv(source) * 1000, 500)
    with pytest.raises(ECGDataError, match=rf"median peak-to-peak of the leads is {value:.0f} mV"):
        check_ecg_amplitude(standard_leads_mv(source) * 1000, 500, "x")


def test_a_header_gain_off_by_10_is_refused_by_the_reader_and_the_builder(source, tmp_path):
    header = write_record(tmp_path, "gain", source.signal, source.lead_names)
    edit_header(header, "1000.0(", "100.0(")  # samples read 10x too large, as in the cached record
    with pytest.raises(ECGDataError, match=r"gain\.hea: implausible amplitude .* check the gain in the header"):
        standard_leads_mv(read_record(header))
    # A builder (PTB-XL here) reads every record with standard_leads_mv: the same error, naming the record.
    root = make_ptbxl(tmp_path / "ptbxl")
    edit_header(root / "records100/00000/00002_lr.hea", "1000.0(", "100.0(")
    with pytest.raises(ECGDataError, match=r"00002_lr\.hea: implausible amplitude .*gain.*\(ecg_id 2\)"):
        load_ptbxl(root, "superdiagnostic", cache_dir=str(tmp_path / "cache"))


def test_the_cli_refuses_wrong_units_and_gains_and_writes_the_good_records(checkpoint, source, tmp_path, capsys):
    names = source.lead_names
    files = {
        "mv": write_csv(tmp_path / "mv.csv", source.signal, names),
        "x1000": write_csv(tmp_path / "x1000.csv", source.signal * 1000, names),
        "x10": write_csv(tmp_path / "x10.csv", source.signal * 10, names),
        "gain_x10": edit_header(write_record(tmp_path, "gain_x10", source.signal, names), "1000.0(", "100.0("),
        "header_uv": edit_header(write_record(tmp_path, "header_uv", source.signal, names), "/mV", "/uV"),
        "good": Path(source.name),
    }
    out = tmp_path / "units.json"
    status, text, err = run(["--model", str(checkpoint), *map(str, files.values()), "--json", str(out)], capsys)
    assert status == 1
    results = by_name(json.loads(out.read_text()))
    expected = {
        "x1000.csv": r"looks like uV or ADC counts",
        "x10.csv": r"x the median record .* check the gain in the header",
        "gain_x10.hea": r"x the median record .* check the gain in the header",
        "header_uv.hea": r"\(read as uV\).* smaller than the median record",
    }
    for name, pattern in expected.items():
        assert not results[name]["ok"] and re.search(pattern, results[name]["error"]), results[name]["error"]
        assert re.search(rf"failed: \S*{re.escape(name)}: implausible amplitude", err)
    assert results["mv.csv"]["ok"] and results[Path(source.name).name]["ok"]
    np.testing.assert_allclose(
        list(results["mv.csv"]["probabilities"].values()),
        list(results[Path(source.name).name]["probabilities"].values()),
        atol=1e-4,
    )
    # --units uV on the record in mV: refused (it was diagnosed NORM 0.88); on the record in uV: the mV answer.
    status, _, _ = run(["--model", str(checkpoint), str(files["mv"]), "--units", "uV", "--json", str(out)], capsys)
    assert status == 1 and "(read as uV)" in json.loads(out.read_text())["records"][0]["error"]
    status, _, _ = run(["--model", str(checkpoint), str(files["x1000"]), "--units", "uV", "--json", str(out)], capsys)
    in_uv = json.loads(out.read_text())["records"][0]
    assert status == 0
    np.testing.assert_allclose(
        list(in_uv["probabilities"].values()), list(results["mv.csv"]["probabilities"].values()), atol=1e-5
    )
    # The override, for an amplitude that is real.
    status, _, _ = run(["--model", str(checkpoint), str(files["x10"]), "--no-amplitude-check"], capsys)
    assert status == 0


def test_the_pipeline_checks_amplitude_unless_told_not_to(checkpoint, source):
    from modeling_ecgmamba import ECGClassificationPipeline

    predictor = ECGPredictor.from_pretrained(checkpoint, device="cpu", trust_remote_code=False)
    classifier = ECGClassificationPipeline(model=predictor.model, feature_extractor=predictor.feature_extractor)
    with pytest.raises(ECGDataError, match="implausible amplitude"):
        classifier(source.signal * 1000, sampling_rate=500, lead_names=source.lead_names)
    scores = classifier(source.signal * 1000, sampling_rate=500, lead_names=source.lead_names, check_amplitude=False)
    assert len(scores) == len(predictor.labels)


# ---------------------------------------------------------------------------------------------------------- rates


@pytest.mark.parametrize("rate", BAD_RATES, ids=[repr(r) for r in BAD_RATES])
def test_each_bad_rate_is_a_clear_error_before_any_work(rate, source, checkpoint):
    extractor = ECGMambaFeatureExtractor()
    with pytest.raises(ValueError, match=r"^patient-3\.hea: .*(sampling rate|Hz)"):
        extractor(source.signal, sampling_rate=rate, lead_names=source.lead_names, record_names=["patient-3.hea"])
    with pytest.raises(ValueError, match=r"^patient-3\.hea: "):
        ECGRecord.from_array(source.signal, rate, source.lead_names, name="patient-3.hea")
    with pytest.raises(ValueError, match=r"^patient-3\.hea: "):
        read_record(Path("patient-3.hea"), sampling_rate=rate)  # checked before the file is even looked for
    with pytest.raises(ValueError, match=r"^sampling_rate: "):
        next(ECGPredictor.from_pretrained(checkpoint, device="cpu").iter_predict([source.name], sampling_rate=rate))


def test_the_rate_bounds():
    assert check_sampling_rate(50, "x") == 50.0 and check_sampling_rate(np.float32(257), "x") == 257.0
    assert check_sampling_rate(20000, "x") == 20000.0
    for rate in (49.9, 20001):
        with pytest.raises(ECGDataError, match="not plausible for an ECG"):
            check_sampling_rate(rate, "x")


@pytest.mark.parametrize("value", ["0", "-500", "nan", "inf", "1e-6", "fast"])
def test_the_cli_refuses_a_bad_fs_as_a_usage_error(value, checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(checkpoint), "x.csv", f"--fs={value}"])
    assert exit_info.value.code == 2 and "--fs" in capsys.readouterr().err


def test_a_time_column_in_milliseconds_is_refused_naming_the_file(source, tmp_path, checkpoint, capsys):
    ms = write_csv(tmp_path / "ms.csv", source.signal, source.lead_names, time_unit="ms")  # column named "time"
    with pytest.raises(ECGDataError, match=r"ms\.csv: the time column 'time' steps by 2 s, 0\.5 Hz: .*milliseconds"):
        read_record(ms)
    named = write_csv(tmp_path / "named.csv", source.signal, source.lead_names, time_unit="ms", time_name="time_ms")
    assert read_record(named).sampling_rate == 500.0  # named as milliseconds: read as such
    out = tmp_path / "ms.json"
    status, _, err = run(["--model", str(checkpoint), str(ms), str(named), "--json", str(out)], capsys)
    results = by_name(json.loads(out.read_text()))
    assert status == 1 and "0.5 Hz" in results["ms.csv"]["error"] and results["named.csv"]["ok"]
    assert "failed: " in err and "ms.csv" in err


def test_a_wfdb_header_rate_of_zero_is_refused(source, tmp_path):
    header = write_record(tmp_path, "zero", source.signal, source.lead_names)
    lines = header.read_text().splitlines()
    lines[0] = lines[0].replace(" 500 ", " 0 ")
    header.write_text("\n".join(lines) + "\n")
    with pytest.raises(ECGDataError, match=r"zero\.hea: the header's sampling rate must be a positive"):
        read_record(header)


def test_a_list_of_records_with_a_list_of_rates(ptbxl_dir):
    low = read_record(ptbxl_dir / "records100" / "00000" / "00001_lr.hea")
    high = read_record(ptbxl_dir / "records500" / "00000" / "00001_hr.hea")
    extractor = ECGMambaFeatureExtractor()
    both = extractor([low.signal, high.signal], sampling_rate=[100, 500], lead_names=low.lead_names)["input_values"]
    np.testing.assert_array_equal(both[0], extractor(low.signal, 100, low.lead_names)["input_values"][0])
    np.testing.assert_array_equal(both[1], extractor(high.signal, 500, high.lead_names)["input_values"][0])
    with pytest.raises(ValueError, match="3 sampling rates for 2 records"):
        extractor([low.signal, high.signal], sampling_rate=[100, 500, 500], lead_names=low.lead_names)
    with pytest.raises(ValueError, match=r"record 1: .*0 Hz|record 1: the sampling rate must be a positive"):
        extractor([low.signal, high.signal], sampling_rate=[100, 0], lead_names=low.lead_names)


# ---------------------------------------------------------------------------------------------------------- batches


def test_a_batch_never_loses_work(checkpoint, source, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "records"
    folder.mkdir()
    first = write_record(folder, "first", source.signal, source.lead_names)
    (folder / "sub").mkdir()
    second = write_record(folder / "sub", "second", source.signal[:3000], source.lead_names)
    (tmp_path / "x.csv").mkdir()  # a folder with a record's name and nothing inside
    broken = write_csv(tmp_path / "broken.csv", source.signal, source.lead_names)

    # An unexpected exception (not an ECGDataError) in one record: reported, the others go on.
    original = inference.read_record

    def flaky(path, *args, **kwargs):
        if Path(path).name == "broken.csv":
            raise RuntimeError("disk on fire")
        return original(path, *args, **kwargs)

    monkeypatch.setattr(inference, "read_record", flaky)
    out = tmp_path / "batch.json"
    records = [str(folder), str(tmp_path / "x.csv"), str(broken), str(first.with_suffix(".dat")), str(first)]
    status, text, err = run(["--model", str(checkpoint), *records, "--json", str(out)], capsys)
    document = json.loads(out.read_text())
    names = [r["record"] for r in document["records"]]
    # The folder expands to its two records (subfolders too), each WFDB record once (not again via .dat or .hea).
    assert names == [str(first), str(second), str(tmp_path / "x.csv"), str(broken)]
    assert err.count("is a record already listed: predicted once") == 2
    results = by_name(document)
    assert results["first.hea"]["ok"] and results["second.hea"]["ok"]
    assert results["x.csv"]["error"].startswith("a folder with no ECG record in it")
    assert results["broken.csv"]["error"] == "RuntimeError: disk on fire"
    assert f"failed: {broken}: RuntimeError: disk on fire" in err
    assert document["summary"] == {
        "records": 4,
        "predicted": 2,
        "failed": 2,
        "failed_records": [str(tmp_path / "x.csv"), str(broken)],
    }
    assert status == 1 and "4 record(s): 2 predicted, 2 failed" in err


def test_results_are_written_as_they_complete(checkpoint, source, tmp_path, capsys, monkeypatch):
    paths = [write_record(tmp_path, f"r{i}", source.signal, source.lead_names) for i in range(3)]
    original = inference.read_record

    def interrupted(path, *args, **kwargs):
        if Path(path).name == "r2.hea":
            raise KeyboardInterrupt  # the user stops the run during the third record
        return original(path, *args, **kwargs)

    monkeypatch.setattr(inference, "read_record", interrupted)
    out = tmp_path / "partial.json"
    with pytest.raises(KeyboardInterrupt):
        main(["--model", str(checkpoint), *map(str, paths), "--json", str(out), "--batch-size", "1"])
    document = json.loads(out.read_text())  # valid JSON, with the records done before the interruption
    assert [Path(r["record"]).name for r in document["records"]] == ["r0.hea", "r1.hea"]
    assert all(r["ok"] for r in document["records"]) and "summary" not in document
    assert capsys.readouterr().out.count("diagnoses:") == 2


def test_outputs_and_classes_are_checked_before_any_work(checkpoint, source, tmp_path, capsys):
    record = str(source.name)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    for argv, message in [
        (["--json", str(blocker / "out.json")], r"--json .*blocker/out\.json: cannot create its folder"),
        (["--json", str(tmp_path)], r"--json .*: is a folder"),
        (["--timeline", str(blocker / "t.csv")], r"--timeline .*: cannot create its folder"),
        (["--explain", str(blocker / "e.png")], r"--explain .*: cannot create its folder"),
        (["--explain", str(tmp_path / "e.png"), "--explain-class", "AFIB"], r"'AFIB' is not a class of this model"),
        (["--explain-class", "MI"], r"--explain-class needs --explain"),
    ]:
        status, text, err = run(["--model", str(checkpoint), record, *argv], capsys)
        assert status == 2 and re.search(message, err), (argv, err)
        assert "diagnoses" not in text  # nothing was predicted
    assert "Exit status: 0 when every record was predicted; 1 when any record failed" in " ".join(
        __import__("ecgmamba_apps.predict", fromlist=["x"]).build_parser().format_help().split()
    )


def test_a_checkpoint_without_tuned_thresholds_says_so(tmp_path, ptbxl_dir, source, capsys):
    untuned = make_checkpoint(tmp_path / "untuned", ptbxl_dir, thresholds=None)
    out = tmp_path / "untuned.json"
    status, text, _ = run(["--model", str(untuned), str(source.name), "--json", str(out)], capsys)
    assert status == 0 and text.startswith(
        "note: no tuned thresholds, using 0.5 for every class (the checkpoint has none)"
    )
    document = json.loads(out.read_text())
    assert document["threshold_note"].startswith("no tuned thresholds") and document["thresholds"] == [0.5] * 5
