"""Long records: read, resampled and windowed a chunk at a time, with the answer of the whole record in memory."""

import csv
import json
import logging

import numpy as np
import pytest
import torch
from scipy.signal import resample_poly
from test_input_checks import write_csv
from test_predict import make_checkpoint, write_record

from ecgmamba_apps.explain import explain_record
from ecgmamba_apps.predict import main
from modeling_ecgmamba import ECGMambaFeatureExtractor, ECGPredictor, read_record
from modeling_ecgmamba.feature_extraction_ecgmamba import (
    ChunkedResampler,
    WindowCutter,
    resample_signal,
    split_windows,
    window_starts,
)

TILES = 19  # a 190 s record: four resampler blocks of 65536 samples at 500 Hz, four 60 s chunks, 37 windows


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, ptbxl_dir):
    return make_checkpoint(tmp_path_factory.mktemp("checkpoint"), ptbxl_dir)


@pytest.fixture(scope="module")
def predictor(checkpoint):
    return ECGPredictor.from_pretrained(checkpoint, device="cpu", batch_size=8, trust_remote_code=False)


@pytest.fixture(scope="module")
def long_record(tmp_path_factory, ptbxl_dir):
    """A real 500 Hz PTB-XL record tiled to 190 s, on disk as WFDB (format 16) and as CSV, and in memory."""
    folder = tmp_path_factory.mktemp("long")
    source = read_record(ptbxl_dir / "records500" / "00000" / "00139_hr.hea")
    signal = np.tile(source.signal, (TILES, 1))
    header = write_record(folder, "long", signal, source.lead_names)
    table = write_csv(folder / "long.csv", signal, source.lead_names)
    return {"signal": signal, "names": source.lead_names, "wfdb": header, "csv": table}


def reference_window_probabilities(predictor, signal, names) -> np.ndarray:
    """The whole record in memory, resampled at once by scipy, windows cut by `window_starts`, run in one batch: an
    implementation independent of the streaming code."""
    extractor = predictor.feature_extractor
    columns = [[name.upper() for name in names].index(lead.upper()) for lead in extractor.lead_names]
    whole = resample_poly(signal[:, columns].astype(np.float32), 1, 5, axis=0).astype(np.float32)
    windows, _, _ = split_windows([whole], extractor.window_samples, extractor.window_stride_samples)
    with torch.no_grad():
        logits = predictor.model(input_values=torch.from_numpy(np.stack(windows))).logits
    return torch.sigmoid(logits).numpy()


def test_chunked_resampling_equals_resampling_the_whole_record():
    rng = np.random.default_rng(0)
    for orig, target in [(500, 100), (257, 100), (360, 100), (1000, 100), (128, 100), (50, 100)]:
        signal = rng.normal(size=(150_001, 2)).astype(np.float32)
        resampler = ChunkedResampler(orig, target)
        whole = resample_poly(signal, resampler.up, resampler.down, axis=0)
        pieces, start = [], 0
        for size in rng.integers(1, 50_000, size=100):
            pieces += resampler.push(signal[start : start + size])
            start += size
            if start >= len(signal):
                break
        pieces += resampler.finish()
        streamed = np.concatenate(pieces)
        assert streamed.shape == whole.shape, (orig, target)
        np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-6, err_msg=f"{orig} -> {target} Hz")
        np.testing.assert_array_equal(resample_signal(signal, orig, target), streamed)


def test_windows_cut_as_samples_arrive_are_the_window_layout():
    rng = np.random.default_rng(1)
    for length in range(1, 80):
        for window, stride in [(10, 5), (10, 3), (10, 10), (10, 13), (7, 1)]:
            signal = np.arange(length, dtype=np.float32)[:, None]
            cutter, cut, start = WindowCutter(window, stride), [], 0
            while start < length:
                size = int(rng.integers(1, 9))
                cut += cutter.push(signal[start : start + size])
                start += size
            cut += cutter.finish()
            assert [s for s, _ in cut] == window_starts(length, window, stride), (length, window, stride)
            for s, values in cut:
                np.testing.assert_array_equal(values, signal[s : s + window])


def test_a_streamed_long_record_gives_the_in_memory_window_probabilities(predictor, long_record):
    expected = reference_window_probabilities(predictor, long_record["signal"], long_record["names"])
    assert len(expected) == 37
    for key in ("wfdb", "csv"):
        record = read_record(long_record[key])
        result = predictor.predict([record])[0]
        assert result.ok, result.error
        assert record._signal is None  # streamed: the whole signal was never loaded
        np.testing.assert_allclose(result.window_probabilities, expected, rtol=0, atol=1e-5, err_msg=key)
        assert result.duration == 190.0 and result.window_seconds[-1] == [180.0, 190.0]
    # The extractor called on the array in memory (every window at once) gives the same windows.
    extractor = predictor.feature_extractor
    features = extractor(long_record["signal"], 500, long_record["names"], return_windows=True, return_tensors="pt")
    assert features["window_start"].tolist() == window_starts(19000, 1000, 500)
    in_memory = torch.sigmoid(predictor.window_logits(features["input_values"], features["attention_mask"]))
    np.testing.assert_allclose(in_memory.numpy(), expected, rtol=0, atol=1e-5)


def test_the_cli_writes_a_timeline_and_explains_the_most_probable_window(checkpoint, long_record, tmp_path, capsys):
    timeline, out = tmp_path / "timeline.csv", tmp_path / "long.json"
    status = main(
        ["--model", str(checkpoint), str(long_record["wfdb"]), "--timeline", str(timeline), "--json", str(out)]
        + ["--explain", str(tmp_path / "long.png"), "--explain-method", "gradient_x_input", "--no-progress"]
    )
    assert status == 0
    result = json.loads(out.read_text())["records"][0]
    with open(timeline, newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == result["num_windows"] == 37
    assert [float(row["start_seconds"]) for row in rows] == [s / 100 for s in window_starts(19000, 1000, 500)]
    assert [float(row["end_seconds"]) - float(row["start_seconds"]) for row in rows] == [10.0] * 37
    labels = list(result["probabilities"])
    assert list(rows[0])[3:] == labels
    np.testing.assert_allclose(
        [[float(row[label]) for label in labels] for row in rows], result["window_probabilities"], atol=1e-6
    )
    assert (tmp_path / "long.png").is_file()
    assert any(note.startswith("explained ") and "of 190.0 s" in note for note in result["notes"])


def test_a_long_record_explanation_reads_only_its_span(predictor, long_record):
    record = read_record(long_record["wfdb"])
    explanation = explain_record(predictor, record, method="gradient_x_input")
    assert record._signal is None and explanation.signal.shape == (5000, 12)
    start = int(round(explanation.window_start * 500))
    np.testing.assert_allclose(explanation.signal[:, 0], long_record["signal"][start : start + 5000, 0], atol=1e-9)
    assert explanation.record_duration == 190.0


def test_the_extractor_says_when_it_crops(long_record, caplog):
    extractor = ECGMambaFeatureExtractor()
    with caplog.at_level(logging.WARNING):
        features = extractor(long_record["signal"], 500, long_record["names"], record_names=["holter.hea"])
    assert features["input_values"].shape == (1, 1000, 12)
    assert "holter.hea: a 190 s record cropped to 10 s from 0 s" in caplog.text
    assert "return_windows=True" in caplog.text


def test_a_damaged_long_record_fails_after_streaming_with_its_checksum(predictor, long_record, tmp_path):
    header = write_record(tmp_path, "damaged", long_record["signal"], long_record["names"])
    data = bytearray((tmp_path / "damaged.dat").read_bytes())
    data[2_000_000] ^= 1  # a sample at 166 s, in the last chunk: found only when every sample has been read
    (tmp_path / "damaged.dat").write_bytes(bytes(data))
    result = predictor.predict([header])[0]
    assert not result.ok and "checksum of lead" in result.error and "does not match damaged.hea" in result.error
