"""The baseline classifiers (Transformer, xresnet1d101): outputs, losses, padding, initialisation, checkpoints, and
`ecgmamba_training.models.build_model`, which builds them for `train_hf.py --model_type`."""

import math

import pytest
import torch

from ecgmamba_training.models import MODEL_TYPES, build_model
from modeling_ecgmamba import (
    ECGMambaForSequenceClassification,
    ECGTransformerForSequenceClassification,
    XResNet1dForSequenceClassification,
)
from modeling_ecgmamba.modeling_ecg_transformer import ECGTransformerAttention

SMALL = {
    "ecgmamba": {"hidden_size": 32, "num_hidden_layers": 2, "ffn_size": 64},
    "transformer": {"hidden_size": 32, "num_hidden_layers": 2, "ffn_size": 64},
    "xresnet1d101": {"layers": [1, 1, 1, 1]},
}


@pytest.mark.parametrize("model_type", sorted(MODEL_TYPES))
def test_build_model_every_type(model_type):
    id2label = {0: "AF", 1: "NORM", 2: "PVC"}
    model = build_model(model_type, id2label=id2label, **SMALL[model_type])
    assert isinstance(model, MODEL_TYPES[model_type][1])
    assert model.config.num_labels == 3 and model.config.id2label == id2label
    assert model.config.label2id == {"AF": 0, "NORM": 1, "PVC": 2}
    assert model.main_input_name == "input_values" and model.accepts_loss_kwargs is False
    unnamed = build_model(model_type, num_labels=7, **SMALL[model_type])
    assert unnamed.config.num_labels == 7
    default = build_model(model_type, **SMALL[model_type])
    assert default.config.num_labels == 5 and default.config.problem_type == "multi_label_classification"


def test_build_model_rejects_bad_arguments():
    with pytest.raises(ValueError, match="Unknown model_type"):
        build_model("lstm")
    with pytest.raises(ValueError, match="disagrees"):
        build_model("transformer", num_labels=2, id2label={0: "a", 1: "b", 2: "c"})
    assert build_model("ecgmamba", hidden_size=64).config.hidden_size == 64


@pytest.mark.parametrize("model_type", ["transformer", "xresnet1d101"])
def test_baseline_outputs_and_losses(model_type):
    torch.manual_seed(0)
    model = build_model(model_type, **SMALL[model_type])
    x = torch.randn(3, 1000, 12)
    labels = torch.tensor([[1.0, 0, 0, 1, 0], [0, 0, 0, 0, 0], [0, 1, 1, 0, 0]])
    out = model(x, labels=labels)
    assert out.logits.shape == (3, 5)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, labels)
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert model(x).loss is None
    single = build_model(model_type, problem_type="single_label_classification", **SMALL[model_type])
    assert single(x, labels=torch.tensor([0, 4, 2])).loss.ndim == 0
    with pytest.raises(ValueError, match="leads"):
        model(torch.randn(2, 12, 1000))
    hidden = model.eval()(x, output_hidden_states=True).hidden_states
    assert hidden is not None and len(hidden) > 1


@pytest.mark.parametrize("model_type", ["transformer", "xresnet1d101"])
def test_baseline_checkpoint_round_trip(model_type, tmp_path):
    from transformers import AutoModelForSequenceClassification

    model = build_model(model_type, id2label={0: "AF", 1: "NORM"}, **SMALL[model_type]).eval()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model) and loaded.config.id2label == {0: "AF", 1: "NORM"}
    x = torch.randn(2, 1000, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, model(x).logits)


@pytest.mark.parametrize("real", [600, 603])
def test_transformer_padding_does_not_change_logits(real):
    torch.manual_seed(0)
    model = build_model("transformer", **SMALL["transformer"]).eval()
    record = torch.randn(1, real, 12)
    padded = torch.cat([record, 1e3 * torch.randn(1, 1000 - real, 12)], dim=1)  # garbage padding
    padded[0, -5:, 0] = float("nan")
    mask = torch.zeros(1, 1000, dtype=torch.long)
    mask[:, :real] = 1
    with torch.no_grad():
        alone = model(record).logits
        batched = model(torch.cat([padded, torch.randn(1, 1000, 12)]), torch.cat([mask, torch.ones_like(mask)])).logits
    torch.testing.assert_close(batched[:1], alone, atol=1e-5, rtol=1e-5)


def test_transformer_attends_across_the_record():
    attention = ECGTransformerAttention(build_model("transformer", **SMALL["transformer"]).config).eval()
    x = torch.randn(1, 125, 32)
    changed = x.clone()
    changed[:, -1] += 1.0
    mask = torch.ones(1, 125, dtype=torch.bool)
    mask[:, -1] = False
    with torch.no_grad():
        assert not torch.allclose(attention(x)[:, 0], attention(changed)[:, 0])  # token 0 sees the last token
        torch.testing.assert_close(attention(x, mask)[:, 0], attention(changed, mask)[:, 0])  # unless masked


def test_baseline_initialisation():
    transformer = build_model("transformer")
    conv = transformer.embeddings.encoder[0].conv.weight
    expected = math.sqrt(2 / (conv.shape[0] * conv.shape[2]))  # Kaiming normal, fan_out, ReLU
    assert abs(conv.std().item() / expected - 1) < 0.1
    xresnet = build_model("xresnet1d101")
    stem = xresnet.stem[0][0].weight  # Kaiming normal, fan_in, as the benchmark's weight_init
    assert abs(stem.std().item() / math.sqrt(2 / (stem.shape[1] * stem.shape[2])) - 1) < 0.1
    assert all(m.weight.eq(1).all() for m in xresnet.modules() if isinstance(m, torch.nn.BatchNorm1d))


def test_xresnet1d101_is_the_benchmark_configuration():
    model = build_model("xresnet1d101")
    # helme/ecg_ptbxl_benchmarking xresnet1d101(num_classes=5, input_channels=12, kernel_size=5, ps_head=0.5,
    # lin_ftrs_head=[128]) has exactly 1,872,261 parameters (1,880,775 with 71 classes): "about 1.8 M".
    assert sum(p.numel() for p in model.parameters()) == 1_872_261
    assert sum(p.numel() for p in build_model("xresnet1d101", num_labels=71).parameters()) == 1_880_775
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv1d)]
    assert len(convs) == 3 + 3 * 33 + 1  # stem, 3 per bottleneck block, 1 identity projection (64 -> 256 channels)
    assert isinstance(model, XResNet1dForSequenceClassification)
    assert model(torch.randn(2, 250, 12)).logits.shape == (2, 5)  # the benchmark's 2.5 s windows work too


def test_transformer_reuses_the_ecgmamba_encoder_and_width():
    transformer = build_model("transformer")
    mamba = build_model("ecgmamba")
    assert isinstance(transformer, ECGTransformerForSequenceClassification)
    assert isinstance(mamba, ECGMambaForSequenceClassification)
    assert type(transformer.embeddings) is type(mamba.ecgmamba.embeddings)
    assert len(transformer.layers) == len(mamba.ecgmamba.layers)
    assert transformer.config.hidden_size == mamba.config.hidden_size
    assert transformer.config.ffn_size == mamba.config.ffn_size
