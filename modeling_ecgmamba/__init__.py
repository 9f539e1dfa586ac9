"""ECGMamba: 12-lead ECG classification with a bidirectional selective state-space model, as a transformers model.

The files in this folder are the library, and exactly what checkpoints ship as remote code (this `__init__` aside):
the models (ECGMamba and the two baselines it is compared with), the selective scan, the feature extractor, the one
record reader, the one inference path and the `ecg-classification` pipeline. Command-line tools, explanation drawing
and ONNX export live in `ecgmamba_apps`, training in `ecgmamba_training`; both import this package, never the reverse.

Importing the package registers every model with the Auto API (`AutoConfig`, `AutoModel` for ECGMamba,
`AutoModelForSequenceClassification`, `AutoFeatureExtractor`) and marks the classes for Hub custom code, so that
`save_pretrained` copies their files into every checkpoint and `from_pretrained(..., trust_remote_code=True)` loads it
anywhere without this package. Importing it also registers the `ecg-classification` pipeline task.
"""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForSequenceClassification

from .configuration_ecg_transformer import ECGTransformerConfig
from .configuration_ecgmamba import ECGClassifierConfig, ECGMambaConfig
from .configuration_xresnet1d import XResNet1dConfig
from .ecg_records import STANDARD_LEADS, ECGDataError, ECGRecord, read_record
from .feature_extraction_ecgmamba import ECGMambaFeatureExtractor
from .inference_ecgmamba import ECGPredictor, RecordPrediction, record_scores
from .modeling_ecg_transformer import ECGTransformerForSequenceClassification
from .modeling_ecgmamba import (
    ECGMambaForSequenceClassification,
    ECGMambaModel,
    ECGMambaModelOutput,
    ECGMambaPreTrainedModel,
)
from .modeling_xresnet1d import XResNet1dForSequenceClassification
from .pipeline_ecgmamba import ECGClassificationPipeline
from .selective_scan import selective_scan

# Every classifier this package ships: its config class and model class. The Auto API learns each pair here, and
# every checkpoint of them carries its code (auto_map) and the feature extractor's.
CLASSIFIERS = (
    (ECGMambaConfig, ECGMambaForSequenceClassification),
    (ECGTransformerConfig, ECGTransformerForSequenceClassification),
    (XResNet1dConfig, XResNet1dForSequenceClassification),
)

for _config_class, _model_class in CLASSIFIERS:
    AutoConfig.register(_config_class.model_type, _config_class, exist_ok=True)
    AutoModelForSequenceClassification.register(_config_class, _model_class, exist_ok=True)
    AutoFeatureExtractor.register(_config_class, ECGMambaFeatureExtractor, exist_ok=True)
    _config_class.register_for_auto_class()
    _model_class.register_for_auto_class("AutoModelForSequenceClassification")
AutoModel.register(ECGMambaConfig, ECGMambaModel, exist_ok=True)
ECGMambaModel.register_for_auto_class("AutoModel")
ECGMambaFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")

__all__ = [
    "CLASSIFIERS",
    "STANDARD_LEADS",
    "ECGClassificationPipeline",
    "ECGClassifierConfig",
    "ECGDataError",
    "ECGMambaConfig",
    "ECGMambaFeatureExtractor",
    "ECGMambaForSequenceClassification",
    "ECGMambaModel",
    "ECGMambaModelOutput",
    "ECGMambaPreTrainedModel",
    "ECGPredictor",
    "ECGRecord",
    "ECGTransformerConfig",
    "ECGTransformerForSequenceClassification",
    "RecordPrediction",
    "XResNet1dConfig",
    "XResNet1dForSequenceClassification",
    "read_record",
    "record_scores",
    "selective_scan",
]
