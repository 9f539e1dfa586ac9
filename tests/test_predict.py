"""Tests of the record reader, the predictor and the CLI, and the `ecg-classification` pipeline (CPU, real records)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ecgmamba_apps.predict import main
from modeling_ecgmamba import (
    STANDARD_LEADS,
    ECGDataError,
    ECGMambaConfig,
    ECGMambaFeatureExtractor,
    ECGMambaForSequenceClassification,
    ECGPredictor,
    ECGRecord,
    read_record,
)
from modeling_ecgmamba.pipeline_ecgmamba import TASK, add_pipeline_to_checkpoint

wfdb = pytest.importorskip("wfdb")

REPO_ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = [0.4, 0.5, 0.6, 0.5, 0.3]
# Exactly the .py files an ECGMamba checkpoint ships with its pipeline: the library, no application.
CHECKPOINT_FILES = {
    "configuration_ecgmamba.py",
    "modeling_ecgmamba.py",
    "selective_scan.py",
    "feature_extraction_ecgmamba.py",
    "ecg_records.py",
    "inference_ecgmamba.py",
    "pipeline_ecgmamba.py",
}


def make_checkpoint(folder, ptbxl_dir, thresholds=THRESHOLDS, **overrides) -> Path:
    """A tiny ECGMamba saved like the trainer saves one, whose outputs depend on the input.

    At initialisation BatchNorm's running statistics are those of unit-variance inputs, which makes an untrained
    model's outputs almost identical for every record (a test comparing two records would pass whatever the
    readers did). So the statistics are set from 16 real PTB-XL records, as training would, and the head is
    scaled so that the probabilities spread.
    """
    options = dict(
        hidden_size=32, num_hidden_layers=2, state_size=8, ffn_size=64, hidden_dropout=0.0, head_dropout=0.0
    )
    options.update(overrides)
    torch.manual_seed(0)
    config = ECGMambaConfig(**options)
    model = ECGMambaForSequenceClassification(config)
    extractor = ECGMambaFeatureExtractor.from_model_config(config)
    records, names = [], None
    for ecg_id in range(1, 17):
        signal, fields = wfdb.rdsamp(str(ptbxl_dir / "records100" / "00000" / f"{ecg_id:05d}_lr"))
        records.append(signal)
        names = fields["sig_name"]
    features = extractor(records, sampling_rate=100, lead_names=names, return_tensors="pt")
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the batch
    model.train()
    with torch.no_grad():
        model(**features)
        model.classifier.weight.normal_(0.0, 0.5)
    model.eval()
    if thresholds is not None:
        model.config.thresholds = list(thresholds)
    folder = Path(folder)
    model.save_pretrained(folder)
    extractor.save_pretrained(folder)
    add_pipeline_to_checkpoint(folder)
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, ptbxl_dir) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("checkpoint"), ptbxl_dir)


@pytest.fixture(scope="module")
def predictor(checkpoint) -> ECGPredictor:
    # The installed package's code: the checkpoint's copy (its own numba cache) is tested through the CLI and pipeline.
    return ECGPredictor.from_pretrained(checkpoint, device="cpu", batch_size=4, trust_remote_code=False)


@pytest.fixture(scope="module")
def records(data_dir) -> dict:
    return {
        "wfdb100": data_dir / "ptb-xl" / "records100" / "00000" / "00001_lr.hea",
        "wfdb500": data_dir / "ptb-xl" / "records500" / "00000" / "00001_hr.hea",
        "cpsc_mat": data_dir / "cpsc2018" / "TrainingSet1" / "A1980.mat",
        "cinc": data_dir / "cpsc2018" / "WFDB" / "A0001.hea",
    }


def run_process(command, cwd, env) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def probabilities(result) -> np.ndarray:
    assert result.ok, result.error
    return np.array([result.probabilities[label] for label in result.labels])


# ---------------------------------------------------------------------------------------------------------- readers


def test_readers_on_real_records(records):
    low = read_record(records["wfdb100"])
    assert (low.sampling_rate, low.signal.shape, low.lead_names[3]) == (100.0, (1000, 12), "AVR")
    high = read_record(records["wfdb500"].with_suffix(""))  # the record name without extension works too
    assert (high.sampling_rate, high.signal.shape) == (500.0, (5000, 12))
    mat = read_record(records["cpsc_mat"])
    assert (mat.sampling_rate, mat.signal.shape, mat.lead_names) == (500.0, (5000, 12), list(STANDARD_LEADS))
    assert abs(mat.signal[:3, 0] - [0.2019, 0.3008, 0.3344]).max() < 1e-3  # ECG.data is 12 x N in mV
    cinc = read_record(records["cinc"])  # CinC 2020: WFDB header + MATLAB-wrapped samples
    assert (cinc.sampling_rate, cinc.signal.shape, cinc.units[0]) == (500.0, (7500, 12), "mV")


def test_every_format_gives_the_same_probabilities_for_the_same_signal(predictor, records, tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    source = read_record(records["cinc"])  # 15 s at 500 Hz: two windows
    signal, fs, names = source.signal, source.sampling_rate, source.lead_names
    time = np.arange(len(signal)) / fs

    with_time = tmp_path / "with_time.csv"
    rows = [",".join(["time", *names])] + [",".join(f"{v:.6f}" for v in (t, *row)) for t, row in zip(time, signal)]
    with_time.write_text("\n".join(rows) + "\n")
    lead_order = [names[j] for j in (6, 0, 11, 3, 1, 2, 9, 4, 5, 8, 10, 7)]  # any column order
    shuffled = tmp_path / "shuffled_uv.csv"
    uv = signal[:, [names.index(name) for name in lead_order]] * 1000.0
    shuffled.write_text("\n".join([",".join(lead_order)] + [",".join(f"{v:.3f}" for v in row) for row in uv]) + "\n")
    array = tmp_path / "transposed.npy"
    np.save(array, signal.T.astype(np.float32))
    mat = tmp_path / "cpsc_style.mat"
    scipy_io.savemat(mat, {"ECG": {"sex": "Male", "age": 74, "data": signal.T}})

    reference = probabilities(predictor.predict([records["cinc"]])[0])
    results = predictor.predict([with_time, mat])
    results += predictor.predict([shuffled], sampling_rate=500, units="uV")
    results += predictor.predict([array], sampling_rate=500, lead_names=",".join(names))
    for result in results:
        np.testing.assert_allclose(probabilities(result), reference, atol=2e-6, err_msg=result.name)
        assert result.num_windows == 2 and result.sampling_rate == 500.0
    assert any("transposed" in note for note in results[-1].notes)
    # The signal matters: another record gives other probabilities.
    other = probabilities(predictor.predict([records["cpsc_mat"]])[0])
    assert np.abs(other - reference).max() > 1e-3


def test_100_and_500_hz_versions_of_a_record(predictor, records):
    low, high = predictor.predict([records["wfdb100"], records["wfdb500"]])
    assert low.sampling_rate == 100.0 and high.sampling_rate == 500.0
    assert low.num_windows == high.num_windows == 1
    # Same recording, resampled by different filters: close, not identical.
    assert np.abs(probabilities(low) - probabilities(high)).max() < 0.05


def test_windows_aggregation_and_thresholds(predictor, records):
    mean = ECGPredictor(predictor.model, predictor.feature_extractor, device="cpu")
    result = mean.predict([records["cinc"]])[0]
    windows = np.array(result.window_probabilities)
    assert windows.shape == (2, 5)
    np.testing.assert_allclose(probabilities(result), windows.mean(0), atol=1e-6)
    # Thresholds come from config.thresholds; diagnoses are the classes at or above them, most probable first.
    assert [result.thresholds[label] for label in result.labels] == THRESHOLDS
    expected = [label for label, t in zip(result.labels, THRESHOLDS) if result.probabilities[label] >= t]
    assert sorted(result.diagnoses) == sorted(expected)
    assert [result.probabilities[d] for d in result.diagnoses] == sorted(
        (result.probabilities[d] for d in result.diagnoses), reverse=True
    )
    peak = ECGPredictor(predictor.model, predictor.feature_extractor, device="cpu", aggregation="max", thresholds=0.01)
    result = peak.predict([records["cinc"]])[0]
    np.testing.assert_allclose(probabilities(result), windows.max(0), atol=1e-6)
    assert set(result.diagnoses) == set(result.labels)


def test_predict_signal_api(predictor, records):
    record = read_record(records["wfdb500"])
    result = predictor.predict_signal(record.signal, 500, record.lead_names, name="mine")
    np.testing.assert_allclose(probabilities(result), probabilities(predictor.predict([records["wfdb500"]])[0]))
    with pytest.raises(ECGDataError, match=r"mine: .*missing lead\(s\) \['V5', 'V6'\]"):
        predictor.predict_signal(record.signal[:, :10], 500, record.lead_names[:10], name="mine")


# ---------------------------------------------------------------------------------------------------------- CLI


def test_cli_prints_diagnoses_and_writes_json(checkpoint, records, tmp_path, capsys):
    out = tmp_path / "results.json"
    argv = ["--model", str(checkpoint), str(records["wfdb100"]), str(records["cpsc_mat"]), "--json", str(out)]
    assert main(argv + ["--batch-size", "1", "--device", "cpu", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert f"== {records['wfdb100']}  (100 Hz, 10.0 s, 1 window)" in text
    assert "diagnoses:" in text and "probability  threshold" in text
    document = json.loads(out.read_text())
    assert document["labels"] == ["CD", "HYP", "MI", "NORM", "STTC"] and document["aggregation"] == "mean"
    first = document["records"][0]
    assert first["ok"] and first["num_windows"] == 1 and set(first["probabilities"]) == set(document["labels"])
    assert first["diagnoses"] == [
        label
        for label in sorted(first["probabilities"], key=first["probabilities"].get, reverse=True)
        if first["probabilities"][label] >= first["thresholds"][label]
    ]


def write_record(folder, name, signal, names, fs=500):
    wfdb.wrsamp(
        name,
        fs=fs,
        units=["mV"] * len(names),
        sig_name=list(names),
        p_signal=signal,
        fmt=["16"] * len(names),
        adc_gain=[1000.0] * len(names),
        baseline=[0] * len(names),
        write_dir=str(folder),
    )
    return Path(folder) / f"{name}.hea"


@pytest.fixture(scope="module")
def bad_records(tmp_path_factory, records) -> dict:
    folder = tmp_path_factory.mktemp("bad")
    good = read_record(records["wfdb500"])
    signal, names = good.signal, good.lead_names
    paths = {"good": records["wfdb500"]}

    paths["missing_dat"] = write_record(folder, "missing_dat", signal, names)
    (folder / "missing_dat.dat").unlink()

    paths["header_mismatch"] = write_record(folder, "header_mismatch", signal, names)
    header = paths["header_mismatch"].read_text().splitlines()
    header[0] = header[0].replace(" 5000", " 2500")  # the header claims half the samples the file holds
    paths["header_mismatch"].write_text("\n".join(header) + "\n")

    paths["checksum"] = write_record(folder, "checksum", signal, names)
    damaged = bytearray((folder / "checksum.dat").read_bytes())
    damaged[4000:4010] = bytes(10)  # same size, other samples
    (folder / "checksum.dat").write_bytes(bytes(damaged))

    keep = [j for j, name in enumerate(names) if name.upper() not in ("III", "AVR", "AVL", "AVF")]
    paths["eight_leads"] = write_record(folder, "eight_leads", signal[:, keep], [names[j] for j in keep])

    gap = signal.copy()
    gap[1000:1500, 7] = np.nan  # V2 missing from 2.0 to 3.0 s
    paths["nan_gap"] = write_record(folder, "nan_gap", gap, names)

    paths["short"] = write_record(folder, "short", signal[:2000], names)  # 4 s: padded and masked
    paths["too_short"] = write_record(folder, "too_short", signal[:50], names)  # 0.1 s: under the receptive field

    paths["not_a_header"] = folder / "not_a_header.hea"
    paths["not_a_header"].write_bytes(os.urandom(200))
    paths["not_ecg_csv"] = folder / "patients.csv"
    paths["not_ecg_csv"].write_text("name,age\nalice,54\nbob,61\n")
    paths["not_ecg_type"] = folder / "photo.png"
    paths["not_ecg_type"].write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    paths["not_ecg_mat"] = folder / "other.mat"
    pytest.importorskip("scipy.io").savemat(paths["not_ecg_mat"], {"weights": np.ones(3)})
    return paths


BAD_MESSAGES = {
    "missing_dat": r"missing_dat\.dat: signal file named in missing_dat\.hea not found",
    "header_mismatch": r"longer than announced: header_mismatch\.hea announces 2500 samples .* the file has 120000 bytes",
    "checksum": r"checksum of lead .* does not match checksum\.hea",
    "eight_leads": r"missing lead\(s\) \['III', 'aVR', 'aVL', 'aVF'\]",
    "nan_gap": r"500 missing \(NaN/inf\) samples in lead\(s\) \['V2'\] at 2\.00-3\.00 s",
    "too_short": r"shorter than the model's receptive field",
    "not_a_header": r"not a WFDB header",
    "not_ecg_csv": r"line 2, column 'name': 'alice' is not a number",
    "not_ecg_type": r"unsupported file type '\.png'",
    "not_ecg_mat": r"not a CPSC2018 record: no MATLAB struct 'ECG' .*\['weights'\]",
}


def test_each_bad_file_gets_its_message_and_the_others_go_on(checkpoint, bad_records, tmp_path, capsys):
    order = ["not_ecg_type", "good", *BAD_MESSAGES, "short"]
    order = list(dict.fromkeys(order))
    out = tmp_path / "bad.json"
    paths = [str(bad_records[key]) for key in order]
    status = main(["--model", str(checkpoint), *paths, "--json", str(out), "--no-remote-code"])
    assert status == 1
    captured = capsys.readouterr()
    assert f"{len(order)} record(s): 2 predicted, {len(order) - 2} failed" in captured.err
    by_name = {Path(r["record"]).name: r for r in json.loads(out.read_text())["records"]}
    for key, pattern in BAD_MESSAGES.items():
        result = by_name[Path(bad_records[key]).name]
        assert not result["ok"], key
        assert re.search(pattern, result["error"]), (key, result["error"])
        assert f"ERROR: {result['error']}" in captured.out
    assert by_name[Path(bad_records["good"]).name]["ok"]
    short = by_name["short.hea"]
    assert short["ok"] and short["num_windows"] == 1 and short["duration_seconds"] == 4.0
    assert any("shorter than the model's 10 s window: padded and masked" in note for note in short["notes"])


def test_read_record_errors_name_the_file(tmp_path, records):
    with pytest.raises(ECGDataError, match=r"nothing\.hea: header file not found"):
        read_record(tmp_path / "nothing.hea")
    csv_without_rate = tmp_path / "leads.csv"
    csv_without_rate.write_text("I,II\n0.1,0.2\n0.2,0.3\n")
    with pytest.raises(ECGDataError, match=r"leads\.csv: no sampling rate: add a 'time' column .* or pass --fs"):
        read_record(csv_without_rate)
    np.save(tmp_path / "x.npy", np.zeros((100, 12)))
    with pytest.raises(ECGDataError, match=r"x\.npy: a \.npy record needs --fs .* and --leads"):
        read_record(tmp_path / "x.npy")
    record = read_record(records["wfdb100"], sampling_rate=250)
    assert any("--fs 250 ignored" in note for note in record.notes)


def test_non_ecg_channels_are_dropped_with_a_note(predictor, records):
    source = read_record(records["wfdb100"])
    extra = ECGRecord(
        "with_resp",
        np.concatenate([source.signal, np.sin(np.arange(1000) / 50.0)[:, None]], axis=1),
        100.0,
        source.lead_names + ["RESP"],
    )
    result = predictor.predict([extra])[0]
    np.testing.assert_allclose(probabilities(result), probabilities(predictor.predict([source])[0]))
    assert any("ignored non-ECG channel(s) ['RESP']" in note for note in result.notes)


def test_console_scripts_are_declared_and_run(checkpoint, records, tmp_path):
    scripts = (REPO_ROOT / "pyproject.toml").read_text().split("[project.scripts]")[1].split("\n[")[0]
    assert 'ecgmamba-predict = "ecgmamba_apps.predict:main"' in scripts
    assert 'ecgmamba-export-onnx = "ecgmamba_apps.onnx_export:main"' in scripts
    # The installed script when there is one (CI installs the package), else the same entry point as a module.
    script = Path(sys.executable).parent / "ecgmamba-predict"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "ecgmamba_apps.predict"]
    # The pure-PyTorch scan: a fresh process would otherwise spend seconds compiling the numba kernel.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ECGMAMBA_SCAN_BACKEND": "torch"}
    result = run_process(
        [*command, "--model", str(checkpoint), str(records["cinc"]), str(tmp_path / "absent.hea"), "--json", "-"],
        tmp_path,
        env,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    document = json.loads(result.stdout)
    assert [r["ok"] for r in document["records"]] == [True, False]
    assert document["records"][1]["error"] == "header file not found"


# ---------------------------------------------------------------------------------------------------------- pipeline


def test_add_pipeline_to_checkpoint(checkpoint, tmp_path):
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["custom_pipelines"][TASK]["impl"] == "pipeline_ecgmamba.ECGClassificationPipeline"
    assert config["custom_pipelines"][TASK]["pt"] == ["AutoModelForSequenceClassification"]
    assert config["thresholds"] == THRESHOLDS and "auto_map" in config
    assert {p.name for p in checkpoint.glob("*.py")} == CHECKPOINT_FILES
    # Before the first save (no config.json yet) it copies the code and, given the config, marks it for later saves.
    early = ECGMambaConfig(hidden_size=32, num_hidden_layers=1, state_size=8)
    add_pipeline_to_checkpoint(tmp_path / "early", config=early)
    assert (tmp_path / "early" / "pipeline_ecgmamba.py").is_file()
    assert early.to_dict()["custom_pipelines"][TASK]["impl"].endswith("ECGClassificationPipeline")


def test_checkpoint_code_needs_no_optional_package(checkpoint):
    # transformers refuses remote code whose imports (outside try blocks) are not installed: the files a checkpoint
    # ships must load with numpy, torch and transformers alone, and none is an application (argparse, matplotlib).
    from transformers.dynamic_module_utils import get_imports

    for path in checkpoint.glob("*.py"):
        optional = {"wfdb", "scipy", "matplotlib", "tqdm", "onnx", "onnxruntime", "pandas", "argparse", "numba"}
        assert not optional & set(get_imports(path)), path.name
        assert "argparse" not in path.read_text() and "matplotlib" not in path.read_text(), path.name


PIPELINE_SCRIPT = """
import json, sys
sys.modules["modeling_ecgmamba"] = None  # the package is not installed here: only the checkpoint's code may run
import wfdb
from transformers import pipeline
checkpoint, record = sys.argv[1], sys.argv[2]
classifier = pipeline("ecg-classification", model=checkpoint, trust_remote_code=True)
signal, fields = wfdb.rdsamp(record[: -len(".hea")])
outputs = {
    "class": type(classifier).__module__,
    "file": classifier(record),
    "array": classifier(signal, sampling_rate=fields["fs"], lead_names=fields["sig_name"], top_k=2),
    "batch": classifier([record, {"signal": signal, "sampling_rate": fields["fs"], "lead_names": fields["sig_name"]}],
                        batch_size=3, aggregation="max"),
}
print(json.dumps(outputs))
"""


def test_pipeline_from_the_checkpoint_in_a_fresh_process(checkpoint, predictor, records, tmp_path):
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    (workdir / "run.py").write_text(PIPELINE_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # The pure-PyTorch scan: the checkpoint's copy of the numba kernel would be compiled afresh in this process.
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), ECGMAMBA_SCAN_BACKEND="torch")
    result = run_process([sys.executable, "-P", "run.py", str(checkpoint), str(records["cinc"])], workdir, env)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = json.loads(result.stdout.strip().splitlines()[-1])
    assert outputs["class"].startswith("transformers_modules.")  # the checkpoint's copy of pipeline_ecgmamba
    expected = predictor.predict([records["cinc"]])[0]
    assert [item["label"] for item in outputs["file"]] == sorted(
        expected.labels, key=lambda k: -expected.probabilities[k]
    )
    for item in outputs["file"]:
        assert item["score"] == pytest.approx(expected.probabilities[item["label"]], abs=1e-5)
        assert item["threshold"] == expected.thresholds[item["label"]]
        assert item["predicted"] == (item["label"] in expected.diagnoses)
    assert outputs["array"] == outputs["file"][:2]
    peak = np.array(expected.window_probabilities).max(0)
    for result in outputs["batch"]:
        scores = {item["label"]: item["score"] for item in result}
        np.testing.assert_allclose([scores[label] for label in expected.labels], peak, atol=1e-5)
