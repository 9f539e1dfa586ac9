"""Export an ECGMamba classifier to ONNX with dynamic batch and length, and check it against PyTorch.

    ecgmamba-export-onnx --model PATH_OR_REPO --output model.onnx [--check RECORD ...]

    from ecgmamba_apps.onnx_export import export_onnx
    export_onnx(model, "model.onnx")

The ONNX graph takes `input_values` float32 `(batch, length, num_leads)` in the feature extractor's output units and
`attention_mask` int64 `(batch, length)` (1 = real sample), and returns `logits` `(batch, num_labels)`; apply a
sigmoid for probabilities. Class names, thresholds, sampling rate, window and lead order are stored in the model's
metadata (`labels`, `thresholds`, `sampling_rate`, `window_samples`, `lead_names`). Preprocess records with the
checkpoint's feature extractor, as for PyTorch: its `attention_mask` is int64, as the graph takes it (the README's
onnxruntime example is run by the tests).

Exporter: `torch.onnx.export(..., dynamo=True, opset_version=18)` with `Dim.DYNAMIC` batch and length. While
exporting, the library's scan dispatch runs its loop-free form (`selective_scan_parallel`: the chunked recurrence with
the loop over chunks replaced by a masked (chunks x chunks) decay matrix, and no cumprod, which ONNX lacks), so the
graph has no length-dependent structure; nothing here changes the model or the library. The export checks
onnxruntime against the PyTorch model on the spot.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from modeling_ecgmamba.ecg_records import STANDARD_LEADS, read_record
from modeling_ecgmamba.inference_ecgmamba import ECGPredictor, resolve_aggregation, resolve_thresholds

DEFAULT_OPSET = 18
ONNX_EXTRA = ("onnx", "onnxruntime", "onnxscript")  # what `pip install 'ecgmamba[onnx]'` installs
INPUT_NAMES = ("input_values", "attention_mask")
OUTPUT_NAMES = ("logits",)


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
    thresholds = resolve_thresholds(getattr(config, "thresholds", None), labels)
    extractor_leads = getattr(feature_extractor, "lead_names", None)
    return {
        "labels": json.dumps(labels),
        "thresholds": json.dumps([float(t) for t in thresholds]),
        "sampling_rate": str(config.sampling_rate),
        "window_samples": str(config.window_samples),
        "window_aggregation": resolve_aggregation(None, config),
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
    with torch.no_grad():
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


def missing_onnx_extra() -> list[str]:
    """The packages of the `onnx` extra that do not import here."""
    missing = []
    for module in ONNX_EXTRA:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    return missing


def main(argv: Sequence[str] | None = None) -> int:
    """The `ecgmamba-export-onnx` console script."""
    args = build_parser().parse_args(argv)
    missing = missing_onnx_extra()
    if missing:
        print(
            "ecgmamba-export-onnx: needs the onnx extra: pip install 'ecgmamba[onnx]' "
            f"(missing: {', '.join(missing)})",
            file=sys.stderr,
        )
        return 2
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
    session, status = onnx_session(path), 0
    for name in args.check:
        try:
            values, mask, _, _ = predictor.prepare(read_record(name))
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


__all__ = ["LogitsOnly", "export_onnx", "main", "missing_onnx_extra", "onnx_session", "run_onnx"]
