"""Feature extractor for ECGMamba: turns raw 12-lead records into model inputs.

Ships inside every checkpoint (`preprocessor_config.json`), so a user with a WFDB record and a checkpoint needs no
other code: sampling-rate conversion, lead order by name, units, normalisation and cropping/padding all live here.
"""

from fractions import Fraction

import numpy as np

# Canonical 12-lead order used by the model, PTB-XL and CPSC2018.
STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

# Spellings seen in WFDB headers and CSV exports, mapped (case-insensitively) to the canonical names.
_LEAD_ALIASES = {name.lower(): name for name in STANDARD_LEADS}
_LEAD_ALIASES.update({"avr": "aVR", "avl": "aVL", "avf": "aVF", "lead i": "I", "lead ii": "II", "lead iii": "III"})

# Units WFDB headers use for ECG signals, as factors to millivolts.
UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3, "nu": None, "": None}


def canonical_lead_name(name: str) -> str | None:
    """Return the canonical name of an ECG lead (`"avr"` -> `"aVR"`), or None if it is not one of the 12 leads."""
    return _LEAD_ALIASES.get(str(name).strip().lower())


def resample_signal(signal: np.ndarray, orig_fs: float, target_fs: float) -> np.ndarray:
    """Polyphase resampling of a `(samples, leads)` array along time.

    Uses `scipy.signal.resample_poly` (anti-aliasing FIR filter), exact for rational rate ratios such as
    500 -> 100 Hz or 257 -> 100 Hz. Returns float32 with `round(samples * target_fs / orig_fs)` samples.
    """
    from scipy.signal import resample_poly

    signal = np.asarray(signal, dtype=np.float32)
    if orig_fs <= 0 or target_fs <= 0:
        raise ValueError(f"Sampling rates must be positive, got {orig_fs} Hz -> {target_fs} Hz.")
    if orig_fs == target_fs:
        return signal
    ratio = Fraction(float(target_fs) / float(orig_fs)).limit_denominator(1000)
    out = resample_poly(signal, ratio.numerator, ratio.denominator, axis=0)
    return out.astype(np.float32, copy=False)
