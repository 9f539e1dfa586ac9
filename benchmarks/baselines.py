"""Baselines that ECGMamba is compared against, as transformers models that the same Trainer pipeline trains.

Not part of the Hub package (they are not saved with remote code); `train_hf.py --model_type` and
`benchmarks/speed.py` build them through :func:`build_model`:

    from benchmarks.baselines import MODEL_TYPES, build_model
    model = build_model("transformer", num_labels=5, id2label={0: "NORM", ...}, num_hidden_layers=4)

- ``"ecgmamba"``: the package's `ECGMambaForSequenceClassification`.
- ``"transformer"``: `ECGTransformerForSequenceClassification`, ECGMamba with self-attention in place of the BiSSM
  (same conv encoder, imported from the package; same width, depth, feed-forward, post-norm and masked mean pooling).
- ``"xresnet1d101"``: `XResNet1dForSequenceClassification`, the strongest CNN of the PTB-XL benchmark
  (Strodthoff et al. 2020, helme/ecg_ptbxl_benchmarking ``code/models/xresnet1d.py``) in its benchmark configuration.

Every model takes ``input_values`` `(batch, seq_len, num_leads)` in mV, an optional ``attention_mask``
`(batch, seq_len)` and ``labels``, and returns a `SequenceClassifierOutput` (multi-label BCE by default).
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import SequenceClassifierOutput

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from modeling_ecgmamba import ECGMambaConfig, ECGMambaForSequenceClassification  # noqa: E402
from modeling_ecgmamba.configuration_ecgmamba import PTBXL_SUPERDIAGNOSTIC  # noqa: E402
from modeling_ecgmamba.modeling_ecgmamba import ECGMambaEmbeddings, ECGMambaFeedForward  # noqa: E402

_ECGMAMBA = ECGMambaConfig()  # the defaults the Transformer baseline copies (width, depth, encoder, FFN)


def _label_kwargs(id2label, kwargs) -> tuple[dict | None, dict]:
    """PTB-XL superdiagnostic names unless `id2label` or `num_labels` is given; `label2id` derived from `id2label`."""
    if id2label is None and "num_labels" not in kwargs:
        id2label = dict(enumerate(PTBXL_SUPERDIAGNOSTIC))
    if id2label is not None and "label2id" not in kwargs:
        kwargs["label2id"] = {name: int(idx) for idx, name in id2label.items()}
    return id2label, kwargs


class ECGTransformerConfig(PreTrainedConfig):
    r"""
    Configuration of [`ECGTransformerForSequenceClassification`]: ECGMamba with multi-head self-attention in place
    of the BiSSM. Defaults equal ECGMamba's (encoder, width, depth, FFN, dropouts, head).

    Args:
        num_leads (`int`, *optional*, defaults to 12): Number of ECG leads (input channels).
        sampling_rate (`int`, *optional*, defaults to 100): Sampling rate in Hz the model expects.
        window_seconds (`float`, *optional*, defaults to 10.0): Training window in seconds.
        hidden_size (`int`, *optional*, defaults to 128): Width of the tokens and of every block.
        num_hidden_layers (`int`, *optional*, defaults to 8): Number of attention blocks.
        num_attention_heads (`int`, *optional*, defaults to 4): Attention heads (head size `hidden_size / heads`).
        encoder_kernel_sizes (`list[int]`, *optional*, defaults to `[7, 5, 5, 5]`): Kernel of each encoder block.
        encoder_strides (`list[int]`, *optional*, defaults to `[2, 2, 2, 2]`): Stride of each encoder block.
        ffn_size (`int`, *optional*, defaults to 256): Inner width of the feed-forward sub-layer.
        ffn_act (`str`, *optional*, defaults to `"gelu"`): Activation of the feed-forward sub-layer.
        layer_norm_epsilon (`float`, *optional*, defaults to 1e-5): Epsilon of the (post-)LayerNorms.
        use_position_embeddings (`bool`, *optional*, defaults to `True`): Add sinusoidal position embeddings.
        max_position_embeddings (`int`, *optional*, defaults to 10000): Wavelength base of those embeddings.
        hidden_dropout (`float`, *optional*, defaults to 0.1): Dropout on the attention and FFN outputs.
        attention_dropout (`float`, *optional*, defaults to 0.0): Dropout on the attention weights.
        head_dropout (`float`, *optional*, defaults to 0.1): Dropout before the classification head.
        initializer_range (`float`, *optional*, defaults to 0.02): Std of the normal init of linear layers.
        problem_type (`str`, *optional*, defaults to `"multi_label_classification"`): As in `ECGMambaConfig`.
        id2label (`dict[int, str]`, *optional*): Class names; PTB-XL superdiagnostic by default.
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
        problem_type: str = "multi_label_classification",
        id2label: dict | None = None,
        **kwargs,
    ):
        id2label, kwargs = _label_kwargs(id2label, kwargs)
        if hidden_size % num_attention_heads:
            raise ValueError(
                f"hidden_size ({hidden_size}) must be divisible by num_attention_heads ({num_attention_heads})."
            )
        self.num_leads = num_leads
        self.sampling_rate = sampling_rate
        self.window_seconds = window_seconds
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
        super().__init__(problem_type=problem_type, id2label=id2label, **kwargs)


class XResNet1dConfig(PreTrainedConfig):
    r"""
    Configuration of [`XResNet1dForSequenceClassification`]. The defaults are xresnet1d101 as the PTB-XL benchmark
    trains it (`xresnet1d101(num_classes, input_channels=12, kernel_size=5, ps_head=0.5, lin_ftrs_head=[128])`).

    Args:
        num_leads (`int`, *optional*, defaults to 12): Number of ECG leads (input channels).
        sampling_rate (`int`, *optional*, defaults to 100): Sampling rate in Hz the model expects.
        expansion (`int`, *optional*, defaults to 4): Bottleneck expansion of the residual blocks.
        layers (`list[int]`, *optional*, defaults to `[3, 4, 23, 3]`): Residual blocks per stage (101 layers).
        stem_sizes (`list[int]`, *optional*, defaults to `[32, 32, 64]`): Channels of the three stem convolutions.
        kernel_size (`int`, *optional*, defaults to 5): Kernel of the residual blocks' middle convolution.
        kernel_size_stem (`int`, *optional*, defaults to 5): Kernel of the stem convolutions.
        block_sizes (`list[int]`, *optional*, defaults to `[64, 64, 64, 64]`): Bottleneck width of each stage
            (output channels are `expansion` times that).
        lin_ftrs_head (`list[int]`, *optional*, defaults to `[128]`): Hidden sizes of the head after concat pooling.
        ps_head (`float`, *optional*, defaults to 0.5): Dropout of the last head layer (half of it before the others).
        bn_head (`bool`, *optional*, defaults to `True`): BatchNorm before every head linear layer.
        problem_type (`str`, *optional*, defaults to `"multi_label_classification"`): As in `ECGMambaConfig`.
        id2label (`dict[int, str]`, *optional*): Class names; PTB-XL superdiagnostic by default.
    """

    model_type = "xresnet1d"

    def __init__(
        self,
        num_leads: int = 12,
        sampling_rate: int = 100,
        expansion: int = 4,
        layers: list[int] | tuple[int, ...] = (3, 4, 23, 3),
        stem_sizes: list[int] | tuple[int, ...] = (32, 32, 64),
        kernel_size: int = 5,
        kernel_size_stem: int = 5,
        block_sizes: list[int] | tuple[int, ...] = (64, 64, 64, 64),
        lin_ftrs_head: list[int] | tuple[int, ...] = (128,),
        ps_head: float = 0.5,
        bn_head: bool = True,
        problem_type: str = "multi_label_classification",
        id2label: dict | None = None,
        **kwargs,
    ):
        id2label, kwargs = _label_kwargs(id2label, kwargs)
        if len(block_sizes) != len(layers):
            raise ValueError(f"block_sizes {list(block_sizes)} and layers {list(layers)} need the same length.")
        self.num_leads = num_leads
        self.sampling_rate = sampling_rate
        self.expansion = expansion
        self.layers = [int(n) for n in layers]
        self.stem_sizes = [int(n) for n in stem_sizes]
        self.kernel_size = kernel_size
        self.kernel_size_stem = kernel_size_stem
        self.block_sizes = [int(n) for n in block_sizes]
        self.lin_ftrs_head = [int(n) for n in lin_ftrs_head]
        self.ps_head = ps_head
        self.bn_head = bn_head
        super().__init__(problem_type=problem_type, id2label=id2label, **kwargs)


class _BaselinePreTrainedModel(PreTrainedModel):
    """What the baselines share with ECGMamba's classifier: input name, input checks, loss, Trainer flags."""

    main_input_name = "input_values"
    input_modalities = "audio"
    # Without this the Trainer divides the loss by the number of processes and accumulation steps a second time.
    accepts_loss_kwargs = False
    # The same loss as ECGMamba (multi-label BCE, single-label CE or MSE by config.problem_type).
    compute_loss = ECGMambaForSequenceClassification.compute_loss

    def _check_inputs(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None) -> None:
        num_leads = self.config.num_leads
        if (
            not isinstance(input_values, torch.Tensor)
            or input_values.dim() != 3
            or input_values.shape[-1] != num_leads
        ):
            raise ValueError(
                f"input_values must be a float tensor (batch, seq_len, {num_leads} leads) in mV, got "
                f"{tuple(getattr(input_values, 'shape', ()))}."
            )
        if attention_mask is not None and tuple(attention_mask.shape) != tuple(input_values.shape[:2]):
            raise ValueError(
                f"attention_mask must have shape {tuple(input_values.shape[:2])}, got {tuple(attention_mask.shape)}."
            )

    def _output(
        self, logits: torch.Tensor, labels: torch.Tensor | None, hidden_states=None
    ) -> SequenceClassifierOutput:
        loss = None if labels is None else self.compute_loss(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=hidden_states)


# ----------------------------------------------------------------------------------------------------------------
# Transformer encoder
# ----------------------------------------------------------------------------------------------------------------


class ECGTransformerAttention(nn.Module):
    """Multi-head self-attention through `F.scaled_dot_product_attention` (flash/memory-efficient kernels)."""

    def __init__(self, config: ECGTransformerConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_size = config.hidden_size // config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.attention_dropout = config.attention_dropout

    def forward(self, hidden_states: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        # hidden_states: (batch, tokens, hidden); key_mask: (batch, tokens) bool, True for real tokens
        batch, tokens, hidden = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch, tokens, 3, self.num_heads, self.head_size)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, tokens, head_size)
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]  # broadcast over heads and queries
        context = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attn_mask, dropout_p=self.attention_dropout if self.training else 0.0
        )
        return self.out_proj(context.transpose(1, 2).reshape(batch, tokens, hidden))


class ECGTransformerBlock(nn.Module):
    """Self-attention + residual + LayerNorm -> feed-forward + residual + LayerNorm (post-norm, like ECGMambaBlock)."""

    def __init__(self, config: ECGTransformerConfig):
        super().__init__()
        self.attention = ECGTransformerAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self.feed_forward = ECGMambaFeedForward(config)
        self.feed_forward_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, hidden_states: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden_states = self.attention_norm(hidden_states + self.dropout(self.attention(hidden_states, key_mask)))
        return self.feed_forward_norm(hidden_states + self.dropout(self.feed_forward(hidden_states)))


class ECGTransformerForSequenceClassification(_BaselinePreTrainedModel):
    """ECGMamba's conv encoder -> N post-norm self-attention blocks -> masked mean pooling -> linear head."""

    config_class = ECGTransformerConfig
    config: ECGTransformerConfig
    base_model_prefix = "ecg_transformer"
    _no_split_modules = ["ECGTransformerBlock"]

    def __init__(self, config: ECGTransformerConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.embeddings = ECGMambaEmbeddings(config)
        for block in self.embeddings.encoder:
            block.conv._kaiming_fan_out = True  # read by _init_weights (see there)
        self.layers = nn.ModuleList(ECGTransformerBlock(config) for _ in range(config.num_hidden_layers))
        self.head_dropout = nn.Dropout(config.head_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)
        # The encoder convolutions get ECGMamba's intended init (Kaiming, fan_out). Keyed on the leaf Conv1d: for
        # custom-code models transformers 5 skips _init_weights on modules without parameters of their own (such as
        # ECGMambaEncoderBlock), so a branch on the block would never run.
        if isinstance(module, nn.Conv1d) and getattr(module, "_kaiming_fan_out", False):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
    ) -> SequenceClassifierOutput:
        r"""
        input_values (`(batch, seq_len, num_leads)`): ECG samples in mV. attention_mask (`(batch, seq_len)`): 1 for
        real samples, 0 for end padding; padded tokens are masked as attention keys and in the pooling.
        """
        self._check_inputs(input_values, attention_mask)
        hidden_states, token_mask = self.embeddings(input_values, attention_mask)
        key_mask = None if token_mask is None else token_mask.bool()
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        for layer in self.layers:
            hidden_states = layer(hidden_states, key_mask)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
        if key_mask is None:
            pooled = hidden_states.mean(dim=1)
        else:
            weights = token_mask.to(hidden_states.dtype)[..., None]
            pooled = (hidden_states * weights).sum(1) / weights.sum(1).clamp(min=1)
        logits = self.classifier(self.head_dropout(pooled))
        return self._output(logits, labels, all_hidden_states)


# ----------------------------------------------------------------------------------------------------------------
# xresnet1d101 (Strodthoff et al. 2020, after fastai's XResNet)
# ----------------------------------------------------------------------------------------------------------------


def _conv_layer(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, act: bool = True
) -> nn.Sequential:
    """fastai's ConvLayer as the benchmark uses it: Conv1d (no bias, "same" padding) -> BatchNorm -> ReLU."""
    layers = [
        nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2, bias=False),
        nn.BatchNorm1d(out_channels),
    ]
    if act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class XResNet1dBlock(nn.Module):
    """Bottleneck residual block: 1x1 -> k (strided) -> 1x1 (no activation); identity path AvgPool -> 1x1 conv."""

    def __init__(self, expansion: int, in_width: int, width: int, stride: int, kernel_size: int):
        super().__init__()
        in_channels, out_channels = in_width * expansion, width * expansion
        if expansion == 1:
            convs = [
                _conv_layer(in_channels, width, kernel_size, stride=stride),
                _conv_layer(width, out_channels, kernel_size, act=False),
            ]
        else:
            convs = [
                _conv_layer(in_channels, width, 1),
                _conv_layer(width, width, kernel_size, stride=stride),
                _conv_layer(width, out_channels, 1, act=False),
            ]
        self.convs = nn.Sequential(*convs)
        identity = []
        if stride != 1:
            identity.append(nn.AvgPool1d(2, ceil_mode=True))
        if in_channels != out_channels:
            identity.append(_conv_layer(in_channels, out_channels, 1, act=False))
        self.identity = nn.Sequential(*identity)
        self.act = nn.ReLU()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(hidden_states) + self.identity(hidden_states))


class XResNet1dForSequenceClassification(_BaselinePreTrainedModel):
    """
    xresnet1d101 of the PTB-XL benchmark: stem (3 convs, the first strided) -> MaxPool -> 4 stages of bottleneck
    blocks (strides 1, 2, 2, 2) -> head [concat(max, avg) pooling -> BN -> Dropout -> Linear -> ReLU -> BN ->
    Dropout -> Linear]. Downsamples 32x; 1,872,261 parameters for 5 classes (1,880,775 for 71).

    Initialised as the benchmark trains it (`model.apply(weight_init)` after construction): Kaiming-normal conv and
    linear weights, zero biases, BatchNorm weight 1 / bias 0 (this overrides fastai's zero-init of the last BN of
    each block, as the benchmark does). The CNN has no notion of padding: with an `attention_mask`, padded samples
    are zeroed and otherwise processed like the rest (the benchmark never pads; it crops fixed windows).
    """

    config_class = XResNet1dConfig
    config: XResNet1dConfig
    base_model_prefix = "xresnet1d"

    def __init__(self, config: XResNet1dConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        expansion = config.expansion
        stem_sizes = [config.num_leads, *config.stem_sizes]
        stem = [
            _conv_layer(stem_sizes[i], stem_sizes[i + 1], config.kernel_size_stem, stride=2 if i == 0 else 1)
            for i in range(len(config.stem_sizes))
        ]
        self.stem = nn.Sequential(*stem, nn.MaxPool1d(kernel_size=3, stride=2, padding=1))
        widths = [64 // expansion, *config.block_sizes]
        self.stages = nn.Sequential(
            *(
                nn.Sequential(
                    *(
                        XResNet1dBlock(
                            expansion,
                            widths[i] if j == 0 else widths[i + 1],
                            widths[i + 1],
                            stride=(1 if i == 0 else 2) if j == 0 else 1,
                            kernel_size=config.kernel_size,
                        )
                        for j in range(num_blocks)
                    )
                )
                for i, num_blocks in enumerate(config.layers)
            )
        )
        # fastai's create_head1d: ps=[ps/2]*(n-1)+[ps]; BN -> Dropout -> Linear (-> ReLU but after the last).
        features = [2 * widths[-1] * expansion, *config.lin_ftrs_head, config.num_labels]
        dropouts = [config.ps_head / 2] * (len(features) - 2) + [config.ps_head]
        head = []
        for i, (n_in, n_out, p) in enumerate(zip(features[:-1], features[1:], dropouts)):
            if config.bn_head:
                head.append(nn.BatchNorm1d(n_in))
            if p:
                head.append(nn.Dropout(p))
            head.append(nn.Linear(n_in, n_out))
            if i < len(features) - 2:
                head.append(nn.ReLU())
        self.head = nn.Sequential(*head)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, (nn.Conv1d, nn.Linear)):
            init.kaiming_normal_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm1d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
    ) -> SequenceClassifierOutput:
        r"""
        input_values (`(batch, seq_len, num_leads)`): ECG samples in mV. attention_mask (`(batch, seq_len)`): padded
        samples (0) are zeroed. output_hidden_states: also return the stem output and each stage's output.
        """
        self._check_inputs(input_values, attention_mask)
        if attention_mask is not None:
            input_values = input_values.masked_fill(attention_mask[..., None] == 0, 0.0)
        hidden_states = self.stem(input_values.transpose(1, 2))  # (batch, channels, length / 4)
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        for stage in self.stages:
            hidden_states = stage(hidden_states)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
        # AdaptiveConcatPool1d: [max, mean] over time.
        pooled = torch.cat([hidden_states.amax(dim=-1), hidden_states.mean(dim=-1)], dim=1)
        return self._output(self.head(pooled), labels, all_hidden_states)


# ----------------------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------------------

MODEL_TYPES = {
    "ecgmamba": (ECGMambaConfig, ECGMambaForSequenceClassification),
    "transformer": (ECGTransformerConfig, ECGTransformerForSequenceClassification),
    "xresnet1d101": (XResNet1dConfig, XResNet1dForSequenceClassification),
}


# Registered with the Auto API on import, so that a saved baseline checkpoint loads with
# AutoModelForSequenceClassification.from_pretrained once this module has been imported.
for _config_class, _model_class in list(MODEL_TYPES.values())[1:]:
    AutoConfig.register(_config_class.model_type, _config_class, exist_ok=True)
    AutoModelForSequenceClassification.register(_config_class, _model_class, exist_ok=True)


def build_model(
    model_type: str, num_labels: int | None = None, id2label: dict | None = None, **config_overrides
) -> PreTrainedModel:
    """A freshly initialised classifier of `model_type` (a key of `MODEL_TYPES`).

    `id2label` names the classes (and sets `num_labels`); without it `num_labels` gives unnamed classes; with
    neither, the five PTB-XL superdiagnostic classes. `config_overrides` go to the model's config class (e.g.
    `hidden_size=96`, `encoder_strides=[2, 2, 2]`, `problem_type="single_label_classification"`).
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(f"Unknown model_type {model_type!r}; choose from {sorted(MODEL_TYPES)}.")
    config_class, model_class = MODEL_TYPES[model_type]
    if id2label is not None:
        id2label = {int(k): v for k, v in id2label.items()}
        if num_labels is not None and num_labels != len(id2label):
            raise ValueError(f"num_labels={num_labels} disagrees with {len(id2label)} names in id2label.")
        config_overrides["id2label"] = id2label
    elif num_labels is not None:
        config_overrides["num_labels"] = num_labels
    return model_class(config_class(**config_overrides))


__all__ = [
    "MODEL_TYPES",
    "ECGTransformerConfig",
    "ECGTransformerForSequenceClassification",
    "XResNet1dConfig",
    "XResNet1dForSequenceClassification",
    "build_model",
]
