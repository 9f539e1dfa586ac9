"""Long records through `ecgmamba-predict`: peak memory, wall time and real-time factor by format and length.

    python -m benchmarks.long_record                                   # 1 h, WFDB and CSV, this tree's code
    python -m benchmarks.long_record --hours 1 24 --before c97f921     # and the code of another commit, side by side
    python -m benchmarks.long_record --tiny --hours 1 24 --formats wfdb  # a tiny model: the reading path alone
    python -m benchmarks.long_record --quick                           # 2 min records, tiny model: a smoke run

On a shared machine the wall time follows the load; the CPU time of the process much less so, and it is what shows
whether the time is linear in the record's length.

Records are built by tiling a real 10 s, 12-lead, 500 Hz PTB-XL record (ecg_id 1, from $ECGMAMBA_DATA_DIR) to the
length asked for, as WFDB (format 16, gain 1000/mV, with checksums) and as CSV (one column per lead in mV, three
decimals; no time column, `--fs 500`). The model is the default ECGMamba (the paper's configuration, random
weights: the timing does not depend on the weights; `--quick`: a tiny one), saved as a checkpoint with its feature
extractor.

Each run is a fresh process, `python -m ecgmamba_apps.predict --model CKPT RECORD --json OUT --device cpu`, with
`PYTHONPATH` set to the code measured; its peak resident memory comes from `wait4` (the kernel's maxrss of that
process), its CPU time (user + system) from the same call, and a watchdog kills it when its resident memory passes
`--rss-limit-gb` (reported as killed, with the memory reached). A 10 s record is predicted first by each code tree, to warm the numba cache and to show the
fixed cost (Python, PyTorch, the model). `--before REV` extracts that commit with `git archive` (nothing in the
repository changes) and measures its code the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("ECGMAMBA_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
SOURCE_RECORD = Path("ptb-xl") / "records500" / "00000" / "00001_hr.hea"
FS = 500


def build_checkpoint(folder: Path, tiny: bool = False) -> Path:
    from modeling_ecgmamba import ECGMambaConfig, ECGMambaFeatureExtractor, ECGMambaForSequenceClassification

    size = dict(hidden_size=16, num_hidden_layers=1, state_size=4, ffn_size=32) if tiny else {}
    config = ECGMambaConfig(num_labels=5, **size)
    ECGMambaForSequenceClassification(config).eval().save_pretrained(folder)
    ECGMambaFeatureExtractor.from_model_config(config).save_pretrained(folder)
    return folder


def source_block() -> tuple[np.ndarray, list[str]]:
    """The real record to tile: its digital samples (gain 1000/mV) and lead names."""
    from modeling_ecgmamba.ecg_records import read_record

    record = read_record(DATA_DIR / SOURCE_RECORD)
    return np.round(record.signal * 1000).astype(np.int16), record.lead_names


def write_wfdb(folder: Path, name: str, block: np.ndarray, leads: list[str], tiles: int) -> Path:
    with open(folder / f"{name}.dat", "wb") as file:
        data = block.astype("<i2").tobytes()
        for _ in range(tiles):
            file.write(data)
    checksums = (block.astype(np.int64).sum(0) * tiles) % 65536
    lines = [f"{name} {len(leads)} {FS} {len(block) * tiles}"]
    lines += [f"{name}.dat 16 1000(0)/mV 16 0 {block[0, j]} {checksums[j]} 0 {lead}" for j, lead in enumerate(leads)]
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")
    return folder / f"{name}.hea"


def write_csv(folder: Path, name: str, block: np.ndarray, leads: list[str], tiles: int) -> Path:
    text = "".join(",".join(f"{v / 1000:.3f}" for v in row) + "\n" for row in block)
    with open(folder / f"{name}.csv", "w") as file:
        file.write(",".join(leads) + "\n")
        for _ in range(tiles):
            file.write(text)
    return folder / f"{name}.csv"


def peak_rss_of(pid: int) -> int:
    """Resident memory (kB) of a running process, 0 if unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def predict(code: Path, checkpoint: Path, record: Path, workdir: Path, rss_limit_gb: float, timeout: float) -> dict:
    """One `ecgmamba-predict` run in a fresh process: wall time, peak RSS, windows predicted (or why none)."""
    out, log = workdir / "out.json", workdir / "stderr.txt"
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "ecgmamba_apps.predict", "--model", str(checkpoint), str(record)]
    command += ["--json", str(out), "--device", "cpu", "--no-progress"]
    if record.suffix == ".csv":
        command += ["--fs", str(FS)]
    env = {**os.environ, "PYTHONPATH": str(code), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    with open(log, "w") as stderr:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    killed, seen = None, 0
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        seen = max(seen, peak_rss_of(process.pid))
        elapsed = time.perf_counter() - start
        if seen > rss_limit_gb * 1024**2 or elapsed > timeout:
            killed = f"killed at {seen / 1024**2:.1f} GB" if elapsed <= timeout else f"killed after {timeout:.0f} s"
            process.kill()
        time.sleep(0.2)
    wall = time.perf_counter() - start
    result = {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": max(usage.ru_maxrss, seen) / 1024,
        "status": os.waitstatus_to_exitcode(status),
    }
    if killed:
        result["error"] = killed
    elif out.is_file():
        document = json.loads(out.read_text())
        first = document["records"][0]
        result["windows"] = first["num_windows"]
        if not first["ok"]:
            result["error"] = first["error"]
    else:
        result["error"] = log.read_text()[-300:]
    return result


def extract(revision: str, folder: Path) -> Path:
    """The code of `revision` in `folder`, via `git archive` (the repository is not touched)."""
    archive = subprocess.run(["git", "archive", revision], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[1.0], help="record lengths (default 1)")
    parser.add_argument("--formats", nargs="+", default=["wfdb", "csv"], choices=("wfdb", "csv"))
    parser.add_argument("--before", metavar="REV", help="also measure the code of this commit (e.g. c97f921)")
    parser.add_argument("--before-max-hours", type=float, default=1.0, help="longest record run with --before code")
    parser.add_argument("--rss-limit-gb", type=float, default=12.0, help="kill a run whose memory passes this")
    parser.add_argument("--timeout", type=float, default=3600.0, help="kill a run after this many seconds")
    parser.add_argument("--workdir", type=Path, help="where records are written (default: a temporary folder)")
    parser.add_argument("--tiny", action="store_true", help="a tiny model: the reading path's own cost")
    parser.add_argument("--quick", action="store_true", help="2-minute records, a tiny model: a smoke run")
    args = parser.parse_args(argv)
    hours = [2 / 60] if args.quick else args.hours
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(dir=args.workdir) as scratch:
        scratch = Path(scratch)
        checkpoint = build_checkpoint(scratch / "checkpoint", tiny=args.quick or args.tiny)
        block, leads = source_block()
        codes = {"after": REPO_ROOT}
        if args.before:
            codes[f"before ({args.before})"] = extract(args.before, Path(tempfile.mkdtemp(dir=scratch)))
        short = write_wfdb(scratch, "short", block, leads, 1)
        model = "a tiny ECGMamba (hidden 16, 1 layer)" if args.quick or args.tiny else "default ECGMamba"
        print(f"{model}, records tiled from {SOURCE_RECORD} (12 leads, {FS} Hz); {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f} at the start")  # fmt: skip
        print(
            "| code | format | record | file | wall time | wall time - 10 s record's | real-time factor | CPU time "
            "| peak RSS | windows |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        fixed = {}
        for label, code in codes.items():
            warm = predict(code, checkpoint, short, scratch, args.rss_limit_gb, args.timeout)
            fixed[label] = warm["wall_s"]
            print(f"| {label} | WFDB | 10 s | 0.1 MB | {warm['wall_s']:.1f} s | | | {warm['cpu_s']:.0f} s "
                  f"| {warm['peak_rss_mb']:.0f} MB | {warm.get('windows', warm.get('error'))} |", flush=True)  # fmt: skip
        for length in hours:
            tiles = int(round(length * 3600 / 10))
            seconds = tiles * 10
            for fmt in args.formats:
                writer = write_wfdb if fmt == "wfdb" else write_csv
                record = writer(scratch, f"long_{fmt}", block, leads, tiles)
                size = sum(p.stat().st_size for p in scratch.glob(f"long_{fmt}.*")) / 1e6
                for label, code in codes.items():
                    if label != "after" and length > args.before_max_hours:
                        continue
                    run = predict(code, checkpoint, record, scratch, args.rss_limit_gb, args.timeout)
                    outcome = run.get("error") or run.get("windows")
                    factor = f"{seconds / run['wall_s']:.0f}x" if "error" not in run else "-"
                    duration = f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min"
                    print(
                        f"| {label} | {fmt.upper()} | {duration} | {size:.0f} MB | {run['wall_s']:.0f} s "
                        f"| {run['wall_s'] - fixed[label]:.0f} s | {factor} | {run['cpu_s']:.0f} s "
                        f"| {run['peak_rss_mb']:.0f} MB | {outcome} |",
                        flush=True,
                    )
                for path in scratch.glob(f"long_{fmt}.*"):
                    path.unlink()


if __name__ == "__main__":
    main()
