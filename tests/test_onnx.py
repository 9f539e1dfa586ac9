"""Tests of the ONNX export: dynamic batch and length, onnxruntime parity on real records, no change to the library."""

import contextlib
import importlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_predict import make_checkpoint

from ecgmamba_apps.onnx_export import main, onnx_session, run_onnx
from modeling_ecgmamba import ECGMambaFeatureExtractor, ECGPredictor, read_record

REPO_ROOT = Path(__file__).resolve().parents[1]

scan_module = importlib.import_module(
    "modeling_ecgmamba.selective_scan"
)  # the package exports a function of that name

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, ptbxl_dir, data_dir):
    """One export through the console script's `main`, checked on real records: (predictor, onnx path, output)."""
    folder = tmp_path_factory.mktemp("onnx")
    # One BiSSM layer: the export's cost grows with depth, and one layer has every kind of operation.
    checkpoint = make_checkpoint(folder / "checkpoint", ptbxl_dir, num_hidden_layers=1)
    predictor = ECGPredictor.from_pretrained(checkpoint, device="cpu")
    path = folder / "model.onnx"
    check = [
        data_dir / "ptb-xl" / "records500" / "00000" / "00001_hr.hea",
        data_dir / "cpsc2018" / "WFDB" / "A0001.hea",
    ]
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        status = main(["--model", str(checkpoint), "--output", str(path), "--check", *map(str, check)])
    assert status == 0, output.getvalue()
    return predictor, path, output.getvalue(), checkpoint


def test_export_writes_dynamic_batch_and_length(exported):
    predictor, path, output, _ = exported
    assert f"wrote {path}" in output and "dynamic batch and length, opset 18" in output
    assert output.count("  ok") == 2  # the two --check records
    model = onnx.load(str(path))
    assert model.opset_import[0].version == 18 or any(op.version == 18 for op in model.opset_import)
    inputs = {value.name: value for value in model.graph.input}
    assert set(inputs) == {"input_values", "attention_mask"}
    dims = [d for d in inputs["input_values"].type.tensor_type.shape.dim]
    assert dims[0].dim_param and dims[1].dim_param and dims[2].dim_value == 12  # symbolic batch and length
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    assert json.loads(metadata["labels"]) == predictor.labels
    assert json.loads(metadata["thresholds"]) == predictor.thresholds.tolist()
    assert metadata["sampling_rate"] == "100" and metadata["window_samples"] == "1000"


def test_onnxruntime_matches_pytorch_on_real_records(exported, data_dir):
    predictor, path, *_ = exported
    session = onnx_session(path, threads=2)
    names = [data_dir / "ptb-xl" / "records100" / "00000" / f"{ecg_id:05d}_lr.hea" for ecg_id in (1, 2, 3, 139)] + [
        data_dir / "cpsc2018" / "TrainingSet1" / "A1985.mat"
    ]
    windows, masks = [], []
    for name in names:
        values, mask, _, _ = predictor.prepare(read_record(name))
        windows.append(values)
        masks.append(mask)
    values, mask = torch.cat(windows), torch.cat(masks)  # batch 6 (A1985 gives two windows)
    with torch.no_grad():
        expected = predictor.model(input_values=values, attention_mask=mask).logits.numpy()
    np.testing.assert_allclose(run_onnx(session, values, mask), expected, atol=1e-4, rtol=0)
    # Another length and padding than the export's example: a 4.4 s record padded to 7.3 s next to a full one.
    short = values[:2, :730].clone()
    short_mask = mask[:2, :730].clone()
    short_mask[1, 440:] = 0
    short[1, 440:] = 0.0
    with torch.no_grad():
        expected = predictor.model(input_values=short, attention_mask=short_mask).logits.numpy()
    np.testing.assert_allclose(run_onnx(session, short, short_mask), expected, atol=1e-4, rtol=0)


def test_export_leaves_the_library_as_it_was(exported):
    predictor, *_ = exported
    # The dispatch chose the loop-free scan by itself while exporting: nothing was swapped or reconfigured.
    assert scan_module._IMPLS["torch"] is scan_module.selective_scan_torch
    assert scan_module._IMPLS["parallel"] is scan_module.selective_scan_parallel
    assert predictor.model.config.scan_backend == "auto"


def readme_onnx_example() -> str:
    """The README's onnxruntime example (the Python block after its marker comment)."""
    text = (REPO_ROOT / "README.md").read_text()
    after = text.split("<!-- onnxruntime example: tests/test_onnx.py runs this block -->", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_onnxruntime_example_runs_end_to_end(exported, data_dir):
    predictor, path, _, checkpoint = exported
    code = readme_onnx_example()
    record = data_dir / "ptb-xl" / "records500" / "00000" / "00001_hr"
    for old, new in [
        ('"outputs/ecgmamba-ptbxl"', repr(str(checkpoint))),
        ('"../shared/data/ptb-xl/records500/00000/00001_hr"', repr(str(record))),
        ('"ecgmamba.onnx"', repr(str(path))),
    ]:
        assert old in code, old
        code = code.replace(old, new)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)  # the extractor's int64 mask goes to onnxruntime as it is
    assert namespace["features"]["attention_mask"].dtype == np.int64
    expected = predictor.predict([record.with_suffix(".hea")])[0]
    np.testing.assert_allclose(namespace["window_probabilities"], expected.window_probabilities, atol=1e-5)
    probabilities = [expected.probabilities[label] for label in predictor.labels]
    np.testing.assert_allclose(namespace["probabilities"], probabilities, atol=1e-5)


def test_the_attention_mask_is_int64_everywhere(ptbxl_dir):
    record = read_record(ptbxl_dir / "records100" / "00000" / "00001_lr.hea")
    extractor = ECGMambaFeatureExtractor()
    for tensors in ("np", "pt", None):
        features = extractor(record.signal, 100, record.lead_names, return_windows=True, return_tensors=tensors)
        assert str(features["attention_mask"].dtype) in ("int64", "torch.int64")
    batch = next(extractor.iter_windows(record.chunks(), 100, record.lead_names, return_tensors="np"))
    assert batch["attention_mask"].dtype == np.int64


def test_export_without_the_onnx_extra_says_which_extra(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if not installed
    status = main(["--model", str(tmp_path / "not-loaded"), "--output", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in err
    assert err == "ecgmamba-export-onnx: needs the onnx extra: pip install 'ecgmamba[onnx]' (missing: onnxscript)"
