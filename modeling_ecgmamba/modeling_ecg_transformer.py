"""The Transformer baseline: ECGMamba's conv encoder -> N post-norm self-attention blocks -> masked mean pooling ->
linear head. Same width, depth, feed-forward, post-norm and pooling as ECGMamba, so the two differ only in the token
mixer (`benchmarks.speed` and `benchmarks.accuracy` compare them).

Every model takes `input_values` `(batch, seq_len, num_leads)` in mV, an optional `attention_mask` `(batch, seq_len)`
and `labels`, and returns a `SequenceClassifierOutput` (multi-label BCE by default), as ECGMamba does. Saved
checkpoints carry this file, `configuration_ecg_transformer.py` and the ECGMamba files it imports, and load with
`AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)`.
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_ecg_transformer import ECGTransformerConfig
from .modeling_ecgmamba import (
    ECGMambaEmbeddings,
    ECGMambaFeedForward,
    check_model_inputs,
    init_named_weight,
    pool_tokens,
    sequence_classification_loss,
)


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


class ECGTransformerForSequenceClassification(PreTrainedModel):
    """ECGMamba's conv encoder -> N post-norm self-attention blocks -> masked mean pooling -> linear head."""

    config_class = ECGTransformerConfig
    config: ECGTransformerConfig
    base_model_prefix = "ecg_transformer"
    main_input_name = "input_values"
    input_modalities = "audio"
    _no_split_modules = ["ECGTransformerBlock"]
    # Without this the Trainer divides the loss by the number of processes and accumulation steps a second time.
    accepts_loss_kwargs = False

    def __init__(self, config: ECGTransformerConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.embeddings = ECGMambaEmbeddings(config)
        self.layers = nn.ModuleList(ECGTransformerBlock(config) for _ in range(config.num_hidden_layers))
        self.head_dropout = nn.Dropout(config.head_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)
        init_named_weight(module, self.config)  # the encoder convolutions: ECGMamba's init (Kaiming normal, fan_out)

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
        check_model_inputs(self.config, input_values, attention_mask)
        hidden_states, token_mask = self.embeddings(input_values, attention_mask)
        key_mask = None if token_mask is None else token_mask.bool()
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        for layer in self.layers:
            hidden_states = layer(hidden_states, key_mask)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
        pooled = pool_tokens(hidden_states, key_mask)
        logits = self.classifier(self.head_dropout(pooled))
        loss = None if labels is None else sequence_classification_loss(self.config, logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=all_hidden_states)


__all__ = ["ECGTransformerForSequenceClassification"]
