"""PyTorch ECGMamba: a bidirectional selective state-space model (BiSSM) for multi-lead ECG classification.

ECG encoder (Conv1d + BatchNorm + ReLU, downsampling samples to tokens) -> sinusoidal position embedding ->
N x [BiSSM mixer + residual + LayerNorm -> feed-forward (two pointwise Conv1d) + residual + LayerNorm] ->
masked pooling -> linear head. Paper: "ECGMamba: Towards Efficient ECG Classification with BiSSM" (arXiv 2406.10098).

Input `input_values` is `(batch, seq_len, num_leads)` in millivolts, the layout `wfdb.rdsamp` returns.
"""

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import ModelOutput, can_return_tuple, logging

from .configuration_ecgmamba import ECGMambaConfig
from .selective_scan import fused_mixer, is_tracing, resolve_backend, selective_scan

logger = logging.get_logger(__name__)


@dataclass
class ECGMambaModelOutput(ModelOutput):
    r"""
    Output of [`ECGMambaModel`].

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_tokens, hidden_size)`):
            Token states after the last block.
        pooler_output (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
            Tokens pooled over the valid (unpadded) positions, the input of the classification head.
        token_attention_mask (`torch.BoolTensor` of shape `(batch_size, num_tokens)`, *optional*):
            Which tokens come from real samples, when an `attention_mask` was given.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True`):
            The embeddings and the output of every block, each `(batch_size, num_tokens, hidden_size)`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    token_attention_mask: torch.BoolTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


def check_model_inputs(config, input_values: torch.Tensor, attention_mask: torch.Tensor | None) -> None:
    """Raise a ValueError that says what was expected whenever the inputs cannot give a meaningful answer: wrong type,
    rank or lead count, a mask of another shape, NaN/inf in the real samples, records shorter than `config.min_samples`.
    Every classifier of this package runs it (the data-dependent checks are skipped while exporting or compiling)."""
    num_leads = config.num_leads
    if not isinstance(input_values, torch.Tensor) or not input_values.is_floating_point():
        raise ValueError(
            f"input_values must be a float tensor of shape (batch, seq_len, {num_leads}) in mV, "
            f"got {type(input_values).__name__} {getattr(input_values, 'dtype', '')}."
        )
    if input_values.dim() != 3:
        hint = " For a single record add a batch dimension: input_values[None]." if input_values.dim() == 2 else ""
        raise ValueError(
            f"input_values must have 3 dimensions (batch, seq_len, num_leads={num_leads}), "
            f"got shape {tuple(input_values.shape)}.{hint}"
        )
    if input_values.shape[-1] != num_leads:
        hint = ""
        if input_values.shape[1] == num_leads:
            hint = " It looks like (batch, leads, samples): transpose to (batch, samples, leads)."
        raise ValueError(
            f"input_values must have {num_leads} leads in the last dimension (batch, seq_len, {num_leads}), "
            f"got shape {tuple(input_values.shape)}.{hint}"
        )
    if attention_mask is not None and tuple(attention_mask.shape) != tuple(input_values.shape[:2]):
        raise ValueError(
            f"attention_mask must have shape (batch, seq_len) = {tuple(input_values.shape[:2])} to match "
            f"input_values, got {tuple(attention_mask.shape)}."
        )
    if is_tracing():  # exporting or compiling: data-dependent checks cannot run
        return
    # One pass over the samples and one read back to the host per call: the extremes are NaN if any sample is
    # NaN, +-inf if any is infinite. The per-record details are computed only for an error message.
    lengths = None if attention_mask is None else attention_mask.bool().sum(-1)
    if input_values.numel() > 0:
        valid = input_values if lengths is None else input_values.masked_fill(~attention_mask.bool()[..., None], 0)
        summary = torch.stack(torch.aminmax(valid)).double()
        if lengths is not None:
            summary = torch.cat([summary, lengths.min()[None].to(summary)])
        lowest, highest, *shortest = summary.tolist()
        if not (math.isfinite(lowest) and math.isfinite(highest)):
            bad = (~torch.isfinite(valid)).flatten(1).any(-1).nonzero().flatten().tolist()
            raise ValueError(
                f"input_values contains NaN or inf in batch item(s) {bad}: fill or drop the bad samples "
                "(e.g. a disconnected lead) before calling the model."
            )
        shortest = int(shortest[0]) if shortest else input_values.shape[1]
    else:
        shortest = 0
    min_samples = config.min_samples
    if input_values.shape[0] > 0 and shortest < min_samples:
        short = list(range(input_values.shape[0])) if lengths is None else (lengths < min_samples).nonzero()
        raise ValueError(
            f"Record(s) {torch.as_tensor(short).flatten().tolist()} have {shortest} valid samples, fewer than the "
            f"model's receptive field of {min_samples} samples ({min_samples / config.sampling_rate:.2f} s at "
            f"{config.sampling_rate} Hz); the model expects {config.window_samples} samples."
        )


def pool_tokens(
    hidden_states: torch.Tensor, token_mask: torch.Tensor | None, pooling_type: str = "mean"
) -> torch.Tensor:
    """Mean or max of `(batch, tokens, hidden)` over the real tokens: padding never changes the pooled vector."""
    if pooling_type == "max":
        if token_mask is not None:
            hidden_states = hidden_states.masked_fill(
                ~token_mask.bool()[..., None], torch.finfo(hidden_states.dtype).min
            )
        return hidden_states.max(dim=1).values
    if token_mask is None:
        return hidden_states.mean(dim=1)
    weights = token_mask.to(hidden_states.dtype)[..., None]
    return (hidden_states * weights).sum(1) / weights.sum(1).clamp(min=1)


def sinusoidal_position_embeddings(num_positions: int, dim: int, base: float, device, dtype) -> torch.Tensor:
    """Fixed sin/cos position embeddings (Vaswani et al. 2017) of shape `(num_positions, dim)`, for any length."""
    position = torch.arange(num_positions, device=device, dtype=torch.float32)[:, None]
    inv_freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(base) / dim))
    angles = position * inv_freq  # (positions, ceil(dim / 2))
    embeddings = torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(1)[:, :dim]
    return embeddings.to(dtype)


# transformers 5 runs `_init_weights` only on modules that own parameters: a container such as ECGMambaBiMixer or
# ECGMambaEncoderBlock, whose weights live in child layers, is skipped. So the module that builds a layer names the
# layer's init on the layer itself (`layer.weight_init = "..."`), and `_init_weights` applies it when it reaches that
# layer. Layers without one keep transformers' default (normal with `initializer_range`, zero bias, unit norms).
def init_named_weight(module: nn.Module, config) -> None:
    """Apply the init that the module which built `module` named in `module.weight_init`, if any. `init.*` skips
    tensors already loaded from a checkpoint."""
    name = getattr(module, "weight_init", None)
    if name is None:
        return
    if name == "kaiming_uniform":  # PyTorch's own default for Linear and Conv, kept by mamba-ssm: +-1/sqrt(fan_in)
        init.kaiming_uniform_(module.weight, a=math.sqrt(5))
    elif name == "kaiming_normal_fan_out":  # He et al. for a conv before ReLU: std sqrt(2 / (out_channels * kernel))
        init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif name == "time_step":  # Mamba's dt_proj: weights uniform in +-rank^-0.5; bias = softplus^-1(dt), dt
        # log-uniform in [time_step_min, time_step_max]
        rank, channels = module.in_features, module.out_features
        init.uniform_(module.weight, -(rank**-0.5), rank**-0.5)
        log_min, log_max = math.log(config.time_step_min), math.log(config.time_step_max)
        dt = torch.exp(torch.rand(channels) * (log_max - log_min) + log_min).clamp(min=config.time_step_floor)
        init.copy_(module.bias, dt + torch.log(-torch.expm1(-dt)))
    else:
        raise ValueError(f"{type(module).__name__}.weight_init = {name!r}: no such initialisation")


class ECGMambaEncoderBlock(nn.Module):
    """Conv1d + BatchNorm + ReLU, downsampling by `stride` ("same" padding so that tokens align with samples)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        self.conv = nn.Conv1d(
            in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False
        )
        self.conv.weight_init = "kaiming_normal_fan_out"
        self.norm = nn.BatchNorm1d(out_channels)
        self.act = nn.ReLU()
        self.stride = stride

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None = None):
        # hidden_states: (batch, channels, length); mask: (batch, length) of 0/1
        hidden_states = self.act(self.norm(self.conv(hidden_states)))
        if mask is not None:
            # Token j is centred on sample j * stride: it is real iff that sample is. Zeroing the padded tokens makes
            # the next convolution see exactly the zeros it would see at the end of an unpadded record.
            mask = mask[:, :: self.stride]
            hidden_states = hidden_states * mask[:, None, :]
        return hidden_states, mask


class ECGMambaEmbeddings(nn.Module):
    """ECG encoder: `(batch, seq_len, num_leads)` samples -> `(batch, num_tokens, hidden_size)` tokens + positions."""

    def __init__(self, config: ECGMambaConfig):
        super().__init__()
        self.config = config
        if config.use_encoder:
            channels = [config.num_leads] + [config.hidden_size] * len(config.encoder_strides)
            self.encoder = nn.ModuleList(
                ECGMambaEncoderBlock(channels[i], channels[i + 1], kernel, stride)
                for i, (kernel, stride) in enumerate(zip(config.encoder_kernel_sizes, config.encoder_strides))
            )
        else:
            # "No encoder" ablation: every sample becomes a token through a linear map of the leads.
            self.lead_projection = nn.Linear(config.num_leads, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None):
        mask = None if attention_mask is None else attention_mask.to(input_values.dtype)
        if mask is not None:
            # masked_fill, not a product: NaN * 0 is NaN, and padding may hold anything.
            input_values = input_values.masked_fill(mask[..., None] == 0, 0.0)
        if self.config.use_encoder:
            hidden_states = input_values.transpose(1, 2)  # (batch, num_leads, seq_len)
            for block in self.encoder:
                hidden_states, mask = block(hidden_states, mask)
            hidden_states = hidden_states.transpose(1, 2)  # (batch, num_tokens, hidden_size)
        else:
            hidden_states = self.lead_projection(input_values)
        if self.config.use_position_embeddings:
            positions = sinusoidal_position_embeddings(
                hidden_states.shape[1],
                self.config.hidden_size,
                self.config.max_position_embeddings,
                hidden_states.device,
                hidden_states.dtype,
            )
            hidden_states = hidden_states + positions
        hidden_states = self.dropout(hidden_states)
        if mask is not None:
            hidden_states = hidden_states * mask[..., None]
        return hidden_states, mask


class ECGMambaMixer(nn.Module):
    """
    One scan direction of the BiSSM: causal depthwise conv -> SiLU -> input-dependent (dt, B, C) -> selective scan.

    The input and output projections and the gate are shared between directions and live in [`ECGMambaBiMixer`]
    (Vision Mamba's "v2" layout); each direction has its own conv, `x_proj`, `dt_proj`, `A_log` and `D`.
    """

    def __init__(self, config: ECGMambaConfig):
        super().__init__()
        self.config = config
        self.intermediate_size = config.intermediate_size
        self.state_size = config.state_size
        self.time_step_rank = config.time_step_rank
        self.conv1d = nn.Conv1d(
            self.intermediate_size,
            self.intermediate_size,
            kernel_size=config.conv_kernel,
            groups=self.intermediate_size,
            padding=config.conv_kernel - 1,
            bias=config.use_conv_bias,
        )
        self.act = ACT2FN[config.hidden_act]
        # Makes dt, B and C functions of the input: the "selective" part.
        self.x_proj = nn.Linear(self.intermediate_size, self.time_step_rank + 2 * self.state_size, bias=False)
        self.dt_proj = nn.Linear(self.time_step_rank, self.intermediate_size, bias=True)
        # As mamba-ssm: a small normal init would leave B and C near zero and the state path silent at the start.
        self.conv1d.weight_init = self.x_proj.weight_init = "kaiming_uniform"
        self.dt_proj.weight_init = "time_step"
        # S4D-real parameters, kept in log space so that A = -exp(A_log) stays negative (a stable recurrence).
        self.A_log = nn.Parameter(torch.empty(self.intermediate_size, self.state_size))
        self.D = nn.Parameter(torch.empty(self.intermediate_size))
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True

    def forward(self, hidden_states: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        # 1. Causal depthwise convolution: (batch, intermediate, tokens)
        num_tokens = hidden_states.shape[-1]
        hidden_states = self.act(self.conv1d(hidden_states)[..., :num_tokens])
        if token_mask is not None:
            # Zero input keeps the state at zero through padding, so reversed padded records scan like unpadded ones.
            hidden_states = hidden_states * token_mask[:, None, :]

        # 2. Input-dependent time step, B and C: (batch, tokens, rank + 2 * state)
        ssm_parameters = self.x_proj(hidden_states.transpose(1, 2))
        time_step, B, C = torch.split(ssm_parameters, [self.time_step_rank, self.state_size, self.state_size], dim=-1)
        # dt_proj without its bias: the scan adds the bias and applies softplus in float32.
        discrete_time_step = (time_step @ self.dt_proj.weight.t()).transpose(1, 2)  # (batch, intermediate, tokens)

        # 3. Selective scan: y_t = C_t . h_t + D x_t, h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t
        A = -torch.exp(self.A_log.float())  # (intermediate, state)
        backend = None if self.config.scan_backend == "auto" else self.config.scan_backend
        return selective_scan(
            hidden_states,
            discrete_time_step,
            A,
            B.transpose(1, 2),
            C.transpose(1, 2),
            D=self.D.float(),
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
            backend=backend,
        )


class ECGMambaBiMixer(nn.Module):
    """BiSSM: a forward and a backward [`ECGMambaMixer`] over the same tokens, averaged, gated and projected back.

    On a CPU with the compiled kernels (scan backend `"cpu_kernel"`, the default there) everything between `in_proj`
    and `out_proj` runs fused ([`selective_scan.fused_mixer`]): both directions in one pass, the backward one walking
    time backwards, in the `(batch, tokens, channels)` layout of the projections. Other backends run the modules.
    """

    def __init__(self, config: ECGMambaConfig):
        super().__init__()
        self.config = config
        self.intermediate_size = config.intermediate_size
        self.in_proj = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=config.use_bias)
        self.forward_mixer = ECGMambaMixer(config)
        self.backward_mixer = ECGMambaMixer(config) if config.bidirectional else None
        self.gate_act = ACT2FN[config.hidden_act]
        self.out_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.use_bias)
        self.in_proj.weight_init = self.out_proj.weight_init = "kaiming_uniform"  # as mamba-ssm

    def forward(self, hidden_states: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        # (batch, tokens, hidden) -> (batch, tokens, 2 * intermediate): x, then the gate z
        projected = self.in_proj(hidden_states)
        if self._runs_fused(projected):
            scanned = fused_mixer(projected, token_mask, *self._direction_parameters())
        else:
            scanned = self._forward_modules(projected, token_mask)
        return self.out_proj(scanned)

    def _runs_fused(self, projected: torch.Tensor) -> bool:
        if projected.dtype != torch.float32 or self.config.hidden_act != "silu":
            return False
        backend = None if self.config.scan_backend == "auto" else self.config.scan_backend
        return resolve_backend(projected, backend) == "cpu_kernel"

    def _direction_parameters(self) -> tuple:
        """Each direction's parameters, one list per kind, as `fused_mixer` takes them (no stacked copies)."""
        mixers = [self.forward_mixer] if self.backward_mixer is None else [self.forward_mixer, self.backward_mixer]
        return (
            [m.conv1d.weight[:, 0] for m in mixers],  # (intermediate, kernel)
            [m.conv1d.bias for m in mixers] if self.config.use_conv_bias else [],
            [m.x_proj.weight for m in mixers],
            [m.dt_proj.weight for m in mixers],
            [m.dt_proj.bias for m in mixers],
            [m.A_log for m in mixers],
            [m.D for m in mixers],
        )

    def _forward_modules(self, projected: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
        """The mixers as modules, in the `(batch, channels, tokens)` layout the scan backends take."""
        x, gate = projected.transpose(1, 2).split(self.intermediate_size, dim=1)
        if token_mask is not None:
            x = x * token_mask[:, None, :]
        scanned = self.forward_mixer(x, token_mask)
        if self.backward_mixer is not None:
            # Reversing moves the padding to the front; the zeroed inputs keep it from reaching the real tokens.
            reversed_mask = None if token_mask is None else token_mask.flip(-1)
            backward = self.backward_mixer(x.flip(-1), reversed_mask).flip(-1)
            scanned = 0.5 * (scanned + backward)
        scanned = scanned * self.gate_act(gate)
        return scanned.transpose(1, 2)


class ECGMambaFeedForward(nn.Module):
    """Two pointwise Conv1d with an activation between: mixes channels per token, never across tokens."""

    def __init__(self, config: ECGMambaConfig):
        super().__init__()
        self.conv_in = nn.Conv1d(config.hidden_size, config.ffn_size, kernel_size=1)
        self.act = ACT2FN[config.ffn_act]
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.conv_out = nn.Conv1d(config.ffn_size, config.hidden_size, kernel_size=1)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # (batch, tokens, hidden): the pointwise convolutions as matrix products, no transposes
        hidden_states = nn.functional.linear(hidden_states, self.conv_in.weight[..., 0], self.conv_in.bias)
        hidden_states = self.dropout(self.act(hidden_states))
        return nn.functional.linear(hidden_states, self.conv_out.weight[..., 0], self.conv_out.bias)


class ECGMambaBlock(GradientCheckpointingLayer):
    """BiSSM + residual + LayerNorm -> feed-forward + residual + LayerNorm (post-norm, as in the paper)."""

    def __init__(self, config: ECGMambaConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.mixer = ECGMambaBiMixer(config)
        self.mixer_norm = self._make_norm(config)
        self.feed_forward = ECGMambaFeedForward(config) if config.use_ffn else None
        self.feed_forward_norm = self._make_norm(config) if config.use_ffn else None
        self.dropout = nn.Dropout(config.hidden_dropout)

    @staticmethod
    def _make_norm(config: ECGMambaConfig) -> nn.Module:
        return (
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_epsilon) if config.use_layer_norm else nn.Identity()
        )

    def forward(self, hidden_states: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden_states = self.mixer_norm(hidden_states + self.dropout(self.mixer(hidden_states, token_mask)))
        if self.feed_forward is not None:
            hidden_states = self.feed_forward_norm(hidden_states + self.dropout(self.feed_forward(hidden_states)))
        return hidden_states


class ECGMambaPreTrainedModel(PreTrainedModel):
    config_class = ECGMambaConfig
    config: ECGMambaConfig
    base_model_prefix = "ecgmamba"
    main_input_name = "input_values"
    input_modalities = "audio"  # a 1-D signal: the closest modality transformers knows
    supports_gradient_checkpointing = True
    _no_split_modules = ["ECGMambaBlock"]
    # Without this the Trainer divides the loss by the number of processes and accumulation steps a second time.
    accepts_loss_kwargs = False

    def __init__(self, config: ECGMambaConfig, *inputs, **kwargs):
        super().__init__(config, *inputs, **kwargs)
        # save_pretrained writes auto_map only for the class being saved: name both so that AutoModel and
        # AutoModelForSequenceClassification load every checkpoint.
        auto_map = dict(getattr(config, "auto_map", None) or {})
        auto_map.setdefault("AutoConfig", "configuration_ecgmamba.ECGMambaConfig")
        auto_map.setdefault("AutoModel", "modeling_ecgmamba.ECGMambaModel")
        auto_map.setdefault(
            "AutoModelForSequenceClassification", "modeling_ecgmamba.ECGMambaForSequenceClassification"
        )
        config.auto_map = auto_map

    def _init_weights(self, module):
        super()._init_weights(module)
        init_named_weight(module, self.config)
        if isinstance(module, ECGMambaMixer):
            # A = -(1..N) for every channel (S4D-real), D = 1 (skip connection).
            A = torch.arange(1, module.state_size + 1, dtype=torch.float32).expand(module.intermediate_size, -1)
            init.copy_(module.A_log, torch.log(A))
            init.ones_(module.D)

    def no_weight_decay_parameter_names(self) -> list[str]:
        """Parameters AdamW should not decay: the SSM's `A_log` and `D`, every bias, and the norms."""
        names = []
        for module_name, module in self.named_modules():
            for param_name, param in module.named_parameters(recurse=False):
                full_name = f"{module_name}.{param_name}" if module_name else param_name
                is_norm = isinstance(module, (nn.LayerNorm, nn.BatchNorm1d))
                if getattr(param, "_no_weight_decay", False) or param_name == "bias" or is_norm:
                    names.append(full_name)
        return names


class ECGMambaModel(ECGMambaPreTrainedModel):
    """The bare ECGMamba backbone: tokens after the last block and their pooled summary."""

    def __init__(self, config: ECGMambaConfig):
        super().__init__(config)
        self.embeddings = ECGMambaEmbeddings(config)
        self.layers = nn.ModuleList(ECGMambaBlock(config, layer_idx=i) for i in range(config.num_hidden_layers))
        self.gradient_checkpointing = False
        self.post_init()

    def pool(self, hidden_states: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
        return pool_tokens(hidden_states, token_mask, self.config.pooling_type)

    @can_return_tuple
    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
    ) -> ECGMambaModelOutput:
        r"""
        input_values (`torch.FloatTensor` of shape `(batch_size, seq_len, num_leads)`):
            ECG samples in millivolts at `config.sampling_rate`, leads in the order `I, II, III, aVR, aVL, aVF,
            V1..V6` (use [`ECGMambaFeatureExtractor`] to get there from a raw record).
        attention_mask (`torch.Tensor` of shape `(batch_size, seq_len)`, *optional*):
            1 for real samples, 0 for padding (records padded at the end to a common length).
        output_hidden_states (`bool`, *optional*):
            Also return the embeddings and the output of every block.
        """
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        check_model_inputs(self.config, input_values, attention_mask)
        hidden_states, token_mask = self.embeddings(input_values, attention_mask)
        if token_mask is not None:
            token_mask = token_mask.contiguous()  # one copy of the strided token mask, not one per layer
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        for layer in self.layers:
            hidden_states = layer(hidden_states, token_mask)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
        token_mask = None if token_mask is None else token_mask.bool()
        return ECGMambaModelOutput(
            last_hidden_state=hidden_states,
            pooler_output=self.pool(hidden_states, token_mask),
            token_attention_mask=token_mask,
            hidden_states=all_hidden_states,
        )


class ECGMambaForSequenceClassification(ECGMambaPreTrainedModel):
    """ECGMamba with a linear head on the pooled tokens: one score per diagnosis (multi-label by default)."""

    def __init__(self, config: ECGMambaConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.ecgmamba = ECGMambaModel(config)
        self.head_dropout = nn.Dropout(config.head_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
    ) -> SequenceClassifierOutput:
        r"""
        input_values (`torch.FloatTensor` of shape `(batch_size, seq_len, num_leads)`):
            ECG samples in millivolts, see [`ECGMambaModel.forward`].
        attention_mask (`torch.Tensor` of shape `(batch_size, seq_len)`, *optional*):
            1 for real samples, 0 for padding.
        labels (`torch.Tensor`, *optional*):
            Multi-hot floats `(batch_size, num_labels)` for `"multi_label_classification"` (BCE), class indices
            `(batch_size,)` for `"single_label_classification"` (cross-entropy), targets `(batch_size, num_labels)`
            or `(batch_size,)` for `"regression"` (MSE).
        output_hidden_states (`bool`, *optional*):
            Also return the embeddings and the output of every block.
        """
        outputs = self.ecgmamba(input_values, attention_mask=attention_mask, output_hidden_states=output_hidden_states)
        logits = self.classifier(self.head_dropout(outputs.pooler_output))
        loss = None if labels is None else sequence_classification_loss(self.config, logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)


def sequence_classification_loss(config, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loss of every ECG classifier of this package, by `config.problem_type`: BCE on multi-hot labels, cross-entropy
    on class indices, or MSE; a ValueError that says what was expected when the labels do not fit."""
    problem_type = config.problem_type
    num_labels = config.num_labels
    if problem_type is None:  # transformers' convention when none is set
        if num_labels == 1:
            problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem_type = "single_label_classification"
        else:
            problem_type = "multi_label_classification"
    labels = labels.to(logits.device)
    if problem_type == "multi_label_classification":
        if tuple(labels.shape) != tuple(logits.shape):
            raise ValueError(
                f"Multi-label classification needs multi-hot labels of shape (batch, num_labels) = "
                f"{tuple(logits.shape)}, got {tuple(labels.shape)}."
            )
        return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    if problem_type == "single_label_classification":
        if labels.dim() != 1 or labels.shape[0] != logits.shape[0] or labels.is_floating_point():
            raise ValueError(
                f"Single-label classification needs integer class indices of shape (batch,) = "
                f"({logits.shape[0]},), got {labels.dtype} of shape {tuple(labels.shape)}."
            )
        return nn.functional.cross_entropy(logits, labels)
    if problem_type == "regression":
        predictions = logits.squeeze(-1) if num_labels == 1 else logits
        labels = labels.squeeze(-1) if num_labels == 1 else labels
        if tuple(labels.shape) != tuple(predictions.shape):
            raise ValueError(
                f"Regression targets must have shape {tuple(predictions.shape)}, got {tuple(labels.shape)}."
            )
        return nn.functional.mse_loss(predictions, labels.to(predictions.dtype))
    raise ValueError(f"Unknown problem_type {problem_type!r}.")


__all__ = [
    "check_model_inputs",
    "pool_tokens",
    "sequence_classification_loss",
    "ECGMambaModelOutput",
    "ECGMambaPreTrainedModel",
    "ECGMambaModel",
    "ECGMambaForSequenceClassification",
]
