"""Export an ECGMamba classifier to ONNX with dynamic batch and length, and check it against PyTorch.

    ecgmamba-export-onnx --model PATH_OR_REPO --output model.onnx [--check RECORD ...]

    from modeling_ecgmamba.onnx_export import export_onnx
    export_onnx(model, "model.onnx")

The ONNX graph takes `input_values` float32 `(batch, length, num_leads)` in the feature extractor's output units and
`attention_mask` int64 `(batch, length)` (1 = real sample), and returns `logits` `(batch, num_labels)`; apply a
sigmoid for probabilities. Class names, thresholds, sampling rate, window and lead order are stored in the model's
metadata (`labels`, `thresholds`, `sampling_rate`, `window_samples`, `lead_names`). Preprocess records with the
checkpoint's feature extractor, as for PyTorch.

Exporter: `torch.onnx.export(..., dynamo=True, opset_version=18)` with `Dim.DYNAMIC` batch and length. The model's
selective scan runs its pure-PyTorch path while exporting, but that path loops over chunks of the sequence in Python
(`for start in range(0, length, chunk)` in `selective_scan_torch`), which ties the graph to the example length.
During export the scan is therefore swapped for [`parallel_selective_scan`]: the same chunked recurrence with the
loop over chunks replaced by a masked (chunks x chunks) decay matrix, so the graph has no length-dependent
structure (no cumprod either, which ONNX lacks). Both compute exactly the recurrence of `selective_scan_ref`; the
export checks onnxruntime against the PyTorch model on the spot.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .feature_extraction_ecgmamba import STANDARD_LEADS

DEFAULT_OPSET = 18
INPUT_NAMES = ("input_values", "attention_mask")
OUTPUT_NAMES = ("logits",)
_CHUNK = 8  # steps per chunk: with log-decays clamped at -20 per step, exponents stay within +-80 (float32-safe)
_LOG_DECAY_MIN = -20.0


def parallel_selective_scan(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, chunk_size=_CHUNK
):
    """Selective scan without a Python loop over time or chunks: exportable with a dynamic length.

    Same semantics and shapes as `selective_scan_ref` (u, delta, z: (B D L); A: (D N); B, C: (B N L); D,
    delta_bias: (D)). Two levels: inside chunks of `chunk_size` steps, states from a zero start by cumulative sums
    around the chunk's mid-point (as `selective_scan_torch` does); across chunks, the state entering chunk c is
    sum_{c' < c} exp(G_{c-1} - G_{c'}) h_{c'} (G: cumulative log-decay at chunk ends), a masked matrix product whose
    exponents are all <= 0. Memory grows as (L / chunk)^2 * D * N per record: fine for 10-30 s windows.
    """
    dtype_in = u.dtype
    compute = torch.float64 if u.dtype == torch.float64 else torch.float32
    u, delta, A, B, C = (t.to(compute) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute)[..., None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, length = u.shape
    nstate, size = A.shape[1], int(chunk_size)
    chunks = (length + size - 1) // size
    pad = chunks * size - length  # padded steps: dt = 0 (no decay) and no input, so the state passes through

    def split(x, channels):  # (B X L) -> (B X chunks T)
        return F.pad(x, (0, pad)).reshape(batch, channels, chunks, size)

    dt, x = split(delta, dim), split(u, dim)
    b_in = split(B, nstate).permute(0, 2, 3, 1).unsqueeze(1)  # (B 1 chunks T N)
    c_out = split(C, nstate).permute(0, 2, 3, 1).unsqueeze(1)
    log_decay = (dt.unsqueeze(-1) * A[:, None, None, :]).clamp(min=_LOG_DECAY_MIN)  # (B D chunks T N)
    s = torch.cumsum(log_decay, dim=3)
    mid = 0.5 * s[:, :, :, -1:, :]
    inflow = (dt * x).unsqueeze(-1) * b_in
    local = torch.exp(s - mid) * torch.cumsum(torch.exp(mid - s) * inflow, dim=3)  # states from a zero start
    ends = torch.cumsum(s[:, :, :, -1, :], dim=2).transpose(2, 3)  # (B D N chunks): G_c
    gaps = ends.unsqueeze(-1) - ends.unsqueeze(-2)  # [c, c'] = G_c - G_c'
    index = torch.arange(chunks, device=u.device)
    causal = index[:, None] >= index[None, :]
    decay = torch.exp(torch.where(causal, gaps, torch.full_like(gaps, float("-inf"))))
    carried = (decay @ local[:, :, :, -1, :].transpose(2, 3).unsqueeze(-1)).squeeze(-1)  # state at chunk ends
    entering = F.pad(carried, (1, 0))[..., :-1].transpose(2, 3)  # (B D chunks N): state entering each chunk
    h = local + torch.exp(s) * entering.unsqueeze(3)
    y = (h * c_out).sum(-1).reshape(batch, dim, chunks * size)[:, :, :length]
    if D is not None:
        y = y + u * D.to(compute)[:, None]
    if z is not None:
        y = y * F.silu(z.to(compute))
    return y.to(dtype_in)


def _scan_modules(model) -> list:
    """The selective-scan modules the model's code calls (the package's, or a checkpoint's remote-code copy)."""
    found = {}
    for module in model.modules():
        owner = sys.modules.get(type(module).__module__)
        scan = getattr(owner, "selective_scan", None)
        scan_module = sys.modules.get(getattr(scan, "__module__", ""), None)
        if scan_module is not None and isinstance(getattr(scan_module, "_IMPLS", None), dict):
            found[scan_module.__name__] = scan_module
    return list(found.values())


@contextlib.contextmanager
def export_friendly_scan(model):
    """While exporting: the model's scan backend is "torch", and "torch" means [`parallel_selective_scan`]."""
    modules = _scan_modules(model)
    if not modules:
        raise RuntimeError(
            "cannot find the selective scan of this model (no module with `selective_scan` and `_IMPLS`): "
            "its code differs from modeling_ecgmamba's; export it with torch.onnx.export directly"
        )
    saved_backend = model.config.scan_backend
    saved_impls = [module._IMPLS["torch"] for module in modules]
    model.config.scan_backend = "torch"
    for module in modules:
        module._IMPLS["torch"] = parallel_selective_scan
    try:
        yield
    finally:
        model.config.scan_backend = saved_backend
        for module, impl in zip(modules, saved_impls):
            module._IMPLS["torch"] = impl


class LogitsOnly(nn.Module):
    """`(input_values, attention_mask) -> logits`: the signature the ONNX graph gets."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_values, attention_mask):
        return self.model(input_values=input_values, attention_mask=attention_mask).logits


def _metadata(model, feature_extractor=None) -> dict[str, str]:
    config = model.config
    labels = [str(config.id2label[i]) for i in range(config.num_labels)]
    thresholds = getattr(config, "thresholds", None) or [0.5] * len(labels)
    extractor_leads = getattr(feature_extractor, "lead_names", None)
    return {
        "labels": json.dumps(labels),
        "thresholds": json.dumps([float(t) for t in thresholds]),
        "sampling_rate": str(config.sampling_rate),
        "window_samples": str(config.window_samples),
        "lead_names": json.dumps(list(extractor_leads or STANDARD_LEADS)),
        "problem_type": str(config.problem_type),
        "inputs": "input_values float32 (batch, length, leads) from the feature extractor; attention_mask int64 (batch, length)",
    }


def onnx_session(path, threads: int | None = None):
    """An onnxruntime CPU session (`threads` intra-op threads; None: onnxruntime's default)."""
    try:
        import onnxruntime as ort
    except ImportError as err:  # the `onnx` extra
        raise ImportError("Running ONNX models needs onnxruntime: pip install 'ecgmamba[onnx]'") from err
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session, input_values, attention_mask=None) -> np.ndarray:
    """Logits from an onnxruntime session for model-ready inputs (tensors or arrays)."""
    values = np.asarray(input_values.detach().cpu() if hasattr(input_values, "detach") else input_values, np.float32)
    if attention_mask is None:
        mask = np.ones(values.shape[:2], dtype=np.int64)
    else:
        mask = np.asarray(attention_mask.detach().cpu() if hasattr(attention_mask, "detach") else attention_mask)
    return session.run(None, {"input_values": values, "attention_mask": mask.astype(np.int64)})[0]


def _check_inputs(config, length: int, seed: int = 0):
    """Two checks that differ from the export example in batch size, length and padding."""
    generator = torch.Generator().manual_seed(seed)
    leads = config.num_leads
    first = (
        torch.randn(3, length + 37, leads, generator=generator) * 0.3,
        torch.ones(3, length + 37, dtype=torch.long),
    )
    first[1][1, length // 2 :] = 0
    short = max(64, length // 3)
    second = (torch.randn(1, short, leads, generator=generator) * 0.3, torch.ones(1, short, dtype=torch.long))
    return [first, second]


def max_logit_difference(session, model, input_values, attention_mask) -> float:
    """max |onnxruntime - PyTorch| over the logits of a batch (the PyTorch model runs its own default scan)."""
    with torch.no_grad():
        expected = model(input_values=input_values, attention_mask=attention_mask).logits.float().numpy()
    return float(np.abs(run_onnx(session, input_values, attention_mask) - expected).max())


def export_onnx(
    model,
    output,
    feature_extractor=None,
    opset_version: int = DEFAULT_OPSET,
    example_length: int | None = None,
    optimize: bool = True,
    check: bool = True,
    atol: float = 1e-4,
) -> Path:
    """Export `model` (an `ECGMambaForSequenceClassification`) to `output` with dynamic batch and length.

    With `check=True` (default) onnxruntime runs the saved file on inputs of other batch sizes and lengths (with
    padding) and must match the PyTorch logits within `atol`, else `AssertionError`. Returns the path.
    """
    model = model.eval().to("cpu")
    config = model.config
    length = int(example_length or config.window_samples)
    generator = torch.Generator().manual_seed(0)
    example = (
        torch.randn(2, length, config.num_leads, generator=generator) * 0.3,
        torch.ones(2, length, dtype=torch.long),
    )
    dynamic = {name: {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC} for name in INPUT_NAMES}
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with export_friendly_scan(model), torch.no_grad():
        program = torch.onnx.export(
            LogitsOnly(model).eval(),
            example,
            dynamo=True,
            opset_version=opset_version,
            dynamic_shapes=dynamic,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            optimize=optimize,
            verbose=False,
        )
    program.model.metadata_props.update(_metadata(model, feature_extractor))
    program.save(str(output))
    if check:
        session = onnx_session(output)
        for values, mask in [example, *_check_inputs(config, length)]:
            difference = max_logit_difference(session, model, values, mask)
            if not difference <= atol:
                raise AssertionError(
                    f"onnxruntime differs from PyTorch by {difference:.3g} (> {atol}) on inputs {tuple(values.shape)}"
                )
    return output


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecgmamba-export-onnx",
        description="Export an ECGMamba checkpoint to ONNX (dynamic batch and length) and check it with onnxruntime.",
    )
    parser.add_argument("--model", required=True, help="checkpoint folder or Hub repo id")
    parser.add_argument("--output", required=True, help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--length", type=int, help="example length in samples (default: the model's window)")
    parser.add_argument("--no-optimize", action="store_true", help="skip the ONNX graph optimisation")
    parser.add_argument(
        "--check", nargs="*", metavar="RECORD", default=[], help="records to compare ONNX and PyTorch on"
    )
    parser.add_argument("--atol", type=float, default=1e-4, help="largest accepted logit difference (default 1e-4)")
    parser.add_argument(
        "--no-remote-code", action="store_true", help="use the installed package, not the checkpoint's code"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The `ecgmamba-export-onnx` console script."""
    from .predict import ECGPredictor

    args = build_parser().parse_args(argv)
    try:
        predictor = ECGPredictor.from_pretrained(args.model, trust_remote_code=not args.no_remote_code, device="cpu")
    except Exception as err:
        print(
            f"ecgmamba-export-onnx: cannot load the model {args.model!r}: {type(err).__name__}: {err}", file=sys.stderr
        )
        return 2
    path = export_onnx(
        predictor.model,
        args.output,
        feature_extractor=predictor.feature_extractor,
        opset_version=args.opset,
        example_length=args.length,
        optimize=not args.no_optimize,
        atol=args.atol,
    )
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): dynamic batch and length, opset {args.opset}")
    if not args.check:
        return 0
    from .predict import read_record

    session, status = onnx_session(path), 0
    for name in args.check:
        try:
            values, mask, _ = predictor.prepare(read_record(name))
        except ValueError as err:
            print(f"{name}: not checked: {err}", file=sys.stderr)
            status = 1
            continue
        difference = max_logit_difference(session, predictor.model, values, mask)
        verdict = "ok" if difference <= args.atol else "MISMATCH"
        print(f"{name}: {len(values)} window(s), max |onnxruntime - PyTorch| logit = {difference:.2e}  {verdict}")
        status = status or int(difference > args.atol)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = [
    "LogitsOnly",
    "export_friendly_scan",
    "export_onnx",
    "main",
    "onnx_session",
    "parallel_selective_scan",
    "run_onnx",
]
