"""Tests of ECGMambaConfig and the ECGMamba models (CPU)."""

import ast
import inspect
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_initialised
from transformers import AutoModel, AutoModelForSequenceClassification

from modeling_ecgmamba import (
    ECGMambaConfig,
    ECGMambaFeatureExtractor,
    ECGMambaForSequenceClassification,
    ECGMambaModel,
)
from modeling_ecgmamba import modeling_ecgmamba as modeling_module
from modeling_ecgmamba.modeling_ecgmamba import ECGMambaMixer

PACKAGE_DIR = Path(modeling_module.__file__).parent


def tiny_config(**overrides) -> ECGMambaConfig:
    """A small model that still has every part of the real one."""
    options = dict(
        hidden_size=32, num_hidden_layers=2, state_size=8, ffn_size=64, hidden_dropout=0.0, head_dropout=0.0
    )
    options.update(overrides)
    return ECGMambaConfig(**options)


def make_model(cls=ECGMambaForSequenceClassification, seed=0, **overrides):
    torch.manual_seed(seed)
    return cls(tiny_config(**overrides)).eval()


def ecg_batch(batch=2, length=400, leads=12, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, leads, generator=generator) * 0.3


# ---------------------------------------------------------------------------------------------------------- config


def test_config_defaults_are_the_papers_model():
    config = ECGMambaConfig()
    assert (config.num_leads, config.sampling_rate, config.window_seconds) == (12, 100, 10.0)
    assert (config.num_hidden_layers, config.state_size, config.conv_kernel, config.expand) == (8, 16, 4, 2)
    assert config.bidirectional and config.use_encoder and config.use_ffn and config.use_layer_norm
    assert config.problem_type == "multi_label_classification"
    assert list(config.id2label.values()) == ["CD", "HYP", "MI", "NORM", "STTC"]
    assert config.label2id == {"CD": 0, "HYP": 1, "MI": 2, "NORM": 3, "STTC": 4}
    # Derived values are resolved so that config.json is explicit.
    assert config.intermediate_size == 2 * config.hidden_size
    assert config.time_step_rank == math.ceil(config.hidden_size / 16)
    assert config.window_samples == 1000


def test_config_round_trip(tmp_path):
    config = tiny_config(
        bidirectional=False, encoder_kernel_sizes=[7, 5, 5], encoder_strides=[2, 4, 1], id2label={0: "AF", 1: "RBBB"}
    )
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["time_step_rank"] == 2 and saved["intermediate_size"] == 64
    reloaded = ECGMambaConfig.from_pretrained(tmp_path)
    assert reloaded.to_dict() == config.to_dict()
    assert reloaded.id2label == {0: "AF", 1: "RBBB"} and reloaded.num_labels == 2


def test_every_config_argument_is_documented():
    docstring = ECGMambaConfig.__doc__
    arguments = [
        name for name in inspect.signature(ECGMambaConfig.__init__).parameters if name not in ("self", "kwargs")
    ]
    assert len(arguments) > 25
    undocumented = [name for name in arguments if not re.search(rf"^\s+{name} \(`", docstring, re.MULTILINE)]
    assert not undocumented, f"undocumented config arguments: {undocumented}"
    # The documented default matches the code.
    for name, parameter in inspect.signature(ECGMambaConfig.__init__).parameters.items():
        match = re.search(rf"^\s+{name} \(.*defaults to `?([^`):]+)`?\)", docstring, re.MULTILINE)
        if match and parameter.default is not inspect.Parameter.empty:
            documented, default = match.group(1).strip('"'), parameter.default
            if isinstance(default, (tuple, list)):
                default = list(default)
            if isinstance(default, float):
                assert float(documented) == default, (name, documented, default)
            else:
                assert documented in (str(default), repr(default), json.dumps(default)), (name, documented, default)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(encoder_kernel_sizes=[7, 5], encoder_strides=[2, 2, 2]), "same length"),
        (dict(encoder_kernel_sizes=[6, 5, 5, 5]), "odd"),
        (dict(pooling_type="cls"), "pooling_type"),
        (dict(scan_backend="triton"), "scan_backend"),
        (dict(hidden_size=0), "hidden_size"),
    ],
)
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        ECGMambaConfig(**overrides)


# ---------------------------------------------------------------------------------------------------------- model


def test_shapes_and_output_types():
    model = make_model()
    inputs = ecg_batch(batch=3, length=400)
    output = model(inputs, output_hidden_states=True)
    assert output.logits.shape == (3, 5)
    tokens = math.ceil(400 / math.prod(model.config.encoder_strides))
    assert len(output.hidden_states) == 1 + model.config.num_hidden_layers
    assert all(h.shape == (3, tokens, 32) for h in output.hidden_states)
    assert output.loss is None

    as_tuple = model(inputs, return_dict=False)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], output.logits)

    backbone = make_model(ECGMambaModel)
    base = backbone(inputs)
    assert base.last_hidden_state.shape == (3, tokens, 32) and base.pooler_output.shape == (3, 32)
    assert base.token_attention_mask is None


def test_init_values_of_the_ssm_parameters():
    config = tiny_config(time_step_min=0.002, time_step_max=0.05)
    model = ECGMambaForSequenceClassification(config)
    mixers = [m for m in model.modules() if isinstance(m, ECGMambaMixer)]
    assert len(mixers) == 2 * config.num_hidden_layers  # forward and backward per block
    expected_A_log = torch.log(torch.arange(1, config.state_size + 1, dtype=torch.float32)).expand(64, -1)
    for mixer in mixers:
        torch.testing.assert_close(mixer.A_log.data, expected_A_log)
        torch.testing.assert_close(mixer.D.data, torch.ones(64))
        dt = torch.nn.functional.softplus(mixer.dt_proj.bias.data)
        assert dt.min() >= 0.002 * 0.999 and dt.max() <= 0.05 * 1.001
        assert dt.std() > 0  # log-uniform, not constant
        assert mixer.A_log._no_weight_decay and mixer.D._no_weight_decay
    no_decay = set(model.no_weight_decay_parameter_names())
    assert "ecgmamba.layers.0.mixer.forward_mixer.A_log" in no_decay
    assert "ecgmamba.layers.1.mixer.backward_mixer.D" in no_decay
    assert "classifier.bias" in no_decay and "classifier.weight" not in no_decay
    assert "ecgmamba.layers.0.mixer_norm.weight" in no_decay


def intended_ecgmamba_init(config):
    """The distribution each ECGMamba parameter starts from (as `assert_initialised` reads it)."""

    def log_uniform_time_steps(bias):
        low, high = math.log(config.time_step_min), math.log(config.time_step_max)
        position = (torch.nn.functional.softplus(bias).log() - low) / (high - low)  # uniform in [0, 1]
        return position.min() > -1e-4 and position.max() < 1 + 1e-4 and abs(position.mean() - 0.5) < 0.1

    def intended(name, param):
        fan_in = param[0].numel()
        if name.endswith("A_log"):  # A = -(1..N) per channel
            return "equal", torch.log(torch.arange(1, config.state_size + 1, dtype=torch.float32))
        if name.endswith(".D"):
            return "equal", 1.0
        if name.endswith("dt_proj.weight"):
            return "uniform", config.time_step_rank**-0.5
        if name.endswith("dt_proj.bias"):  # softplus(bias) = dt, log-uniform in [time_step_min, time_step_max]
            return "check", log_uniform_time_steps
        if name.endswith(("in_proj.weight", "out_proj.weight", "x_proj.weight", "conv1d.weight")):
            return "uniform", fan_in**-0.5  # mamba-ssm: PyTorch's Kaiming-uniform default
        if "embeddings.encoder" in name and name.endswith("conv.weight"):  # Kaiming normal, fan_out, ReLU
            return "normal", math.sqrt(2 / (param.shape[0] * param.shape[2]))
        if "norm" in name:
            return "equal", 1.0 if name.endswith("weight") else 0.0
        if name.endswith("bias"):
            return "equal", 0.0
        assert name.endswith(("feed_forward.conv_in.weight", "feed_forward.conv_out.weight", "classifier.weight",
                              "lead_projection.weight")), name  # fmt: skip
        return "normal", config.initializer_range

    return intended


INIT_SIZES = dict(hidden_size=64, state_size=16, ffn_size=128)  # tensors large enough for their statistics


@pytest.mark.parametrize("overrides", [{}, {"use_encoder": False, "bidirectional": False, "use_bias": True}])
def test_every_parameter_starts_from_its_intended_init(overrides):
    """in_proj/out_proj ~0.051/0.036 at the paper's width, not transformers' 0.02 normal: transformers 5 skips
    `_init_weights` for modules without parameters of their own, so each layer carries its init."""
    config = tiny_config(**INIT_SIZES, **overrides)
    intended = intended_ecgmamba_init(config)
    for seed, build in enumerate(
        (ECGMambaForSequenceClassification, AutoModelForSequenceClassification.from_config, AutoModel.from_config)
    ):
        torch.manual_seed(seed)
        model = build(config)
        assert_initialised(model, intended)
        for norm in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)):
            assert norm.running_mean.eq(0).all() and norm.running_var.eq(1).all()
    if not overrides:  # the paper's width: the figures of the issue
        paper = ECGMambaForSequenceClassification(ECGMambaConfig())
        assert_initialised(paper, intended_ecgmamba_init(paper.config))
        mixer = paper.ecgmamba.layers[0].mixer
        assert mixer.in_proj.weight.std().item() == pytest.approx(128**-0.5 / 3**0.5, rel=0.05)  # 0.051
        assert mixer.out_proj.weight.std().item() == pytest.approx(256**-0.5 / 3**0.5, rel=0.05)  # 0.036


def _trained_checkpoint(folder) -> dict[str, torch.Tensor]:
    """A saved model whose weights look like nothing an init draws; returns its state dict."""
    torch.manual_seed(0)
    model = ECGMambaForSequenceClassification(tiny_config(**INIT_SIZES))
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor) * 3 + 7)
    model.save_pretrained(folder)
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def test_from_pretrained_loads_the_file_bitwise_and_initialises_only_what_it_lacks(tmp_path):
    from safetensors.torch import load_file, save_file

    saved = _trained_checkpoint(tmp_path / "trained")
    for load in (
        lambda folder, **kw: ECGMambaForSequenceClassification.from_pretrained(folder, **kw),
        lambda folder, **kw: AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True, **kw),
    ):
        loaded = load(tmp_path / "trained").state_dict()
        assert loaded.keys() == saved.keys()
        assert all(torch.equal(loaded[name], saved[name]) for name in saved)  # bitwise, buffers too

    intended = intended_ecgmamba_init(tiny_config(**INIT_SIZES))
    # A new label set (fine-tuning, `ignore_mismatched_sizes`): a new head, intended init; the rest from the file.
    torch.manual_seed(1)
    relabelled = ECGMambaForSequenceClassification.from_pretrained(
        tmp_path / "trained", num_labels=3, ignore_mismatched_sizes=True
    )
    assert relabelled.classifier.weight.shape == (3, 64)
    assert_initialised(
        relabelled, lambda name, p: intended(name, p) if name.startswith("classifier") else ("equal", saved[name])
    )
    # A weights file with the encoder and the mixers' own A_log and D only: every layer inside the mixers (whose
    # modules are then fully loaded) and every other layer still gets its intended init.
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_bytes((tmp_path / "trained" / "config.json").read_bytes())
    state = load_file(tmp_path / "trained" / "model.safetensors")
    kept = {k for k in state if ".embeddings." in k or k.endswith(("A_log", ".D"))}
    save_file({k: state[k] for k in kept}, partial / "model.safetensors", metadata={"format": "pt"})
    torch.manual_seed(2)
    loaded = ECGMambaForSequenceClassification.from_pretrained(partial)
    assert_initialised(loaded, lambda name, p: ("equal", saved[name]) if name in kept else intended(name, p))


@pytest.mark.parametrize("bidirectional", [True, False])
def test_late_sample_changes_early_outputs_only_when_bidirectional(bidirectional):
    # float64 and the reference scan: at initialisation the state path is weak (small dt * B * C), so its effect on
    # far-away tokens (~1e-9) would drown in float32 rounding; in float64 "no change" means exactly zero.
    model = make_model(ECGMambaModel, bidirectional=bidirectional, scan_backend="reference").double()
    inputs = ecg_batch(batch=1, length=800).double()  # 50 tokens
    changed = inputs.clone()
    changed[:, -16:] += 1.0  # the last token's samples: through the encoder, only the last few tokens see them
    with torch.no_grad():
        before = model(inputs).last_hidden_state
        after = model(changed).last_hidden_state
    difference = (after - before).abs().amax(-1)[0]
    assert difference[-1] > 1e-5  # the change reaches the model at all
    # Tokens 0..29 are beyond the reach of the encoder and the convolutions: only a backward scan can reach them.
    if bidirectional:
        assert difference[:30].min() > 1e-14
    else:
        assert difference[:30].max() == 0.0


@pytest.mark.parametrize(
    "overrides",
    [dict(), dict(pooling_type="max"), dict(bidirectional=False), dict(use_encoder=False), dict(use_ffn=False)],
    ids=["default", "max-pool", "unidirectional", "no-encoder", "no-ffn"],
)
def test_padding_leaves_the_logits_unchanged(overrides):
    model = make_model(**overrides)
    lengths = [400, 333]
    records = [ecg_batch(batch=1, length=n, seed=i)[0] for i, n in enumerate(lengths)]
    with torch.no_grad():
        alone = torch.cat([model(record[None]).logits for record in records])
        padded = torch.zeros(2, 450, 12)
        mask = torch.zeros(2, 450, dtype=torch.long)
        for i, record in enumerate(records):
            # Garbage in the padding must not matter either.
            padded[i] = torch.randn(450, 12) * 5
            padded[i, : len(record)] = record
            mask[i, : len(record)] = 1
        together = model(padded, attention_mask=mask).logits
    torch.testing.assert_close(together, alone, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(use_encoder=False),
        dict(use_ffn=False),
        dict(use_layer_norm=False),
        dict(bidirectional=False),
        dict(num_hidden_layers=1),
        dict(num_hidden_layers=4),
        dict(use_position_embeddings=False),
    ],
    ids=["no-encoder", "no-ffn", "no-layernorm", "unidirectional", "1-layer", "4-layers", "no-positions"],
)
def test_each_ablation_builds_runs_and_trains(overrides):
    model = make_model(**overrides).train()
    inputs = ecg_batch(batch=2, length=200)
    labels = torch.tensor([[1.0, 0, 0, 1, 0], [0, 1, 0, 0, 0]])
    output = model(inputs, labels=labels)
    output.loss.backward()
    assert torch.isfinite(output.logits).all() and torch.isfinite(output.loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    if overrides.get("use_layer_norm") is False:
        assert not any(isinstance(m, torch.nn.LayerNorm) for m in model.modules())
    if overrides.get("use_ffn") is False:
        assert not any("feed_forward" in name for name, _ in model.named_parameters())


def test_the_three_losses():
    inputs = ecg_batch(batch=4, length=200)
    multi = make_model()
    multi_hot = torch.tensor([[1.0, 0, 0, 0, 1], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 0, 0]])
    output = multi(inputs, labels=multi_hot)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(output.logits, multi_hot)
    torch.testing.assert_close(output.loss, expected)

    single = make_model(problem_type="single_label_classification", id2label={0: "NORM", 1: "AF", 2: "PVC"})
    classes = torch.tensor([0, 2, 1, 1])
    output = single(inputs, labels=classes)
    torch.testing.assert_close(output.loss, torch.nn.functional.cross_entropy(output.logits, classes))

    regression = make_model(problem_type="regression", num_labels=1, id2label=None)
    ages = torch.tensor([50.0, 61.0, 72.0, 33.0])
    output = regression(inputs, labels=ages)
    torch.testing.assert_close(output.loss, torch.nn.functional.mse_loss(output.logits.squeeze(-1), ages))

    with pytest.raises(ValueError, match="multi-hot labels of shape"):
        multi(inputs, labels=classes)
    with pytest.raises(ValueError, match="integer class indices"):
        single(inputs, labels=multi_hot)


def test_gradient_checkpointing_gives_the_same_gradients():
    inputs = ecg_batch(batch=2, length=200)
    labels = torch.tensor([[1.0, 0, 0, 1, 0], [0, 1, 0, 0, 0]])
    gradients = []
    for checkpointing in (False, True):
        model = make_model().train()
        if checkpointing:
            model.activation_checkpointing_enable()
            assert all(layer.gradient_checkpointing for layer in model.ecgmamba.layers)
        model(inputs, labels=labels).loss.backward()
        gradients.append({name: p.grad.clone() for name, p in model.named_parameters()})
    for name, grad in gradients[0].items():
        torch.testing.assert_close(gradients[1][name], grad, atol=1e-6, rtol=1e-5, msg=name)


def test_scan_backends_give_the_same_logits():
    inputs = ecg_batch(batch=2, length=300)
    logits = {}
    for backend in ("reference", "torch", "cpu_kernel", "parallel"):
        model = make_model(scan_backend=backend)
        with torch.no_grad():
            logits[backend] = model(inputs).logits
    for backend in ("torch", "cpu_kernel", "parallel"):
        torch.testing.assert_close(logits[backend], logits["reference"], atol=1e-5, rtol=1e-5, msg=backend)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("padded", [False, True])
def test_fused_mixer_matches_the_modules(bidirectional, padded):
    """The fused CPU mixer (one pass for both directions, the backward one walking time backwards) against the
    modules with the float64 reference scan (flipped copies): output and every parameter's and the input's gradient
    within float32 rounding."""
    mixer = make_model(ECGMambaModel, bidirectional=bidirectional, scan_backend="reference").layers[0].mixer.double()
    generator = torch.Generator().manual_seed(3)
    hidden = torch.randn(3, 37, 32, generator=generator, dtype=torch.float64)
    mask = None
    if padded:
        mask = torch.ones(3, 37, dtype=torch.float64)
        mask[1, 30:] = mask[2, 5:] = 0
    grad_out = torch.randn(3, 37, 32, generator=generator, dtype=torch.float64)
    results = []
    for fused in (False, True):
        module = mixer if not fused else mixer.float()
        leaf = (hidden if not fused else hidden.float()).clone().requires_grad_()
        if fused:
            module.config.scan_backend = "cpu_kernel"
            assert module._runs_fused(module.in_proj(leaf))
        out = module(leaf, None if mask is None else mask.to(leaf.dtype))
        grads = torch.autograd.grad(out, [leaf, *module.parameters()], grad_out.to(out.dtype))
        results.append((out.detach().double(), [g.double() for g in grads]))
    (expected, expected_grads), (got, grads) = results
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()
    names = ["input", *(name for name, _ in mixer.named_parameters())]
    for name, grad, expected_grad in zip(names, grads, expected_grads):
        assert (grad - expected_grad).abs().max() <= 1e-5 * expected_grad.abs().max(), name


@pytest.mark.parametrize("bidirectional", [True, False])
def test_fused_path_reaches_back_only_when_bidirectional(bidirectional):
    """The fused kernels in float32: changing the last token changes the mixer's output at the first 30 tokens
    through the backward scan only (the unidirectional mixer's stay exactly equal). Slow decays (A = -0.1, dt 0.05)
    carry the change across 20 tokens well above float32 rounding."""
    mixer = make_model(ECGMambaModel, bidirectional=bidirectional).layers[0].mixer
    hidden = torch.randn(1, 50, 32, generator=torch.Generator().manual_seed(0))
    assert mixer._runs_fused(mixer.in_proj(hidden))
    with torch.no_grad():
        for module in mixer.modules():
            if isinstance(module, ECGMambaMixer):
                module.dt_proj.bias.fill_(math.log(math.expm1(0.05)))
                module.A_log.fill_(math.log(0.1))
        changed = hidden.clone()
        changed[:, -1] += 1.0
        before = mixer(hidden)
        difference = (mixer(changed) - before).abs().amax(-1)[0]
    assert difference[-1] > 1e-2 * before.abs().max()
    if bidirectional:
        assert difference[:30].min() > 1e-6 * before.abs().max()  # float32 rounds at 6e-8 of it
    else:
        assert difference[:30].max() == 0.0


def test_the_fused_mixer_is_the_cpu_default(monkeypatch):
    calls = []
    original = modeling_module.fused_mixer
    monkeypatch.setattr(modeling_module, "fused_mixer", lambda *args: calls.append(1) or original(*args))
    model = make_model()
    with torch.no_grad():
        model(ecg_batch(batch=1, length=200))
    assert len(calls) == model.config.num_hidden_layers
    calls.clear()
    with torch.no_grad():
        make_model(scan_backend="torch")(ecg_batch(batch=1, length=200))  # other backends run the modules
    assert not calls


def test_input_checks_read_back_to_the_host_once(monkeypatch):
    """The per-call checks (finite samples, long enough records) cost one read of a result back to the host."""
    reads = []
    for method in ("tolist", "item", "__bool__"):
        original = getattr(torch.Tensor, method)
        monkeypatch.setattr(
            torch.Tensor, method, lambda self, *a, _f=original, _m=method: reads.append(_m) or _f(self, *a)
        )
    config = tiny_config()
    mask = torch.ones(2, 400)
    mask[1, 300:] = 0
    for attention_mask in (None, mask):
        reads.clear()
        modeling_module.check_model_inputs(config, ecg_batch(), attention_mask)
        assert reads == ["tolist"], reads


@pytest.mark.slow
def test_compiled_model_matches_eager():
    """torch.compile traces the model around the CPU kernels (custom ops with fake implementations): the same
    logits, and the same gradients of a training step."""
    model = make_model(num_hidden_layers=1)
    compiled = torch.compile(model)
    inputs, labels = ecg_batch(batch=2, length=200), torch.tensor([[1.0, 0, 0, 1, 0], [0, 1, 0, 0, 0]])
    with torch.no_grad():
        torch.testing.assert_close(compiled(inputs).logits, model(inputs).logits, atol=1e-5, rtol=1e-5)
    model.train()
    model(inputs, labels=labels).loss.backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    compiled(inputs, labels=labels).loss.backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], atol=1e-6, rtol=1e-4, msg=name)


# ---------------------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "make_inputs, message",
    [
        (lambda: torch.randn(2, 400, 8), r"12 leads in the last dimension .* got shape \(2, 400, 8\)"),
        (lambda: torch.randn(2, 12, 400), r"looks like \(batch, leads, samples\)"),
        (lambda: torch.randn(400, 12), r"3 dimensions .*input_values\[None\]"),
        (lambda: torch.randn(1, 2, 400, 12), r"3 dimensions"),
        (lambda: torch.randint(0, 5, (2, 400, 12)), r"float tensor"),
        (lambda: torch.randn(2, 20, 12), r"fewer than the model.s receptive field of 63 samples"),
    ],
    ids=["leads", "transposed", "rank-2", "rank-4", "integer", "too-short"],
)
def test_bad_input_shapes_raise_clear_errors(make_inputs, message):
    model = make_model()
    with pytest.raises(ValueError, match=message):
        model(make_inputs())


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf")])
def test_nan_or_inf_input_raises(bad_value):
    model = make_model()
    inputs = ecg_batch(batch=3)
    inputs[1, 100, 4] = bad_value
    with pytest.raises(ValueError, match=r"NaN or inf in batch item\(s\) \[1\]"):
        model(inputs)
    # NaN in the padding is ignored: it is masked out.
    mask = torch.ones(3, 400, dtype=torch.long)
    inputs[1, 100, 4] = 0.0
    inputs[2, 390:] = bad_value
    mask[2, 390:] = 0
    assert torch.isfinite(model(inputs, attention_mask=mask).logits).all()


def test_bad_attention_mask_raises():
    model = make_model()
    inputs = ecg_batch(batch=2)
    with pytest.raises(
        ValueError, match=r"attention_mask must have shape \(batch, seq_len\) = \(2, 400\).*\(2, 399\)"
    ):
        model(inputs, attention_mask=torch.ones(2, 399))
    mask = torch.ones(2, 400)
    mask[1, 20:] = 0
    with pytest.raises(ValueError, match=r"Record\(s\) \[1\] have 20 valid samples"):
        model(inputs, attention_mask=mask)


# ---------------------------------------------------------------------------------------------------------- Hub


def _relative_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}


def test_package_files_import_each_other_flat_and_relatively():
    # Hub custom code copies only `from .module import X` siblings: no sub-folders, no absolute package imports.
    for path in PACKAGE_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not any(alias.name.startswith("modeling_ecgmamba") for alias in node.names), path.name
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert not (node.module or "").startswith("modeling_ecgmamba"), f"{path.name}: absolute import"
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                assert node.module and "." not in node.module, f"{path.name}: from .{node.module}"


LOAD_SCRIPT = """
import sys, torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForSequenceClassification
checkpoint, inputs_path = sys.argv[1], sys.argv[2]
# An editable install (CI's `pip install -e .`) makes the package importable from anywhere, even with `python -P`:
# block it, so that only the checkpoint's own code can run here.
sys.modules["modeling_ecgmamba"] = None
config = AutoConfig.from_pretrained(checkpoint, trust_remote_code=True)
extractor = AutoFeatureExtractor.from_pretrained(checkpoint, trust_remote_code=True)
model = AutoModelForSequenceClassification.from_pretrained(checkpoint, trust_remote_code=True).eval()
backbone = AutoModel.from_pretrained(checkpoint, trust_remote_code=True).eval()
saved = torch.load(inputs_path)
saved["raw"] = saved["raw"].numpy()
features = extractor(saved["raw"], sampling_rate=500, lead_names=saved["lead_names"], return_tensors="pt")
with torch.no_grad():
    logits = model(**features).logits
    pooled = backbone(**features).pooler_output
torch.save({"logits": logits, "pooled": pooled, "config": type(config).__name__,
            "model": type(model).__name__, "backbone": type(backbone).__name__}, inputs_path + ".out")
"""


def test_checkpoint_loads_in_a_fresh_process_with_trust_remote_code(tmp_path):
    checkpoint = tmp_path / "checkpoint"
    model = make_model(id2label={0: "NORM", 1: "MI", 2: "STTC"})
    extractor = ECGMambaFeatureExtractor.from_model_config(model.config)
    model.save_pretrained(checkpoint)
    extractor.save_pretrained(checkpoint)

    # The folder carries every .py the model imports, transitively.
    needed, queue = set(), ["modeling_ecgmamba", "feature_extraction_ecgmamba"]
    while queue:
        name = queue.pop()
        if name not in needed:
            needed.add(name)
            queue.extend(_relative_imports(PACKAGE_DIR / f"{name}.py"))
    assert needed <= {p.stem for p in checkpoint.glob("*.py")}
    auto_map = json.loads((checkpoint / "config.json").read_text())["auto_map"]
    assert set(auto_map) >= {"AutoConfig", "AutoModel", "AutoModelForSequenceClassification"}
    assert "AutoFeatureExtractor" in json.loads((checkpoint / "preprocessor_config.json").read_text())["auto_map"]

    # A 500 Hz record with shuffled leads, as a user would have it.
    generator = np.random.default_rng(0)
    raw = generator.normal(0, 0.3, size=(3000, 12)).astype(np.float32)
    lead_names = list(extractor.lead_names)[::-1]
    inputs_path = str(tmp_path / "inputs.pt")
    torch.save({"raw": torch.from_numpy(raw), "lead_names": lead_names}, inputs_path)
    features = extractor(raw, sampling_rate=500, lead_names=lead_names, return_tensors="pt")
    with torch.no_grad():
        expected_logits = model(**features).logits
        expected_pooled = model.ecgmamba(**features).pooler_output

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    script = workdir / "load.py"
    script.write_text(LOAD_SCRIPT)
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    result = subprocess.run(
        [sys.executable, "-P", str(script), str(checkpoint), inputs_path],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = torch.load(inputs_path + ".out")
    assert loaded["config"] == "ECGMambaConfig" and loaded["model"] == "ECGMambaForSequenceClassification"
    assert loaded["backbone"] == "ECGMambaModel"
    assert torch.equal(loaded["logits"], expected_logits)
    assert torch.equal(loaded["pooled"], expected_pooled)


# ---------------------------------------------------------------------------------------------------------- real data


def test_forward_on_real_ptbxl_records(ptbxl_dir):
    wfdb = pytest.importorskip("wfdb")
    records, names = [], None
    for ecg_id in (1, 2, 3, 4):
        signal, fields = wfdb.rdsamp(str(ptbxl_dir / "records100" / "00000" / f"{ecg_id:05d}_lr"))
        records.append(signal)
        names = fields["sig_name"]
    extractor = ECGMambaFeatureExtractor()
    features = extractor(records, sampling_rate=100, lead_names=names, return_tensors="pt")
    assert features["input_values"].shape == (4, 1000, 12)
    torch.manual_seed(0)
    model = ECGMambaForSequenceClassification(ECGMambaConfig(num_hidden_layers=2)).eval()
    with torch.no_grad():
        output = model(**features, output_hidden_states=True)
    assert output.logits.shape == (4, 5)
    assert torch.isfinite(output.logits).all()
    assert output.hidden_states[-1].shape == (4, 63, 128)  # 1000 samples, 16x downsampling
