"""Configuration of the xresnet1d101 baseline (the strongest CNN of the PTB-XL benchmark, Strodthoff et al. 2020)."""

from .configuration_ecgmamba import ECGClassifierConfig


class XResNet1dConfig(ECGClassifierConfig):
    r"""
    Configuration of [`XResNet1dForSequenceClassification`]. The defaults are xresnet1d101 as the PTB-XL benchmark
    trains it (`xresnet1d101(num_classes, input_channels=12, kernel_size=5, ps_head=0.5, lin_ftrs_head=[128])`).

    Args:
        num_leads (`int`, *optional*, defaults to 12):
            Number of ECG leads (input channels), in the order `I, II, III, aVR, aVL, aVF, V1..V6`.
        sampling_rate (`int`, *optional*, defaults to 100):
            Sampling rate in Hz the model expects.
        window_seconds (`float`, *optional*, defaults to 10.0):
            Training window in seconds.
        expansion (`int`, *optional*, defaults to 4):
            Bottleneck expansion of the residual blocks.
        layers (`list[int]`, *optional*, defaults to `[3, 4, 23, 3]`):
            Residual blocks per stage (101 layers).
        stem_sizes (`list[int]`, *optional*, defaults to `[32, 32, 64]`):
            Channels of the three stem convolutions.
        kernel_size (`int`, *optional*, defaults to 5):
            Kernel of the residual blocks' middle convolution.
        kernel_size_stem (`int`, *optional*, defaults to 5):
            Kernel of the stem convolutions.
        block_sizes (`list[int]`, *optional*, defaults to `[64, 64, 64, 64]`):
            Bottleneck width of each stage (output channels are `expansion` times that).
        lin_ftrs_head (`list[int]`, *optional*, defaults to `[128]`):
            Hidden sizes of the head after concat pooling.
        ps_head (`float`, *optional*, defaults to 0.5):
            Dropout of the last head layer (half of it before the others).
        bn_head (`bool`, *optional*, defaults to `True`):
            BatchNorm before every head linear layer.
        thresholds (`list[float]`, *optional*):
            Per-class decision thresholds chosen on validation by the trainer; `None` means 0.5 for every class.
        window_aggregation (`str`, *optional*, defaults to `"mean"`):
            How a record's window probabilities combine (`"mean"` or `"max"`), as training tuned the thresholds.
        problem_type (`str`, *optional*, defaults to `"multi_label_classification"`):
            As in `ECGMambaConfig`.
        id2label (`dict[int, str]`, *optional*):
            Class names; PTB-XL superdiagnostic by default.
    """

    model_type = "xresnet1d"

    def __init__(
        self,
        num_leads: int = 12,
        sampling_rate: int = 100,
        window_seconds: float = 10.0,
        expansion: int = 4,
        layers: list[int] | tuple[int, ...] = (3, 4, 23, 3),
        stem_sizes: list[int] | tuple[int, ...] = (32, 32, 64),
        kernel_size: int = 5,
        kernel_size_stem: int = 5,
        block_sizes: list[int] | tuple[int, ...] = (64, 64, 64, 64),
        lin_ftrs_head: list[int] | tuple[int, ...] = (128,),
        ps_head: float = 0.5,
        bn_head: bool = True,
        thresholds: list[float] | None = None,
        window_aggregation: str = "mean",
        problem_type: str = "multi_label_classification",
        id2label: dict | None = None,
        **kwargs,
    ):
        if len(block_sizes) != len(layers):
            raise ValueError(f"block_sizes {list(block_sizes)} and layers {list(layers)} need the same length.")
        self.expansion = expansion
        self.layers = [int(n) for n in layers]
        self.stem_sizes = [int(n) for n in stem_sizes]
        self.kernel_size = kernel_size
        self.kernel_size_stem = kernel_size_stem
        self.block_sizes = [int(n) for n in block_sizes]
        self.lin_ftrs_head = [int(n) for n in lin_ftrs_head]
        self.ps_head = ps_head
        self.bn_head = bn_head
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
        """The network's downsampling (a strided stem, a max-pool, every stage but the first strided): a shorter
        record leaves less than one position for the pooling head."""
        return 4 * 2 ** max(len(self.layers) - 1, 0)


__all__ = ["XResNet1dConfig"]
