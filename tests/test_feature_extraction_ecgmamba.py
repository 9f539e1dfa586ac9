"""Tests of ECGMambaFeatureExtractor: resampling, lead order, units, normalisation, crop/pad, windows, bad input."""

import numpy as np
import pytest
import torch

from modeling_ecgmamba import STANDARD_LEADS, ECGMambaConfig, ECGMambaFeatureExtractor
from modeling_ecgmamba.feature_extraction_ecgmamba import canonical_lead_name, resample_signal

wfdb = pytest.importorskip("wfdb")


@pytest.fixture(scope="module")
def ptbxl_record_1(ptbxl_dir):
    """PTB-XL ecg_id 1 at 500 Hz and at 100 Hz, as wfdb reads them."""
    high, high_fields = wfdb.rdsamp(str(ptbxl_dir / "records500" / "00000" / "00001_hr"))
    low, low_fields = wfdb.rdsamp(str(ptbxl_dir / "records100" / "00000" / "00001_lr"))
    return high, high_fields, low, low_fields


def sine_record(seconds=10.0, fs=100, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    phases = rng.uniform(0, 2 * np.pi, size=12)
    return (np.sin(2 * np.pi * 1.2 * t[:, None] + phases) + 0.05 * rng.normal(size=(len(t), 12))).astype(np.float32)


def test_500hz_record_becomes_the_100hz_record(ptbxl_record_1):
    high, high_fields, low, low_fields = ptbxl_record_1
    assert high_fields["fs"] == 500 and low_fields["fs"] == 100
    extractor = ECGMambaFeatureExtractor()
    features = extractor(high, sampling_rate=500, lead_names=high_fields["sig_name"], return_tensors="np")
    resampled = features["input_values"][0]
    assert resampled.shape == (1000, 12) == low.shape
    assert features["attention_mask"].sum() == 1000
    # PTB-XL's own 100 Hz files were downsampled with another filter: close, not identical.
    correlation = np.corrcoef(resampled[20:-20].ravel(), low[20:-20].ravel())[0, 1]
    assert correlation > 0.98
    assert np.sqrt(np.mean((resampled - low) ** 2)) < 0.05  # mV
    # And the 100 Hz record passes through unchanged.
    same = extractor(low, sampling_rate=100, lead_names=low_fields["sig_name"])["input_values"][0]
    np.testing.assert_allclose(same, low.astype(np.float32), atol=1e-6)


def test_resampling_keeps_a_tone_and_handles_odd_rates():
    t = np.arange(2570) / 257.0
    tone = np.sin(2 * np.pi * 5.0 * t)[:, None].repeat(12, 1)
    out = resample_signal(tone, 257, 100)
    assert out.shape == (1000, 12) and out.dtype == np.float32
    expected = np.sin(2 * np.pi * 5.0 * np.arange(1000) / 100.0)
    np.testing.assert_allclose(out[50:-50, 0], expected[50:-50], atol=0.02)
    with pytest.raises(ValueError, match="positive"):
        resample_signal(tone, 0, 100)


def test_shuffled_lead_order_and_case_are_undone(ptbxl_record_1):
    _, _, low, fields = ptbxl_record_1
    extractor = ECGMambaFeatureExtractor()
    reference = extractor(low, sampling_rate=100, lead_names=fields["sig_name"])["input_values"]
    order = np.random.default_rng(1).permutation(12)
    shuffled_names = [fields["sig_name"][i].lower() for i in order]  # "avr", "v1", ...
    shuffled = extractor(low[:, order], sampling_rate=100, lead_names=shuffled_names)["input_values"]
    np.testing.assert_array_equal(shuffled, reference)
    assert canonical_lead_name("AVL") == "aVL" and canonical_lead_name(" v6 ") == "V6"
    assert canonical_lead_name("vx") is None


def test_units_are_converted_to_millivolts():
    record = sine_record()
    extractor = ECGMambaFeatureExtractor()
    in_mv = extractor(record, sampling_rate=100)["input_values"]
    in_uv = extractor(record * 1000, sampling_rate=100, units="uV")["input_values"]
    np.testing.assert_allclose(in_uv, in_mv, rtol=1e-5, atol=1e-6)
    per_lead = ["mV"] * 11 + ["uV"]
    mixed = record.copy()
    mixed[:, 11] *= 1000
    np.testing.assert_allclose(extractor(mixed, sampling_rate=100, units=per_lead)["input_values"], in_mv, atol=1e-5)


def test_crop_pad_mask_and_batches():
    extractor = ECGMambaFeatureExtractor()
    long_record, short_record = sine_record(seconds=14), sine_record(seconds=6.5, seed=1)
    features = extractor([long_record, short_record], sampling_rate=100, return_tensors="pt")
    assert features["input_values"].shape == (2, 1000, 12) and features["input_values"].dtype == torch.float32
    assert features["attention_mask"].sum(-1).tolist() == [1000, 650]
    torch.testing.assert_close(features["input_values"][0], torch.from_numpy(long_record[:1000]))
    assert (features["input_values"][1, 650:] == 0).all()

    centered = ECGMambaFeatureExtractor(crop_position="center")(long_record, sampling_rate=100)["input_values"][0]
    np.testing.assert_array_equal(centered, long_record[200:1200])
    longest = extractor([short_record, short_record[:500]], sampling_rate=100, padding="longest")
    assert longest["input_values"].shape == (2, 650, 12)
    with pytest.raises(ValueError, match="different lengths"):
        extractor([short_record, short_record[:500]], sampling_rate=100, padding=False)


def test_sliding_windows_cover_the_whole_record():
    extractor = ECGMambaFeatureExtractor()
    records = [sine_record(seconds=25), sine_record(seconds=8)]
    features = extractor(records, sampling_rate=100, return_windows=True, window_stride_seconds=10)
    # 25 s: windows at 0, 10 and 15 s (the last aligned to the end); 8 s: one padded window.
    assert features["record_index"].tolist() == [0, 0, 0, 1]
    np.testing.assert_array_equal(features["input_values"][2], records[0][1500:2500])
    assert features["attention_mask"][3].sum() == 800


def test_normalisation_is_fitted_saved_and_reloaded(tmp_path):
    records = [sine_record(seed=i) * (i + 1) + 0.5 for i in range(3)]
    extractor = ECGMambaFeatureExtractor().fit(records)
    stacked = np.concatenate(records)
    np.testing.assert_allclose(extractor.mean, stacked.mean(0), rtol=1e-5)
    np.testing.assert_allclose(extractor.std, stacked.std(0), rtol=1e-4)
    normalised = extractor(records, sampling_rate=100)["input_values"].reshape(-1, 12)
    np.testing.assert_allclose(normalised.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(normalised.std(0), 1, atol=1e-3)

    extractor.save_pretrained(tmp_path)
    reloaded = ECGMambaFeatureExtractor.from_pretrained(tmp_path)
    assert reloaded.do_normalize and reloaded.mean == extractor.mean and reloaded.std == extractor.std
    np.testing.assert_array_equal(
        reloaded(records, sampling_rate=100)["input_values"], normalised.reshape(3, 1000, 12)
    )
    with pytest.raises(ValueError, match="fit"):
        ECGMambaFeatureExtractor(do_normalize=True)


def test_extractor_from_model_config_matches_the_model():
    config = ECGMambaConfig(sampling_rate=250, window_seconds=5, encoder_kernel_sizes=[9, 5], encoder_strides=[4, 2])
    extractor = ECGMambaFeatureExtractor.from_model_config(config)
    assert (extractor.sampling_rate, extractor.window_samples, extractor.feature_size) == (250, 1250, 12)
    assert extractor.min_samples == 1 + 8 + 4 * 4  # the encoder's receptive field
    assert extractor.lead_names == list(STANDARD_LEADS)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda fe, r: fe(r), r"sampling_rate is required.*fields\['fs'\].*100 Hz"),
        (
            lambda fe, r: fe(
                r,
                sampling_rate=100,
                lead_names=["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "vx"],
            ),
            r"record 0: missing lead\(s\) \['V6'\].*\(channels that are no ECG lead: \['vx'\]\)",
        ),
        (
            lambda fe, r: fe(r[:, :8], sampling_rate=100, lead_names=["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]),
            r"missing lead\(s\) \['III', 'aVR', 'aVL', 'aVF'\]",
        ),
        (lambda fe, r: fe(r, sampling_rate=100, lead_names=["I"] * 12), r"appear more than once"),
        (lambda fe, r: fe(r[:, :8], sampling_rate=100), r"expected 12 leads .* got shape \(1000, 8\)"),
        (lambda fe, r: fe(r.T.copy(), sampling_rate=100), r"looks transposed"),
        (lambda fe, r: fe(r[:, 0], sampling_rate=100), r"got an array of shape \(1000,\)"),
        (lambda fe, r: fe([r[:, 0]], sampling_rate=100), r"record 0: expected 12 leads .* got shape \(1, 1000\)"),
        (
            lambda fe, r: fe(r[:20], sampling_rate=100),
            r"20 samples at 100 Hz is shorter than the model's receptive field of 63",
        ),
        (lambda fe, r: fe(r, sampling_rate=100, units="counts"), r"unknown unit 'counts'"),
        (lambda fe, r: fe([], sampling_rate=100), r"raw_ecg is empty"),
    ],
    ids=[
        "no-rate",
        "unknown-lead",
        "missing-leads",
        "duplicate-lead",
        "too-few-columns",
        "transposed",
        "rank-1",
        "rank-1-in-list",
        "too-short",
        "unit",
        "empty",
    ],
)
def test_bad_records_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call(ECGMambaFeatureExtractor(), sine_record())


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_nan_inf_and_flat_leads_are_rejected_by_name(bad_value):
    extractor = ECGMambaFeatureExtractor()
    record = sine_record()
    record[100:140, 3] = bad_value
    with pytest.raises(
        ValueError, match=r"patient-7.hea: 40 missing \(NaN/inf\) samples in lead\(s\) \[.aVR.\] at 1.00-1.40 s"
    ):
        extractor([sine_record(), record], sampling_rate=100, record_names=["ok.hea", "patient-7.hea"])
    flat = sine_record()
    flat[:, 7] = 0.25
    with pytest.raises(ValueError, match=r"lead\(s\) \['V2'\] are flat"):
        extractor(flat, sampling_rate=100)
