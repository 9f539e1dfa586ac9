"""The baseline classifiers (Transformer, xresnet1d101): outputs, losses, padding, initialisation, checkpoints, and
`ecgmamba_training.models.build_model`, which builds them for `train_hf.py --model_type`."""

import math

import pytest
import torch
from conftest import assert_initialised

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


def intended_baseline_init(model_type, config):
    """The distribution each baseline parameter starts from (as `assert_initialised` reads it)."""

    def intended(name, param):
        if "norm" in name or (model_type == "xresnet1d101" and param.dim() == 1):  # 1-D: BatchNorm
            return "equal", 1.0 if name.endswith("weight") else 0.0  # LayerNorm, BatchNorm
        if name.endswith("bias"):
            return "equal", 0.0
        if model_type == "xresnet1d101":  # the benchmark's weight_init: Kaiming normal, fan_in, every conv/linear
            return "normal", math.sqrt(2 / param[0].numel())
        if "embeddings.encoder" in name:  # ECGMamba's encoder and its init: Kaiming normal, fan_out, ReLU
            return "normal", math.sqrt(2 / (param.shape[0] * param.shape[2]))
        return "normal", config.initializer_range  # attention, feed-forward, head

    return intended


@pytest.mark.parametrize("model_type", ["transformer", "xresnet1d101"])
def test_every_baseline_parameter_starts_from_its_intended_init(model_type, tmp_path):
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForSequenceClassification

    sizes = {"transformer": {"hidden_size": 64, "ffn_size": 128, "num_hidden_layers": 2}}.get(model_type, {})
    torch.manual_seed(0)
    model = build_model(model_type, **sizes)
    intended = intended_baseline_init(model_type, model.config)
    assert_initialised(model, intended)
    torch.manual_seed(1)
    assert_initialised(AutoModelForSequenceClassification.from_config(model.config), intended)

    # A checkpoint loads bitwise; what its file lacks (here: all but the first block's weights) gets the intended init.
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor) * 3 + 7)
    model.save_pretrained(tmp_path / "trained")
    saved = model.state_dict()
    loaded = type(model).from_pretrained(tmp_path / "trained").state_dict()
    assert all(torch.equal(loaded[name], saved[name]) for name in saved)
    state = load_file(tmp_path / "trained" / "model.safetensors")
    kept = {k for k in state if k.startswith(("embeddings.encoder.0.", "stem.0."))}
    save_file({k: state[k] for k in kept}, tmp_path / "trained" / "model.safetensors", metadata={"format": "pt"})
    torch.manual_seed(2)
    partial = type(model).from_pretrained(tmp_path / "trained")
    assert_initialised(partial, lambda name, p: ("equal", saved[name]) if name in kept else intended(name, p))


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
