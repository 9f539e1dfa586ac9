"""Tests of the attributions and of the explanation drawn on ECG paper."""

import json
import sys

import numpy as np
import pytest
import torch
from test_predict import make_checkpoint

from ecgmamba_apps.explain import (
    attribute,
    explain_record,
    explanation_summary,
    plot_explanation,
)
from ecgmamba_apps.predict import ExplanationPaths, main
from modeling_ecgmamba import ECGPredictor, read_record

MI_RECORD = "00139"  # PTB-XL: IMI 100, "inferior infarkt" (Q waves in II, III, aVF)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, ptbxl_dir):
    return make_checkpoint(tmp_path_factory.mktemp("checkpoint"), ptbxl_dir)


@pytest.fixture(scope="module")
def predictor(checkpoint):
    return ECGPredictor.from_pretrained(checkpoint, device="cpu", trust_remote_code=False)


@pytest.fixture(scope="module")
def mi_record(ptbxl_dir):
    return ptbxl_dir / "records500" / "00000" / f"{MI_RECORD}_hr.hea"


def test_attribution_has_the_inputs_shape_and_adds_up(predictor, mi_record):
    values, mask, _, _ = predictor.prepare(read_record(mi_record))
    attribution = attribute(predictor.model, values, mask, target=2, steps=16)
    assert attribution.shape == values.shape and torch.isfinite(attribution).all()
    assert attribution.abs().sum() > 0
    # Completeness: attributions add up to logit(record) - logit(flat line), up to the Riemann sum's error.
    with torch.no_grad():
        change = (predictor.model(values, mask).logits - predictor.model(torch.zeros_like(values), mask).logits)[0, 2]
    assert abs(float(attribution.sum()) - float(change)) < 0.05 * abs(float(change)) + 1e-3
    # Gradient x input: one backward pass, the same shape.
    quick = attribute(predictor.model, values, mask, target=2, method="gradient_x_input")
    assert quick.shape == values.shape and torch.isfinite(quick).all()
    with pytest.raises(ValueError, match="method must be one of"):
        attribute(predictor.model, values, mask, method="saliency")


def test_padded_samples_get_no_attribution(predictor, mi_record):
    record = read_record(mi_record)
    record.signal = record.signal[:2000]  # 4 s, padded to the 10 s window
    values, mask, _, notes = predictor.prepare(record)
    assert int(mask.sum()) == 400 and any("padded" in note for note in notes)
    attribution = attribute(predictor.model, values, mask, target=0, steps=8)
    assert attribution.shape == values.shape and torch.isfinite(attribution).all()
    assert attribution[0, 400:].abs().max() == 0 and attribution[0, :400].abs().max() > 0


def test_explanation_png_on_ecg_paper(predictor, mi_record, tmp_path):
    explanation = explain_record(predictor, mi_record, label="MI", steps=16)
    assert explanation.label == "MI" and explanation.attribution.shape == (1000, 12)
    assert explanation.signal.shape == (5000, 12) and explanation.sampling_rate == 500.0  # drawn at 500 Hz
    assert np.isfinite(explanation.attribution).all()
    assert explanation.lead_names[:3] == ["I", "II", "III"]
    assert "MI: most evidence in" in explanation_summary(explanation)
    path = plot_explanation(explanation, tmp_path / "mi.png", dpi=100)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = pytest.importorskip("matplotlib.image").imread(path)
    # Paper at 25 mm/s: 10 s = 250 mm, plus 28 mm of margins; 12 strips of 25 mm, plus 40 mm of header and footer.
    assert image.shape[1] == pytest.approx((250 + 28) / 25.4 * 100, abs=2)
    assert image.shape[0] == pytest.approx((12 * 25 + 40) / 25.4 * 100, abs=2)
    with pytest.raises(ValueError, match=r"unknown class 'AFIB'"):
        explain_record(predictor, mi_record, label="AFIB", steps=2)


def test_long_records_are_explained_on_their_most_probable_window(predictor, data_dir, tmp_path):
    explanation = explain_record(predictor, data_dir / "cpsc2018" / "WFDB" / "A0001.hea", steps=4)
    windows = np.array(predictor.predict([data_dir / "cpsc2018" / "WFDB" / "A0001.hea"])[0].window_probabilities)
    index = predictor.labels.index(explanation.label)
    assert explanation.window_start == (5.0 if windows[1, index] > windows[0, index] else 0.0)
    assert explanation.signal.shape == (5000, 12) and explanation.record_duration == 15.0
    assert any(f"explained {explanation.window_start:.1f}-" in note for note in explanation.notes)
    plot_explanation(explanation, tmp_path / "long.png", dpi=60)


def test_cli_explain(checkpoint, mi_record, tmp_path, capsys):
    # Several records: one picture each, named after the record.
    out, report = tmp_path / "explained.png", tmp_path / "report.json"
    records = [str(mi_record), str(mi_record.with_name("00001_hr.hea"))]
    status = main(
        ["--model", str(checkpoint), "--no-remote-code", *records, "--explain", str(out), "--json", str(report)]
        + ["--explain-method", "gradient_x_input"]
    )
    assert status == 0
    paths = [r["explanation"] for r in json.loads(report.read_text())["records"]]
    assert paths == [str(tmp_path / "explained_00139_hr.png"), str(tmp_path / "explained_00001_hr.png")]
    assert all((tmp_path / p).is_file() for p in paths)
    assert f"explanation: {paths[0]}" in capsys.readouterr().out


def test_explanation_paths():
    assert ExplanationPaths("out.png", several=False)("a/rec.hea") == "out.png"  # one record: the path as given
    name = ExplanationPaths("x/out.png", several=True)
    assert [name("a/rec.hea"), name("c/rec.mat"), name("d/other file.csv")] == [
        "x/out_rec.png",
        "x/out_rec-2.png",
        "x/out_other_file.png",
    ]


def test_missing_matplotlib_is_a_clear_error(predictor, mi_record, tmp_path, monkeypatch):
    explanation = explain_record(predictor, mi_record, method="gradient_x_input")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"needs matplotlib: pip install 'ecgmamba\[train\]'"):
        plot_explanation(explanation, tmp_path / "never.png")
