"""The speed benchmark's smoke run (python -m benchmarks.speed --quick) and its FLOP and device accounting."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import speed
from ecgmamba_training.models import build_model

pytestmark = pytest.mark.slow  # a benchmark's smoke run: deselect with -m 'not slow'

REPO_ROOT = Path(__file__).resolve().parents[1]

SMALL = {
    "ecgmamba": {"hidden_size": 32, "num_hidden_layers": 2, "ffn_size": 64},
    "transformer": {"hidden_size": 32, "num_hidden_layers": 2, "ffn_size": 64},
    "xresnet1d101": {"layers": [1, 1, 1, 1]},
}


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    """One `speed.py --quick --profile --before REPO_ROOT` run in a subprocess (as a user runs it): this checkout
    serves as the "before" checkout too, so its columns must give the same logits."""
    path = tmp_path_factory.mktemp("speed") / "quick.json"
    options = ["--quick", "--profile", "--profile_reps", "1", "--before", str(REPO_ROOT), "--json", str(path)]
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "speed.py"), *options],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(path.read_text()), proc.stdout


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_quick_run_reports_every_model_with_positive_figures(quick_report):
    report, stdout = quick_report
    assert set(report["models"]) == set(speed.MODELS) | {f"{name} before" for name in speed.MODELS}
    for name, entry in report["models"].items():
        assert _positive(entry["params"]), name
        assert _positive(entry["gflops"]["1000"]), name
        assert {case for case in entry["cases"]} == {"latency bs1 10 s", "throughput bs2 10 s", "train bs2 10 s"}
        for label, case in entry["cases"].items():
            assert case["status"] == "ok", (name, label, case)
            assert _positive(case["median_s"]) and case["reps"] >= 1, (name, label, case)
            if not name.endswith(" before"):  # memory is measured for this checkout's models
                # A forward at batch 1 or 2 needs well under a megabyte, which the resident-set growth may not show
                # (pages the allocator reuses: 0.0 once in a clean-clone run); a training step's megabytes of
                # activations always do.
                peak = case["peak_mb"]
                assert isinstance(peak, (int, float)) and math.isfinite(peak) and peak >= 0, (name, label, case)
                assert _positive(peak) or not label.startswith("train"), (name, label, case)
    assert report["models"]["ecgmamba"]["scan_backend"] in ("cpu_kernel", "torch")
    assert "GFLOPs / record 10 s" in stdout and "fewer FLOPs than xresnet1d101" in stdout


def test_quick_run_checks_the_before_columns_and_profiles_every_model(quick_report):
    report, stdout = quick_report
    assert report["meta"]["before"].startswith(str(REPO_ROOT))
    for name in speed.MODELS:
        assert report["models"][f"{name} before"]["logits_max_abs_diff"] == 0.0  # the same code, the same weights
        assert f"MET    {name} before: logits within 1e-5" in stdout
    for label in ("latency bs1 10 s", "throughput bs2 10 s"):
        for name, parts in report["profile"][label].items():
            assert _positive(parts["total"]), (label, name)
            timed = [parts.get(part, 0.0) for part in ("encoder", "mixer", "FFN", "norms", "residual blocks")]
            assert sum(timed) <= parts["total"] * 1.01, (label, name, parts)
        mamba = report["profile"][label]["ecgmamba"]
        assert 0 < mamba["scan / attention core"] < mamba["mixer"]  # the fused kernel's scan, inside the mixer
        assert report["profile"][label]["transformer"]["scan / attention core"] > 0  # scaled_dot_product_attention
    assert "time per component" in stdout


def test_flop_count_includes_the_selective_scan():
    from torch.utils.flop_counter import FlopCounterMode

    config = dict(SMALL["ecgmamba"], state_size=8)
    model = build_model("ecgmamba", **config).eval()
    counter = FlopCounterMode(display=False)
    with speed.analytic_flop_hooks([]), counter, torch.no_grad():
        model(torch.randn(1, 1000, 12))
    tokens, channels = 1000, 2 * config["hidden_size"]
    for stride in model.config.encoder_strides:  # "same"-padded convolutions: ceil(length / stride) each
        tokens = -(-tokens // stride)
    assert tokens == 63
    scan = (
        2
        * config["num_hidden_layers"]
        * channels
        * tokens
        * (speed.SCAN_FLOPS_PER_STATE * 8 + speed.SCAN_FLOPS_PER_STEP)
    )
    assert speed.count_flops(model, 1000) == counter.get_total_flops() + scan
    assert counter.get_total_flops() > 0


def test_cuda_code_paths_with_a_fake_device(monkeypatch):
    """The CUDA branches of speed.py (synchronisation, allocator peak) run here with torch.cuda faked."""
    from types import SimpleNamespace

    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append("synchronize"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 1 << 20)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 5 << 20)
    fake_cuda = SimpleNamespace(type="cuda")
    model = build_model("transformer", **SMALL["transformer"])
    case = speed.Case("train", 1000, 2)
    with speed.PeakMemory(fake_cuda) as peak:
        seconds = speed.run_case(model, case, *speed.make_inputs(case, torch.device("cpu")), fake_cuda, "none")
    assert peak.peak_mb == 4 and "cuda" in peak.method and seconds > 0
    assert calls.count("reset") == 1 and calls.count("synchronize") >= 3
    assert speed.is_oom(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
