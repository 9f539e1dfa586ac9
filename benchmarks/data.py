"""How fast the dataset builders prepare their cache.

Prints records/s of `download_and_prepare` (builder construction included) with 1 and 2 processes, each into a
fresh temporary cache, the cache size on disk, and the time projected for the full dataset:

    python -m benchmarks.data --data_dir ../shared/data/ptb-xl --sampling_rate 100
    python -m benchmarks.data --data_dir ../shared/data/ptb-xl --scale 10   # fixed costs amortised
    python -m benchmarks.data --dataset cpsc2018 --data_dir ../shared/data/cpsc2018

`--scale N` (PTB-XL) lists every row of the metadata table N times under new ecg_ids (same record files), so that
start-up costs (process pools, tables) weigh as little as on the full dataset.

Target: >= 200 records/s for PTB-XL at 100 Hz with 2 processes.
"""

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import datasets

from dataset_scripts import CPSC2018, PTBXL

FULL_SIZE = {"ptbxl": 21_799, "cpsc2018": 6_877}


def make_builder(args, cache_dir):
    if args.dataset == "ptbxl":
        return PTBXL(
            config_name=args.task, data_dir=args.data_dir, sampling_rate=args.sampling_rate, cache_dir=cache_dir
        )
    return CPSC2018(data_dir=args.data_dir, sampling_rate=args.sampling_rate, cache_dir=cache_dir)


def scaled_copy(data_dir, scale: int, workdir) -> str:
    """A PTB-XL folder whose table lists each row `scale` times (new ecg_ids), linking to the same record files."""
    import pandas as pd

    root = Path(workdir) / "ptb-xl"
    root.mkdir()
    for name in ("records100", "records500", "scp_statements.csv"):
        (root / name).symlink_to(Path(data_dir).resolve() / name)
    table = pd.read_csv(Path(data_dir) / "ptbxl_database.csv")
    step = int(table.ecg_id.max()) + 1
    copies = [table.assign(ecg_id=table.ecg_id + k * step) for k in range(scale)]
    pd.concat(copies).to_csv(root / "ptbxl_database.csv", index=False)
    return str(root)


def disk_usage(path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def run(args, num_proc):
    with tempfile.TemporaryDirectory() as cache_dir:
        cpu_before, start = cpu_seconds(), time.perf_counter()
        builder = make_builder(args, cache_dir)
        builder.download_and_prepare(num_proc=num_proc)
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_before
        records = sum(split.num_examples for split in builder.info.splits.values())
        return records, seconds, cpu, disk_usage(cache_dir)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the worker processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def report(args):
    full = FULL_SIZE[args.dataset]
    scale = f", each row x{args.scale}" if args.scale > 1 else ""
    print(f"{args.dataset} {args.sampling_rate} Hz from {args.data_dir}{scale}")
    # Other work on the machine slows the runs: say how busy it was.
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    print(f"{'num_proc':>8} {'records':>8} {'seconds':>8} {'CPU s':>6} {'records/s':>10} {'cache MB':>9} {'full':>10}")
    for num_proc in (1, 2):
        records, seconds, cpu, size = min((run(args, num_proc) for _ in range(args.repeats)), key=lambda r: r[1])
        rate = records / seconds
        print(
            f"{num_proc:>8} {records:>8} {seconds:>8.2f} {cpu:>6.1f} {rate:>10.0f} {size / 1e6:>9.1f} "
            f"{full / rate / 60:>6.1f} min"
        )
    print(f"(full: the {full:,}-record dataset at the rate above; its cache grows in proportion)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(FULL_SIZE), default="ptbxl")
    parser.add_argument("--data_dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/ptb-xl"))
    parser.add_argument("--task", default="superdiagnostic")
    parser.add_argument("--sampling_rate", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2, help="best of N runs per setting")
    parser.add_argument("--scale", type=int, default=1, help="PTB-XL: list each table row N times")
    args = parser.parse_args()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as workdir:
        if args.scale > 1:
            args.data_dir = scaled_copy(args.data_dir, args.scale, workdir)
        report(args)


if __name__ == "__main__":
    main()
