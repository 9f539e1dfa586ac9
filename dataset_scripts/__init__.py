"""`datasets` builders for 12-lead ECG datasets: PTB-XL and CPSC2018.

`load_ptbxl(...)` / `load_cpsc2018(...)` return a `DatasetDict` (train/validation/test) with `input_values`
(`(samples, 12)` float32 mV, leads in `STANDARD_LEADS` order), `labels` (multi-hot float32) and `diagnoses`
(class names). `class_names(ds)` and `signal_metadata(ds)` read the label order and the sampling rate back.
"""

from .common import ECGDataError, class_names, signal_metadata
from .cpsc2018 import CPSC2018, load_cpsc2018
from .ptbxl import PTBXL, load_ptbxl

__all__ = ["PTBXL", "CPSC2018", "load_ptbxl", "load_cpsc2018", "ECGDataError", "class_names", "signal_metadata"]
