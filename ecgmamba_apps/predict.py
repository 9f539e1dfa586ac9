"""`ecgmamba-predict`: diagnose ECG records with a checkpoint from the command line.

    ecgmamba-predict --model PATH_OR_REPO RECORD [RECORD ...] [--json out.json] [--explain out.png]

A RECORD is a WFDB record (the `.hea`, the data file or the name without extension), a CPSC2018 `.mat` (MATLAB struct
`ECG` with `data` 12 x N in mV at 500 Hz), a `.csv` (one column per lead named in the header, an optional `time`
column; `--fs` gives the rate when there is no time column) or a `.npy` array with `--fs` and `--leads`.

Records are read by the library's one reader (`modeling_ecgmamba.ecg_records`) and predicted by its `ECGPredictor`:
the checkpoint's feature extractor makes the windows (resampling, lead order, units, sliding windows over long
records, padding and masking of short ones), and window probabilities become the record's with the aggregation and
thresholds the model was trained with (`config.window_aggregation`, `config.thresholds`; `--aggregate` and
`--threshold` override them). A bad record gets a clear message and never stops the others; the exit code is 1
when any record failed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from modeling_ecgmamba.configuration_ecgmamba import WINDOW_AGGREGATIONS
from modeling_ecgmamba.ecg_records import parse_lead_names, read_record
from modeling_ecgmamba.inference_ecgmamba import ECGPredictor, RecordPrediction


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecgmamba-predict",
        description="Diagnose 12-lead ECG records with an ECGMamba checkpoint (folder or Hugging Face Hub repo).",
        epilog="Exit status: 0 when every record was predicted, 1 when any record failed, 2 for a usage or model error.",
    )
    parser.add_argument(
        "records", nargs="+", metavar="RECORD", help="WFDB .hea (or data file), CPSC .mat, .csv or .npy"
    )
    parser.add_argument("--model", required=True, help="checkpoint folder or Hub repo id")
    parser.add_argument(
        "--fs", type=float, help="sampling rate (Hz) of .csv files without a time column and of .npy files"
    )
    parser.add_argument(
        "--leads", help="column names of .npy (and header-less .csv) files: 'I,II,...,V6' or 'standard'"
    )
    parser.add_argument("--units", default="mV", help="unit of .csv/.npy samples: mV (default), uV or V")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per forward pass (default 32)")
    parser.add_argument("--device", default="auto", help="auto (default: CUDA if available), cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--aggregate",
        choices=WINDOW_AGGREGATIONS,
        help="window probabilities per record: mean or max (default: the aggregation the model was trained with)",
    )
    parser.add_argument(
        "--stride", type=float, help="sliding-window stride in seconds (default: the checkpoint's, else half a window)"
    )
    parser.add_argument(
        "--threshold", type=float, help="one threshold for every class (default: the checkpoint's, else 0.5)"
    )
    parser.add_argument("--json", metavar="PATH", help="write machine-readable results to PATH ('-' for stdout)")
    parser.add_argument("--explain", metavar="PNG", help="draw the ECG with the attribution of the predicted class")
    parser.add_argument("--explain-class", help="class to explain (default: the most probable diagnosis)")
    parser.add_argument(
        "--explain-method",
        default="integrated_gradients",
        choices=("integrated_gradients", "gradient_x_input"),
        help="attribution method (default integrated_gradients)",
    )
    parser.add_argument("--explain-steps", type=int, default=32, help="integration steps of integrated gradients")
    parser.add_argument(
        "--no-remote-code", action="store_true", help="use the installed package, not the checkpoint's code"
    )
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="always show a progress bar"
    )
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="never show a progress bar")
    return parser


def explanation_paths(target: str, results: Sequence[RecordPrediction]) -> list[str | None]:
    """`out.png` for a single record; `out_<record>.png` per record (numbered if names collide) otherwise."""
    target_path = Path(target)
    ok = [r for r in results if r.ok]
    if len(ok) <= 1:
        return [str(target_path) if r.ok else None for r in results]
    paths, used = [], set()
    for result in results:
        if not result.ok:
            paths.append(None)
            continue
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(result.name).stem)
        candidate, k = stem, 1
        while candidate in used:
            k += 1
            candidate = f"{stem}-{k}"
        used.add(candidate)
        paths.append(str(target_path.with_name(f"{target_path.stem}_{candidate}{target_path.suffix or '.png'}")))
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """The `ecgmamba-predict` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        predictor = ECGPredictor.from_pretrained(
            args.model,
            trust_remote_code=not args.no_remote_code,
            hub_kwargs={"revision": args.revision} if args.revision else None,
            device=args.device,
            batch_size=args.batch_size,
            thresholds=args.threshold,
            aggregation=args.aggregate,
            window_stride_seconds=args.stride,
        )
    except Exception as err:  # any load failure: say what and where, exit 2
        print(f"ecgmamba-predict: cannot load the model {args.model!r}: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    results = predictor.predict(args.records, args.fs, args.leads, args.units, progress=args.progress)

    if args.explain:
        from .explain import explain_record, plot_explanation

        for result, path in zip(results, explanation_paths(args.explain, results)):
            if path is None:
                continue
            try:
                explanation = explain_record(
                    predictor,
                    read_record(result.name, args.fs, parse_lead_names(args.leads), args.units),
                    label=args.explain_class,
                    method=args.explain_method,
                    steps=args.explain_steps,
                )
                result.explanation = str(plot_explanation(explanation, path))
                result.notes.extend(explanation.notes)
            except (ImportError, ValueError) as err:
                result.notes.append(f"no explanation: {err}")

    document = {
        "model": str(args.model),
        "labels": predictor.labels,
        "thresholds": predictor.thresholds.tolist(),
        "aggregation": predictor.aggregation,
        "records": [result.to_dict() for result in results],
    }
    if args.json == "-":
        print(json.dumps(document, indent=2))
    else:
        print("\n".join(result.format() for result in results))
        if args.json:
            Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    failed = sum(not result.ok for result in results)
    if failed or len(results) > 1:
        print(f"{len(results)} record(s): {len(results) - failed} predicted, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
