"""The xresnet1d101 baseline, the strongest CNN of the PTB-XL benchmark (Strodthoff et al. 2020,
helme/ecg_ptbxl_benchmarking `code/models/xresnet1d.py`) in its benchmark configuration.

It takes `input_values` `(batch, seq_len, num_leads)` in mV, an optional `attention_mask` `(batch, seq_len)` and
`labels`, and returns a `SequenceClassifierOutput` (multi-label BCE by default), as ECGMamba does. Saved checkpoints
carry this file, `configuration_xresnet1d.py` and the ECGMamba files it imports (input checks and loss), and load
with `AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)`.
"""

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_xresnet1d import XResNet1dConfig
from .modeling_ecgmamba import check_model_inputs, sequence_classification_loss


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


class XResNet1dForSequenceClassification(PreTrainedModel):
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
    main_input_name = "input_values"
    input_modalities = "audio"
    # Without this the Trainer divides the loss by the number of processes and accumulation steps a second time.
    accepts_loss_kwargs = False

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
        check_model_inputs(self.config, input_values, attention_mask)
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
        logits = self.head(pooled)
        loss = None if labels is None else sequence_classification_loss(self.config, logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=all_hidden_states)


__all__ = ["XResNet1dForSequenceClassification"]
