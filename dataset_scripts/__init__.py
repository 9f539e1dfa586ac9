"""`datasets` builders for 12-lead ECG datasets: PTB-XL, CPSC2018 and the PhysioNet/CinC Challenge 2020/2021 data.

`load_ptbxl(...)` / `load_cpsc2018(...)` / `load_cinc2021(...)` return a `DatasetDict` (train/validation/test) with
`input_values` (`(samples, 12)` float32 mV, leads in `STANDARD_LEADS` order), `labels` (multi-hot float32) and
`diagnoses` (class names). `class_names(ds)` and `signal_metadata(ds)` read the label order and the sampling rate back.

The prepared cache is keyed on the builder's version, its options and a fingerprint of the files in `data_dir`: a
changed label, a record swapped, added or removed rebuilds by itself; `rebuild=True` (`--rebuild`) forces it.
"""

import importlib

# Imported on first use, so that `python -m dataset_scripts.ptbxl` does not import its own module twice.
_EXPORTS = {
    "PTBXL": "ptbxl",
    "load_ptbxl": "ptbxl",
    "CPSC2018": "cpsc2018",
    "load_cpsc2018": "cpsc2018",
    "CinC2021": "cinc2021",
    "load_cinc2021": "cinc2021",
    "ECGDataError": "common",  # the library's one error class (modeling_ecgmamba.ecg_records)
    "class_names": "common",
    "signal_metadata": "common",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
