"""Shared pytest fixtures: where the real data lives, and offline Hub settings."""

import importlib.util
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Tests never touch the network: the Hub is reached only through patched boundaries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _data_root() -> Path:
    return Path(os.environ.get("ECGMAMBA_DATA_DIR", REPO_ROOT.parent / "shared" / "data")).resolve()


def require_data(path: Path, message: str) -> Path:
    """`path` if it exists; otherwise skip the test, or fail it where `ECGMAMBA_REQUIRE_DATA=1` says data must be."""
    if not path.exists():
        if os.environ.get("ECGMAMBA_REQUIRE_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder holding `ptb-xl/`, `cpsc2018/` and `cinc2020/` (env `ECGMAMBA_DATA_DIR`, default `../shared/data`)."""
    root = _data_root()
    require_data(
        root / "ptb-xl", f"real ECG data not found at {root} (set ECGMAMBA_DATA_DIR to the folder holding ptb-xl/)"
    )
    return root


@pytest.fixture(scope="session")
def ptbxl_dir(data_dir) -> Path:
    return data_dir / "ptb-xl"


def import_metric_module():
    """The `ecg_multilabel` metric's Python module itself: its functions, without `evaluate`'s wrapper."""
    from ecgmamba_training.evaluation import METRIC_PATH

    spec = importlib.util.spec_from_file_location("ecg_multilabel", METRIC_PATH / "ecg_multilabel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_initialised(model, intended) -> None:
    """Every parameter of `model` starts from the distribution `intended(name, param)` names:
    `("normal", std)`, `("uniform", bound)` (|x| <= bound), `("equal", tensor)`, or `("check", predicate)`.
    Statistics within 15% (the models are seeded; 15% tells 0.020 from 0.036 from 0.051)."""
    import torch

    for name, param in model.named_parameters():
        kind, value = intended(name, param)
        data = param.detach().float()
        if kind == "equal":
            assert torch.equal(data, torch.as_tensor(value, dtype=data.dtype).expand_as(data)), name
        elif kind == "check":
            assert value(data), name
        else:
            std = value if kind == "normal" else value / 3**0.5
            assert abs(data.std().item() / std - 1) < 0.15, (name, kind, value, data.std().item())
            assert abs(data.mean().item()) < 0.15 * std, (name, data.mean().item())
            if kind == "uniform":
                assert data.abs().max().item() <= value, (name, value)
