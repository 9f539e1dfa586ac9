"""`ecgmamba-predict`: diagnose ECG records with a checkpoint from the command line.

    ecgmamba-predict --model PATH_OR_REPO RECORD|FOLDER [...] [--json out.json] [--timeline t.csv] [--explain out.png]

A RECORD is a WFDB record (the `.hea`, the data file or the name without extension), a CPSC2018 `.mat` (MATLAB struct
`ECG` with `data` 12 x N in mV at 500 Hz), a `.csv` (one column per lead named in the header, an optional `time`
column; `--fs` gives the rate when there is no time column) or a `.npy` array with `--fs` and `--leads`. A FOLDER
stands for the records in it and its subfolders; each record is predicted once, however many of its files are named.

Records are read by the library's one reader (`modeling_ecgmamba.ecg_records`) and predicted by its `ECGPredictor`:
the checkpoint's feature extractor makes the windows (checks, resampling, lead order, units, sliding windows over long
records, padding and masking of short ones), a chunk of the record and a batch of windows at a time, so a 24-hour
record needs no more memory than a 10-second one; window probabilities become the record's with the aggregation and
thresholds the model was trained with (`config.window_aggregation`, `config.thresholds`; `--aggregate` and
`--threshold` override them).

Nothing is lost to one bad record: every failure (of any kind) is reported with the file and the problem and the
others go on; each result is printed and written as soon as it is complete (`--json` is a JSON document that is
valid after every record, `--timeline` a CSV that grows a record at a time), so an interrupted run keeps what it did.
Output destinations are checked before any work.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from modeling_ecgmamba.configuration_ecgmamba import WINDOW_AGGREGATIONS
from modeling_ecgmamba.ecg_records import (
    ECGDataError,
    check_sampling_rate,
    parse_lead_names,
    read_record,
    record_key,
    records_in,
)
from modeling_ecgmamba.inference_ecgmamba import ECGPredictor, RecordPrediction

EXIT_STATUS = (
    "Exit status: 0 when every record was predicted; 1 when any record failed (each is named, with its problem, in "
    "the output and at the end on stderr; the others are still predicted and written); 2 for a usage error (bad "
    "arguments, an unknown --explain-class, an output that cannot be written, a model that cannot be loaded), "
    "before any record is read."
)


def _rate(text: str) -> float:
    try:
        return check_sampling_rate(float(text), "--fs")
    except ValueError as err:
        raise argparse.ArgumentTypeError(getattr(err, "problem", f"{text!r} is not a number of Hz")) from None


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecgmamba-predict",
        description="Diagnose 12-lead ECG records with an ECGMamba checkpoint (folder or Hugging Face Hub repo).",
        epilog=EXIT_STATUS,
    )
    parser.add_argument(
        "records",
        nargs="+",
        metavar="RECORD",
        help="WFDB .hea (or data file), CPSC .mat, .csv or .npy; a folder: every record in it and its subfolders",
    )
    parser.add_argument("--model", required=True, help="checkpoint folder or Hub repo id")
    parser.add_argument(
        "--fs", type=_rate, help="sampling rate (Hz) of .csv files without a time column and of .npy files"
    )
    parser.add_argument(
        "--leads", help="column names of .npy (and header-less .csv) files: 'I,II,...,V6' or 'standard'"
    )
    parser.add_argument("--units", default="mV", help="unit of .csv/.npy samples: mV (default), uV or V")
    parser.add_argument(
        "--no-amplitude-check",
        action="store_true",
        help="accept records whose amplitude is implausible for an ECG in mV (by default they are refused: a record "
        "in uV or ADC counts, or with a header gain off by 10, would get a confident wrong diagnosis)",
    )
    parser.add_argument("--batch-size", type=_positive(int), default=32, help="windows per forward pass (default 32)")
    parser.add_argument("--device", default="auto", help="auto (default: CUDA if available), cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--aggregate",
        choices=WINDOW_AGGREGATIONS,
        help="window probabilities per record: mean or max (default: the aggregation the model was trained with)",
    )
    parser.add_argument(
        "--stride",
        type=_positive(float),
        help="sliding-window stride in seconds (default: the checkpoint's, else half a window)",
    )
    parser.add_argument(
        "--threshold", type=float, help="one threshold for every class (default: the checkpoint's, else 0.5)"
    )
    parser.add_argument(
        "--json",
        metavar="PATH",
        help="write machine-readable results to PATH ('-' for stdout): one JSON document, valid after every record",
    )
    parser.add_argument(
        "--timeline",
        metavar="CSV",
        help="write every window's probabilities over time: record, start and end (seconds), one column per class",
    )
    parser.add_argument(
        "--explain",
        metavar="PNG",
        help="draw the ECG with the attribution of the predicted class (several records: PNG_<record>.png each; a "
        "long record: 10 s around the window where the class is most probable)",
    )
    parser.add_argument("--explain-class", help="class to explain (default: the most probable diagnosis)")
    parser.add_argument(
        "--explain-method",
        default="integrated_gradients",
        choices=("integrated_gradients", "gradient_x_input"),
        help="attribution method (default integrated_gradients)",
    )
    parser.add_argument(
        "--explain-steps", type=_positive(int), default=32, help="integration steps of integrated gradients"
    )
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


# ---------------------------------------------------------------------------------------------------------- inputs


def expand_records(arguments: Sequence[str]) -> tuple[list[str | RecordPrediction], list[str]]:
    """The records to predict, in order: folders expanded to the records inside, each record once (a WFDB record
    named by its `.hea` and its `.dat` is one record). Returns `(items, skipped)`: an item is a path, or a failed
    `RecordPrediction` for a folder without records; `skipped` the arguments that repeat a record."""
    items, skipped, seen = [], [], set()
    for argument in arguments:
        path = Path(argument)
        candidates = records_in(path) if path.is_dir() else [path]
        if path.is_dir() and not candidates:
            items.append(
                RecordPrediction(
                    argument, error="a folder with no ECG record in it (looked for .hea, .mat, .csv, .tsv and .npy)"
                )
            )
        for candidate in candidates:
            key = record_key(candidate)
            if key in seen:
                skipped.append(str(candidate))
                continue
            seen.add(key)
            items.append(str(candidate))
    return items, skipped


def check_destination(path: str, what: str) -> str | None:
    """Why `path` cannot be written (its folder is created if missing), or None."""
    target = Path(path)
    if target.is_dir():
        return f"{what} {path}: is a folder"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return f"{what} {path}: cannot create its folder ({err.strerror or err})"
    if not os.access(target.parent, os.W_OK):
        return f"{what} {path}: its folder is not writable"
    return None


class ExplanationPaths:
    """`out.png` for a single record; `out_<record>.png` (numbered if names collide) when there are several."""

    def __init__(self, target: str, several: bool):
        self.target, self.several, self.used = Path(target), several, set()

    def __call__(self, name: str) -> str:
        if not self.several:
            return str(self.target)
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).stem)
        candidate, k = stem, 1
        while candidate in self.used:
            k += 1
            candidate = f"{stem}-{k}"
        self.used.add(candidate)
        return str(self.target.with_name(f"{self.target.stem}_{candidate}{self.target.suffix or '.png'}"))


# ---------------------------------------------------------------------------------------------------------- outputs


class JsonReport:
    """`--json`: `{"model": ..., "labels": ..., "records": [...], "summary": {...}}`, written a record at a time.

    In a file, the closing brackets are rewritten after each record, so the file is valid JSON whenever a record is
    complete (an interrupted run leaves the records done so far); on stdout (`-`) the document is complete at the end.
    """

    def __init__(self, path: str, head: dict):
        self.file = sys.stdout if path == "-" else open(path, "w", encoding="utf-8")  # noqa: SIM115
        self.seekable, self.count = path != "-", 0
        self.file.write(json.dumps(head, indent=2)[:-2] + ',\n  "records": [')
        self._close_brackets()

    def _close_brackets(self):
        if self.seekable:
            self.tail = self.file.tell()
            self.file.write("\n  ]\n}\n")
        self.file.flush()

    def _reopen(self):
        if self.seekable:
            self.file.seek(self.tail)
            self.file.truncate()

    def add(self, record: dict):
        self._reopen()
        self.file.write(("," if self.count else "") + "\n    " + json.dumps(record))
        self.count += 1
        self._close_brackets()

    def close(self, summary: dict):
        self._reopen()
        self.file.write("\n  ],\n  " + json.dumps({"summary": summary})[1:-1] + "\n}\n")
        self.file.flush()
        if self.seekable:
            self.file.close()


class Timeline:
    """`--timeline`: a CSV row per window, `record, start_seconds, end_seconds, <one column per class>`."""

    def __init__(self, path: str, labels: list[str]):
        self.file = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self.writer = csv.writer(self.file)
        self.writer.writerow(["record", "start_seconds", "end_seconds", *labels])
        self.file.flush()

    def add(self, result: RecordPrediction):
        for (start, end), probabilities in zip(result.window_seconds, result.window_probabilities):
            self.writer.writerow([result.name, f"{start:.2f}", f"{end:.2f}", *(f"{p:.6f}" for p in probabilities)])
        self.file.flush()

    def close(self):
        self.file.close()


# ---------------------------------------------------------------------------------------------------------- main


def keep_large_buffers_out_of_the_heap() -> None:
    """On glibc, allocate buffers over 128 KiB with mmap, always (a fixed `M_MMAP_THRESHOLD`).

    By default glibc raises that threshold after freeing a large buffer, after which the megabyte-sized buffers of
    every batch come from the heap and fragment it: predicting a 24 h record grew the process by about 8 MB per hour
    of record (`benchmarks/long_record.py`). With the threshold fixed they go back to the system when freed and the
    memory stays flat. Elsewhere (no glibc) nothing changes.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """The `ecgmamba-predict` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_large_buffers_out_of_the_heap()

    def usage_error(message: str) -> int:
        print(f"ecgmamba-predict: error: {message}", file=sys.stderr)
        return 2

    if args.explain_class and not args.explain:
        return usage_error("--explain-class needs --explain PNG")
    destinations = [(args.json, "--json"), (args.timeline, "--timeline"), (args.explain, "--explain")]
    for path, what in destinations:
        problem = path and path != "-" and check_destination(path, what)
        if problem:
            return usage_error(problem)
    items, skipped = expand_records(args.records)
    for path in skipped:
        print(f"ecgmamba-predict: note: {path} is a record already listed: predicted once", file=sys.stderr)

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
            check_amplitude=False if args.no_amplitude_check else None,
        )
    except Exception as err:  # any load failure: say what and where, exit 2
        return usage_error(f"cannot load the model {args.model!r}: {type(err).__name__}: {err}")
    labels = predictor.labels
    explain_label = None
    if args.explain_class:
        explain_label = next((label for label in labels if label.lower() == args.explain_class.lower()), None)
        if explain_label is None:
            return usage_error(f"--explain-class {args.explain_class!r} is not a class of this model: {labels}")

    head = {
        "model": str(args.model),
        "labels": labels,
        "thresholds": predictor.thresholds.tolist(),
        "threshold_note": predictor.threshold_note,
        "aggregation": predictor.aggregation,
    }
    try:
        report = JsonReport(args.json, head) if args.json else None
        timeline = Timeline(args.timeline, labels) if args.timeline else None
    except OSError as err:
        return usage_error(f"cannot write {err.filename}: {err.strerror or err}")
    human = args.json != "-"
    if human and predictor.threshold_note:
        print(f"note: {predictor.threshold_note}", flush=True)
    paths = ExplanationPaths(args.explain, len(items) > 1) if args.explain else None

    results = []
    predictions = predictor.iter_predict(
        [item for item in items if isinstance(item, str)],
        args.fs,
        args.leads,
        args.units,
        progress=args.progress,
    )
    for item in items:
        result = item if isinstance(item, RecordPrediction) else next(predictions)
        if result.ok and paths is not None:
            explain(predictor, result, paths(result.name), explain_label, args)
        results.append(result)
        if human:
            print(result.format(), flush=True)
        if report:
            report.add(result.to_dict())
        if timeline and result.ok:
            timeline.add(result)

    failed = [result for result in results if not result.ok]
    summary = {"records": len(results), "predicted": len(results) - len(failed), "failed": len(failed)}
    if report:
        report.close({**summary, "failed_records": [result.name for result in failed]})
    if timeline:
        timeline.close()
    if failed or len(results) > 1:
        print(f"{len(results)} record(s): {summary['predicted']} predicted, {len(failed)} failed", file=sys.stderr)
    for result in failed:
        print(f"failed: {result.name}: {result.error}", file=sys.stderr)
    return 1 if failed else 0


def explain(predictor: ECGPredictor, result: RecordPrediction, path: str, label: str | None, args) -> None:
    """Draw `result`'s explanation to `path`; a failure is a note on the result, never a lost result."""
    from .explain import explain_record, plot_explanation

    try:
        explanation = explain_record(
            predictor,
            read_record(result.name, args.fs, parse_lead_names(args.leads), args.units),
            label=label,
            method=args.explain_method,
            steps=args.explain_steps,
            prediction=result,
        )
        result.explanation = str(plot_explanation(explanation, path))
        result.notes.extend(explanation.notes)
    except (ImportError, ECGDataError) as err:
        result.notes.append(f"no explanation: {err}")
    except Exception as err:
        result.notes.append(f"no explanation: {type(err).__name__}: {err}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
