"""onnxruntime against PyTorch eager: CPU latency of ECGMamba at batch 1 and 32.

    python -m benchmarks.onnx_latency                         # the paper's model (random weights), 10 s at 100 Hz
    python -m benchmarks.onnx_latency --model path/to/checkpoint --runs 20
    python -m benchmarks.onnx_latency --quick                 # tiny model, 3 runs: a smoke test of the script

Exports the model with `ecgmamba_apps.onnx_export.export_onnx` (dynamic batch and length, opset 18; the export
itself checks onnxruntime against PyTorch), then times one forward pass of a batch of 10 s windows (the feature
extractor's output; real PTB-XL records when the data folder is found, else random signals):

- onnxruntime, CPU execution provider, `--threads` intra-op threads;
- PyTorch eager under `torch.inference_mode()` with `torch.set_num_threads(--threads)` and the model's default CPU
  scan (the numba kernel); with `--torch-scan` also with the pure-PyTorch chunked scan (what a machine without
  numba runs; slow: about 10 s per batch of 32 on 2 busy cores).

Median (and fastest) of `--runs` timed runs after 2 warm-up runs, the three engines interleaved round-robin within
each run so that load changes on a shared machine hit them alike. Also prints the largest logit difference between
onnxruntime and PyTorch on the timed inputs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ecgmamba_apps.onnx_export import export_onnx, onnx_session, run_onnx
from modeling_ecgmamba import ECGMambaConfig, ECGMambaFeatureExtractor, ECGMambaForSequenceClassification
from modeling_ecgmamba.ecg_records import read_record
from modeling_ecgmamba.inference_ecgmamba import load_checkpoint

DATA_DIR = Path(os.environ.get("ECGMAMBA_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="checkpoint folder or Hub repo (default: the paper's model, random weights)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per engine and batch size (>= 10)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for every engine (default 2)")
    parser.add_argument("--quick", action="store_true", help="tiny model and 3 runs: checks that the script works")
    parser.add_argument("--torch-scan", action="store_true", help="also time PyTorch with the pure-PyTorch scan")
    parser.add_argument("--onnx", help="keep the export at this path, or reuse it if it exists (same --model only)")
    return parser.parse_args(argv)


def build_model(args):
    if args.model:
        return load_checkpoint(args.model)
    torch.manual_seed(0)
    options = dict(hidden_size=32, num_hidden_layers=2, state_size=8, ffn_size=64) if args.quick else {}
    config = ECGMambaConfig(**options)
    return ECGMambaForSequenceClassification(config).eval(), ECGMambaFeatureExtractor.from_model_config(config)


def windows(extractor, count: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """`count` model windows: real PTB-XL records if available (repeated as needed), else random signals."""
    folder = DATA_DIR / "ptb-xl" / "records100" / "00000"
    if folder.is_dir():
        records = [read_record(folder / f"{i:05d}_lr.hea") for i in range(1, min(count, 32) + 1)]
        records = [records[i % len(records)] for i in range(count)]
        features = extractor(
            [r.signal for r in records], sampling_rate=100, lead_names=records[0].lead_names, return_tensors="pt"
        )
        source = f"PTB-XL records from {folder}"
    else:
        generator = np.random.default_rng(0)
        signals = [generator.normal(0, 0.3, (extractor.window_samples, extractor.feature_size)) for _ in range(count)]
        features = extractor(signals, sampling_rate=extractor.sampling_rate, return_tensors="pt")
        source = "random signals (data folder not found)"
    return features["input_values"], features["attention_mask"], source


def main(argv=None) -> int:
    args = parse_args(argv)
    runs = 3 if args.quick else max(10, args.runs)
    torch.set_num_threads(args.threads)
    model, extractor = build_model(args)
    model = model.eval()
    parameters = sum(p.numel() for p in model.parameters())
    print(
        f"model: {args.model or 'ECGMambaConfig() defaults'} ({parameters / 1e6:.2f} M parameters), "
        f"{args.threads} threads, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )

    with tempfile.TemporaryDirectory() as folder:
        path = Path(args.onnx or Path(folder) / "model.onnx")
        if path.exists():
            print(f"reusing {path} (the logit difference below checks that it is this model's)")
        else:
            start = time.perf_counter()
            export_onnx(model, path, feature_extractor=extractor)
            print(
                f"export + onnxruntime check: {time.perf_counter() - start:.0f} s, {path.stat().st_size / 1e6:.1f} MB"
            )
        session = onnx_session(path, threads=args.threads)
        values, mask, source = windows(extractor, max(args.batch_sizes))
        print(f"inputs: {source}, windows of {values.shape[1]} samples x {values.shape[2]} leads")

        def torch_engine(backend):
            def run(v, m):
                saved = model.config.scan_backend
                model.config.scan_backend = backend
                try:
                    with torch.inference_mode():
                        return model(input_values=v, attention_mask=m).logits.numpy()
                finally:
                    model.config.scan_backend = saved

            return run

        engines = {
            "onnxruntime": lambda v, m: run_onnx(session, v, m),
            "torch (numba scan)": torch_engine("auto"),
        }
        if args.torch_scan:
            engines["torch (PyTorch scan)"] = torch_engine("torch")
        rows = []
        for batch in args.batch_sizes:
            v, m = values[:batch], mask[:batch]
            outputs = {name: engine(v, m) for name, engine in engines.items()}  # warm-up 1 (and the outputs)
            for engine in engines.values():  # warm-up 2
                engine(v, m)
            times = {name: [] for name in engines}
            for _ in range(runs):
                for name, engine in engines.items():
                    start = time.perf_counter()
                    engine(v, m)
                    times[name].append(time.perf_counter() - start)
            difference = max(float(np.abs(outputs["onnxruntime"] - outputs[name]).max()) for name in engines)
            rows.append((batch, {name: (statistics.median(t), min(t)) for name, t in times.items()}, difference))

    names = list(engines)
    print(f"\nCPU latency per forward pass, ms: median (fastest) of {runs} runs")
    print(f"{'batch':>5}  " + "  ".join(f"{name:>22}" for name in names) + "  ORT speed-up  max |logit diff|")
    for batch, stats, difference in rows:
        cells = "  ".join(f"{1e3 * stats[n][0]:>12.1f} ({1e3 * stats[n][1]:>7.1f})" for n in names)
        speedup = stats["torch (numba scan)"][0] / stats["onnxruntime"][0]
        print(f"{batch:>5}  {cells}  {speedup:>11.2f}x  {difference:>15.2e}")
    print("ORT speed-up: PyTorch eager with the default (numba) scan / onnxruntime, medians.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
