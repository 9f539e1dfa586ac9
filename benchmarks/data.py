"""How fast the dataset builders prepare their cache.

Prints records/s of `download_and_prepare` (builder construction included) with 1 and 2 processes, each into a
fresh temporary cache, the cache size on disk, and the time projected for the full dataset:

    python benchmarks/data.py --data_dir ../shared/data/ptb-xl --sampling_rate 100
    python benchmarks/data.py --dataset cpsc2018 --data_dir ../shared/data/cpsc2018

Target: >= 200 records/s for PTB-XL at 100 Hz with 2 processes.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import datasets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from dataset_scripts import CPSC2018, PTBXL  # noqa: E402

FULL_SIZE = {"ptbxl": 21_799, "cpsc2018": 6_877}


def make_builder(args, cache_dir):
    if args.dataset == "ptbxl":
        return PTBXL(
            config_name=args.task, data_dir=args.data_dir, sampling_rate=args.sampling_rate, cache_dir=cache_dir
        )
    return CPSC2018(data_dir=args.data_dir, sampling_rate=args.sampling_rate, cache_dir=cache_dir)


def disk_usage(path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def run(args, num_proc):
    with tempfile.TemporaryDirectory() as cache_dir:
        start = time.perf_counter()
        builder = make_builder(args, cache_dir)
        builder.download_and_prepare(num_proc=num_proc)
        seconds = time.perf_counter() - start
        records = sum(split.num_examples for split in builder.info.splits.values())
        return records, seconds, disk_usage(cache_dir)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(FULL_SIZE), default="ptbxl")
    parser.add_argument("--data_dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/ptb-xl"))
    parser.add_argument("--task", default="superdiagnostic")
    parser.add_argument("--sampling_rate", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2, help="best of N runs per setting")
    args = parser.parse_args()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()

    full = FULL_SIZE[args.dataset]
    print(f"{args.dataset} {args.sampling_rate} Hz from {args.data_dir} ({os.cpu_count()} CPUs)")
    print(f"{'num_proc':>8} {'records':>8} {'seconds':>8} {'records/s':>10} {'cache MB':>9} {'full dataset':>13}")
    for num_proc in (1, 2):
        records, seconds, size = min((run(args, num_proc) for _ in range(args.repeats)), key=lambda r: r[1])
        rate = records / seconds
        print(
            f"{num_proc:>8} {records:>8} {seconds:>8.2f} {rate:>10.0f} {size / 1e6:>9.1f} "
            f"{full / rate / 60:>10.1f} min"
        )
    print(f"(full dataset: {full:,} records, projected from the rate above; cache grows in proportion)")


if __name__ == "__main__":
    main()
