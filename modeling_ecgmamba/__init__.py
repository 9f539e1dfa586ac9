"""ECGMamba: 12-lead ECG classification with a bidirectional selective state-space model, as a transformers model.

Importing this package registers the classes with the Auto API (`AutoConfig`, `AutoModel`,
`AutoModelForSequenceClassification`, `AutoFeatureExtractor`) and marks them for Hub custom code, so that
`save_pretrained` copies the model files into every checkpoint and `from_pretrained(..., trust_remote_code=True)`
loads it anywhere without this package.
"""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForSequenceClassification

from .configuration_ecgmamba import ECGMambaConfig
from .feature_extraction_ecgmamba import STANDARD_LEADS, ECGMambaFeatureExtractor
from .modeling_ecgmamba import (
    ECGMambaForSequenceClassification,
    ECGMambaModel,
    ECGMambaModelOutput,
    ECGMambaPreTrainedModel,
)
from .selective_scan import selective_scan

AutoConfig.register("ecgmamba", ECGMambaConfig, exist_ok=True)
AutoModel.register(ECGMambaConfig, ECGMambaModel, exist_ok=True)
AutoModelForSequenceClassification.register(ECGMambaConfig, ECGMambaForSequenceClassification, exist_ok=True)
AutoFeatureExtractor.register(ECGMambaConfig, ECGMambaFeatureExtractor, exist_ok=True)

ECGMambaConfig.register_for_auto_class()
ECGMambaModel.register_for_auto_class("AutoModel")
ECGMambaForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
ECGMambaFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")

__all__ = [
    "STANDARD_LEADS",
    "ECGMambaConfig",
    "ECGMambaFeatureExtractor",
    "ECGMambaForSequenceClassification",
    "ECGMambaModel",
    "ECGMambaModelOutput",
    "ECGMambaPreTrainedModel",
    "selective_scan",
]
