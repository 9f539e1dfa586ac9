"""Configuration of the Transformer baseline: ECGMamba with multi-head self-attention in place of the BiSSM."""

from .configuration_ecgmamba import ECGClassifierConfig, ECGMambaConfig, conv_receptive_field

_ECGMAMBA = ECGMambaConfig()  # the defaults the baseline copies (width, depth, encoder, feed-forward, dropouts)


class ECGTransformerConfig(ECGClassifierConfig):
    r"""
    Configuration of [`ECGTransformerForSequenceClassification`]: ECGMamba with multi-head self-attention in place
    of the BiSSM. Defaults equal ECGMamba's (encoder, width, depth, FFN, dropouts, head), so that the two differ only
    in the token mixer.

    Args:
        num_leads (`int`, *optional*, defaults to 12):
            Number of ECG leads (input channels), in the order `I, II, III, aVR, aVL, aVF, V1..V6`.
        sampling_rate (`int`, *optional*, defaults to 100):
            Sampling rate in Hz the model expects.
        window_seconds (`float`, *optional*, defaults to 10.0):
            Training window in seconds.
        hidden_size (`int`, *optional*, defaults to 128):
            Width of the tokens and of every block.
        num_hidden_layers (`int`, *optional*, defaults to 8):
            Number of attention blocks.
        num_attention_heads (`int`, *optional*, defaults to 4):
            Attention heads (head size `hidden_size / heads`).
        encoder_kernel_sizes (`list[int]`, *optional*, defaults to `[7, 5, 5, 5]`):
            Kernel of each encoder block.
        encoder_strides (`list[int]`, *optional*, defaults to `[2, 2, 2, 2]`):
            Stride of each encoder block.
        ffn_size (`int`, *optional*, defaults to 256):
            Inner width of the feed-forward sub-layer.
        ffn_act (`str`, *optional*, defaults to `"gelu"`):
            Activation of the feed-forward sub-layer.
        layer_norm_epsilon (`float`, *optional*, defaults to 1e-5):
            Epsilon of the (post-)LayerNorms.
        use_position_embeddings (`bool`, *optional*, defaults to `True`):
            Add sinusoidal position embeddings.
        max_position_embeddings (`int`, *optional*, defaults to 10000):
            Wavelength base of those embeddings.
        hidden_dropout (`float`, *optional*, defaults to 0.1):
            Dropout on the attention and FFN outputs.
        attention_dropout (`float`, *optional*, defaults to 0.0):
            Dropout on the attention weights.
        head_dropout (`float`, *optional*, defaults to 0.1):
            Dropout before the classification head.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the normal init of linear layers.
        thresholds (`list[float]`, *optional*):
            Per-class decision thresholds chosen on validation by the trainer; `None` means 0.5 for every class.
        window_aggregation (`str`, *optional*, defaults to `"mean"`):
            How a record's window probabilities combine (`"mean"` or `"max"`), as training tuned the thresholds.
        problem_type (`str`, *optional*, defaults to `"multi_label_classification"`):
            As in `ECGMambaConfig`.
        id2label (`dict[int, str]`, *optional*):
            Class names; PTB-XL superdiagnostic by default.
    """

    model_type = "ecg_transformer"

    def __init__(
        self,
        num_leads: int = _ECGMAMBA.num_leads,
        sampling_rate: int = _ECGMAMBA.sampling_rate,
        window_seconds: float = _ECGMAMBA.window_seconds,
        hidden_size: int = _ECGMAMBA.hidden_size,
        num_hidden_layers: int = _ECGMAMBA.num_hidden_layers,
        num_attention_heads: int = 4,
        encoder_kernel_sizes: list[int] | tuple[int, ...] = tuple(_ECGMAMBA.encoder_kernel_sizes),
        encoder_strides: list[int] | tuple[int, ...] = tuple(_ECGMAMBA.encoder_strides),
        ffn_size: int = _ECGMAMBA.ffn_size,
        ffn_act: str = _ECGMAMBA.ffn_act,
        layer_norm_epsilon: float = _ECGMAMBA.layer_norm_epsilon,
        use_position_embeddings: bool = True,
        max_position_embeddings: int = _ECGMAMBA.max_position_embeddings,
        hidden_dropout: float = _ECGMAMBA.hidden_dropout,
        attention_dropout: float = 0.0,
        head_dropout: float = _ECGMAMBA.head_dropout,
        initializer_range: float = _ECGMAMBA.initializer_range,
        thresholds: list[float] | None = None,
        window_aggregation: str = "mean",
        problem_type: str = "multi_label_classification",
        id2label: dict | None = None,
        **kwargs,
    ):
        if hidden_size % num_attention_heads:
            raise ValueError(
                f"hidden_size ({hidden_size}) must be divisible by num_attention_heads ({num_attention_heads})."
            )
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.use_encoder = True  # read by ECGMambaEmbeddings; the baseline always has the conv encoder
        self.encoder_kernel_sizes = [int(k) for k in encoder_kernel_sizes]
        self.encoder_strides = [int(s) for s in encoder_strides]
        self.ffn_size = ffn_size
        self.ffn_act = ffn_act
        self.layer_norm_epsilon = layer_norm_epsilon
        self.use_position_embeddings = use_position_embeddings
        self.max_position_embeddings = max_position_embeddings
        self.hidden_dropout = hidden_dropout
        self.attention_dropout = attention_dropout
        self.head_dropout = head_dropout
        self.initializer_range = initializer_range
        super().__init__(
            num_leads=num_leads,
            sampling_rate=sampling_rate,
            window_seconds=window_seconds,
            thresholds=thresholds,
            window_aggregation=window_aggregation,
            problem_type=problem_type,
            id2label=id2label,
            **kwargs,
        )

    @property
    def min_samples(self) -> int:
        """The encoder's receptive field, as for ECGMamba."""
        return conv_receptive_field(self.encoder_kernel_sizes, self.encoder_strides)


__all__ = ["ECGTransformerConfig"]
