"""ECGMamba model configuration, and the base every ECG classifier's configuration of this package shares."""

import math

from transformers import PreTrainedConfig

# PTB-XL superdiagnostic classes (Strodthoff et al. 2020), the default task, in the benchmark's (sorted) order.
PTBXL_SUPERDIAGNOSTIC = ("CD", "HYP", "MI", "NORM", "STTC")
# How the probabilities of a record's windows combine into the record's (see `window_aggregation`).
WINDOW_AGGREGATIONS = ("mean", "max")
# `selective_scan.BACKENDS` and "auto" (this file imports no torch, so the names are listed here; a test compares).
SCAN_BACKENDS = ("auto", "reference", "cpu_kernel", "torch", "parallel", "cuda")


class ECGClassifierConfig(PreTrainedConfig):
    r"""
    What every ECG classifier of this package shares: its input (leads, rate, window), its classes, and the
    inference settings that training chooses and inference must reuse. Subclasses document these arguments too.

    Args:
        num_leads (`int`, *optional*, defaults to 12):
            Number of ECG leads (input channels), in the order `I, II, III, aVR, aVL, aVF, V1..V6`.
        sampling_rate (`int`, *optional*, defaults to 100):
            Sampling rate in Hz that the model expects; the feature extractor resamples to it.
        window_seconds (`float`, *optional*, defaults to 10.0):
            Length in seconds of the window the model is trained on; longer records are slid over.
        thresholds (`list[float]`, *optional*):
            Per-class decision thresholds on the record probabilities, chosen on the validation split by the
            trainer; `None` means 0.5 for every class.
        window_aggregation (`str`, *optional*, defaults to `"mean"`):
            How the probabilities of a record's windows combine into the record's: `"mean"` or `"max"`. Training
            writes the aggregation its thresholds were tuned with, so that inference aggregates the same way.
        problem_type (`str`, *optional*, defaults to `"multi_label_classification"`):
            `"multi_label_classification"` (sigmoid per class), `"single_label_classification"` (softmax) or
            `"regression"`.
        id2label (`dict[int, str]`, *optional*):
            Names of the output classes; defaults to the PTB-XL superdiagnostic classes `CD, HYP, MI, NORM, STTC`.
            `num_labels` may be given instead for unnamed classes.
    """

    def __init__(
        self,
        num_leads: int = 12,
        sampling_rate: int = 100,
        window_seconds: float = 10.0,
        thresholds: list[float] | None = None,
        window_aggregation: str = "mean",
        problem_type: str = "multi_label_classification",
        id2label: dict | None = None,
        **kwargs,
    ):
        if id2label is None and "num_labels" not in kwargs:
            id2label = dict(enumerate(PTBXL_SUPERDIAGNOSTIC))
        if id2label is not None and "label2id" not in kwargs:
            kwargs["label2id"] = {name: int(idx) for idx, name in id2label.items()}
        self.num_leads = num_leads
        self.sampling_rate = sampling_rate
        self.window_seconds = window_seconds
        self.thresholds = None if thresholds is None else [float(t) for t in thresholds]
        self.window_aggregation = window_aggregation
        super().__init__(problem_type=problem_type, id2label=id2label, **kwargs)
        if self.window_aggregation not in WINDOW_AGGREGATIONS:
            raise ValueError(f"window_aggregation must be one of {WINDOW_AGGREGATIONS}, got {window_aggregation!r}.")
        if self.thresholds is not None and (
            len(self.thresholds) != self.num_labels or not all(0.0 <= t <= 1.0 for t in self.thresholds)
        ):
            raise ValueError(
                f"thresholds must be {self.num_labels} numbers in [0, 1] (one per class), got {thresholds!r}."
            )
        for name in ("num_leads", "sampling_rate"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}.")
        if not self.window_seconds > 0:
            raise ValueError(f"window_seconds must be positive, got {self.window_seconds!r}.")

    @property
    def window_samples(self) -> int:
        """Samples in one model window (`window_seconds * sampling_rate`)."""
        return int(round(self.window_seconds * self.sampling_rate))

    @property
    def min_samples(self) -> int:
        """Fewest samples (at `sampling_rate`) a record must have for the model to read it."""
        return 1


def conv_receptive_field(kernel_sizes, strides) -> int:
    """Receptive field in samples of a stack of convolutions with these kernels and strides."""
    field, jump = 1, 1
    for kernel, stride in zip(kernel_sizes, strides):
        field += (kernel - 1) * jump
        jump *= stride
    return field


class ECGMambaConfig(ECGClassifierConfig):
    r"""
    Configuration of an [`ECGMambaModel`]: a bidirectional selective state-space model (BiSSM, Mamba-style) for
    multi-lead ECG classification (ECGMamba, arXiv 2406.10098). The defaults give the paper's model: 12 leads,
    100 Hz, 10 s windows, 8 BiSSM layers, state size 16, convolution kernel 4, expansion 2, classifying the five
    PTB-XL superdiagnostic classes.

    Args:
        num_leads (`int`, *optional*, defaults to 12):
            Number of ECG leads (input channels), in the order `I, II, III, aVR, aVL, aVF, V1..V6`.
        sampling_rate (`int`, *optional*, defaults to 100):
            Sampling rate in Hz that the model expects; the feature extractor resamples to it.
        window_seconds (`float`, *optional*, defaults to 10.0):
            Length in seconds of the window the model is trained on; longer records are cropped or slid over.
        hidden_size (`int`, *optional*, defaults to 128):
            Width of the token embeddings and of every BiSSM block.
        num_hidden_layers (`int`, *optional*, defaults to 8):
            Number of BiSSM blocks (the paper found 8 best).
        state_size (`int`, *optional*, defaults to 16):
            Size N of the SSM state per channel (`d_state` in Mamba).
        expand (`int`, *optional*, defaults to 2):
            Expansion of the mixer's inner width: `intermediate_size = expand * hidden_size`.
        conv_kernel (`int`, *optional*, defaults to 4):
            Kernel size of the mixer's causal depthwise convolution (`d_conv` in Mamba).
        time_step_rank (`int` or `"auto"`, *optional*, defaults to `"auto"`):
            Rank of the time-step (dt) projection; `"auto"` resolves to `ceil(hidden_size / 16)`.
        time_step_min (`float`, *optional*, defaults to 0.001):
            Smallest time step of the log-uniform initialisation of `dt_proj.bias`.
        time_step_max (`float`, *optional*, defaults to 0.1):
            Largest time step of the log-uniform initialisation of `dt_proj.bias`.
        time_step_floor (`float`, *optional*, defaults to 1e-4):
            Lower clamp of the initial time steps.
        use_bias (`bool`, *optional*, defaults to `False`):
            Whether the mixer's input and output projections have biases.
        use_conv_bias (`bool`, *optional*, defaults to `True`):
            Whether the mixer's depthwise convolution has a bias.
        hidden_act (`str`, *optional*, defaults to `"silu"`):
            Activation of the mixer (after its convolution and on the gate).
        bidirectional (`bool`, *optional*, defaults to `True`):
            Scan the token sequence forwards and backwards and average both (BiSSM). `False` gives a causal,
            forward-only Mamba (the paper's unidirectional ablation).
        use_encoder (`bool`, *optional*, defaults to `True`):
            Use the convolutional ECG encoder (Conv1d + BatchNorm + ReLU blocks). `False` projects every sample
            linearly to `hidden_size` with no downsampling (the paper's "no encoder" ablation).
        encoder_kernel_sizes (`list[int]`, *optional*, defaults to `[7, 5, 5, 5]`):
            Kernel size of each encoder block.
        encoder_strides (`list[int]`, *optional*, defaults to `[2, 2, 2, 2]`):
            Stride of each encoder block; their product is the downsampling from samples to tokens
            (16: 100 Hz -> 6.25 tokens per second, 63 tokens per 10 s, one per 160 ms). The SSM's cost is linear in
            tokens: 16x keeps the paper's width and depth under xresnet1d101's FLOPs per record (which itself pools
            32x); 8x costs 1.7x those FLOPs (`python -m benchmarks.speed --candidates`).
        use_ffn (`bool`, *optional*, defaults to `True`):
            Add the feed-forward sub-layer (two pointwise Conv1d) after each mixer.
        ffn_size (`int`, *optional*, defaults to 256):
            Inner width of the feed-forward sub-layer.
        ffn_act (`str`, *optional*, defaults to `"gelu"`):
            Activation between the two feed-forward convolutions.
        use_layer_norm (`bool`, *optional*, defaults to `True`):
            Apply LayerNorm after each residual connection (post-norm). `False` is the paper's "no LayerNorm" ablation.
        layer_norm_epsilon (`float`, *optional*, defaults to 1e-5):
            Epsilon of the LayerNorms.
        use_position_embeddings (`bool`, *optional*, defaults to `True`):
            Add fixed sinusoidal position embeddings to the tokens.
        max_position_embeddings (`int`, *optional*, defaults to 10000):
            Wavelength base of the sinusoidal position embeddings (they are computed for any length).
        hidden_dropout (`float`, *optional*, defaults to 0.1):
            Dropout on the mixer and feed-forward outputs before each residual add.
        pooling_type (`str`, *optional*, defaults to `"mean"`):
            How tokens are pooled into one vector per record: `"mean"` or `"max"` (both ignore padded tokens).
        head_dropout (`float`, *optional*, defaults to 0.1):
            Dropout before the classification head.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialiser of linear layers and the classification head.
        scan_backend (`str`, *optional*, defaults to `"auto"`):
            Selective-scan implementation: `"auto"` (mamba-ssm CUDA kernels on GPU when installed, the compiled
            CPU kernel on CPU, else pure PyTorch), `"cpu_kernel"`, `"torch"`, `"parallel"` (loop-free; what
            export traces), `"cuda"` or `"reference"`.
        thresholds (`list[float]`, *optional*):
            Per-class decision thresholds on the record probabilities, chosen on the validation split by the
            trainer; `None` means 0.5 for every class.
        window_aggregation (`str`, *optional*, defaults to `"mean"`):
            How the probabilities of a record's windows combine into the record's: `"mean"` or `"max"`. Training
            writes the aggregation its thresholds were tuned with, so that inference aggregates the same way.
        problem_type (`str`, *optional*, defaults to `"multi_label_classification"`):
            `"multi_label_classification"` (BCE on multi-hot labels), `"single_label_classification"`
            (cross-entropy on class indices) or `"regression"` (MSE).
        id2label (`dict[int, str]`, *optional*):
            Names of the output classes (diagnoses); defaults to the PTB-XL superdiagnostic classes
            `CD, HYP, MI, NORM, STTC` (sorted, as the PTB-XL benchmark and the dataset builder order them).
            `num_labels` may be given instead for unnamed classes.

    Example:

    ```python
    >>> from modeling_ecgmamba import ECGMambaConfig, ECGMambaForSequenceClassification

    >>> config = ECGMambaConfig(num_hidden_layers=4)
    >>> model = ECGMambaForSequenceClassification(config)
    ```
    """

    model_type = "ecgmamba"

    def __init__(
        self,
        num_leads: int = 12,
        sampling_rate: int = 100,
        window_seconds: float = 10.0,
        hidden_size: int = 128,
        num_hidden_layers: int = 8,
        state_size: int = 16,
        expand: int = 2,
        conv_kernel: int = 4,
        time_step_rank: int | str = "auto",
        time_step_min: float = 0.001,
        time_step_max: float = 0.1,
        time_step_floor: float = 1e-4,
        use_bias: bool = False,
        use_conv_bias: bool = True,
        hidden_act: str = "silu",
        bidirectional: bool = True,
        use_encoder: bool = True,
        encoder_kernel_sizes: list[int] | tuple[int, ...] = (7, 5, 5, 5),
        encoder_strides: list[int] | tuple[int, ...] = (2, 2, 2, 2),
        use_ffn: bool = True,
        ffn_size: int = 256,
        ffn_act: str = "gelu",
        use_layer_norm: bool = True,
        layer_norm_epsilon: float = 1e-5,
        use_position_embeddings: bool = True,
        max_position_embeddings: int = 10000,
        hidden_dropout: float = 0.1,
        pooling_type: str = "mean",
        head_dropout: float = 0.1,
        initializer_range: float = 0.02,
        scan_backend: str = "auto",
        thresholds: list[float] | None = None,
        window_aggregation: str = "mean",
        problem_type: str = "multi_label_classification",
        id2label: dict | None = None,
        **kwargs,
    ):
        encoder_kernel_sizes = [int(k) for k in encoder_kernel_sizes]
        encoder_strides = [int(s) for s in encoder_strides]

        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.state_size = state_size
        self.expand = expand
        self.intermediate_size = int(expand * hidden_size)
        self.conv_kernel = conv_kernel
        # Resolved here so that config.json states the value actually used.
        self.time_step_rank = math.ceil(hidden_size / 16) if time_step_rank == "auto" else int(time_step_rank)
        self.time_step_min = time_step_min
        self.time_step_max = time_step_max
        self.time_step_floor = time_step_floor
        self.use_bias = use_bias
        self.use_conv_bias = use_conv_bias
        self.hidden_act = hidden_act
        self.bidirectional = bidirectional
        self.use_encoder = use_encoder
        self.encoder_kernel_sizes = encoder_kernel_sizes
        self.encoder_strides = encoder_strides
        self.use_ffn = use_ffn
        self.ffn_size = ffn_size
        self.ffn_act = ffn_act
        self.use_layer_norm = use_layer_norm
        self.layer_norm_epsilon = layer_norm_epsilon
        self.use_position_embeddings = use_position_embeddings
        self.max_position_embeddings = max_position_embeddings
        self.hidden_dropout = hidden_dropout
        self.pooling_type = pooling_type
        self.head_dropout = head_dropout
        self.initializer_range = initializer_range
        self.scan_backend = scan_backend
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
        self._validate()

    def _validate(self):
        if len(self.encoder_kernel_sizes) != len(self.encoder_strides) or not self.encoder_strides:
            raise ValueError(
                "encoder_kernel_sizes and encoder_strides must be non-empty lists of the same length, got "
                f"{self.encoder_kernel_sizes} and {self.encoder_strides}."
            )
        if any(kernel % 2 == 0 or kernel < 1 for kernel in self.encoder_kernel_sizes):
            # Odd kernels with "same" padding keep token j centred on sample j * stride (padding invariance).
            raise ValueError(f"encoder_kernel_sizes must be odd positive integers, got {self.encoder_kernel_sizes}.")
        if self.pooling_type not in ("mean", "max"):
            raise ValueError(f"pooling_type must be 'mean' or 'max', got {self.pooling_type!r}.")
        if self.scan_backend not in SCAN_BACKENDS:
            raise ValueError(f"scan_backend must be one of {SCAN_BACKENDS}, got {self.scan_backend!r}.")
        for name in ("hidden_size", "num_hidden_layers", "state_size", "expand"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}.")

    @property
    def downsampling_factor(self) -> int:
        """Samples per token: the product of the encoder strides (1 without the encoder)."""
        return math.prod(self.encoder_strides) if self.use_encoder else 1

    @property
    def min_samples(self) -> int:
        """The encoder's receptive field (samples seen by one token): the shortest record it can embed."""
        if not self.use_encoder:
            return 1
        return conv_receptive_field(self.encoder_kernel_sizes, self.encoder_strides)


__all__ = ["ECGClassifierConfig", "ECGMambaConfig", "WINDOW_AGGREGATIONS", "conv_receptive_field"]
