"""How fast the dataset builders prepare their cache, and what the data fingerprint that keys the cache costs.

Prints records/s of `download_and_prepare` (builder construction and its fingerprint included) with 1 and 2
processes, each into a fresh temporary cache, the cache size on disk, and the time and size projected for the full
dataset:

    python -m benchmarks.data --data_dir ../shared/data/ptb-xl --sampling_rate 100
    python -m benchmarks.data --data_dir ../shared/data/ptb-xl --scale 10   # fixed costs amortised
    python -m benchmarks.data --dataset cpsc2018 --data_dir ../shared/data/cpsc2018
    python -m benchmarks.data --dataset cinc2021 --data_dir ../shared/data/cinc2020 --scale 40
    python -m benchmarks.data --fingerprint 88000    # the fingerprint of a tree of 88,000 (empty) record files

`--scale N` lists every PTB-XL table row N times under new ecg_ids (same record files), or, for cinc2021, makes N
copies of every record under new names (headers rewritten, signal files linked), so that start-up costs (process
pools, tables) weigh as little as on the full dataset.

Target: >= 200 records/s for PTB-XL at 100 Hz with 2 processes.
"""

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np

from dataset_scripts import CPSC2018, PTBXL, CinC2021
from dataset_scripts.common import data_fingerprint

FULL_SIZE = {"ptbxl": 21_799, "cpsc2018": 6_877, "cinc2021": 88_253}


def make_builder(args, cache_dir):
    if args.dataset == "ptbxl":
        return PTBXL(
            config_name=args.task, data_dir=args.data_dir, sampling_rate=args.sampling_rate, cache_dir=cache_dir
        )
    builder_class = CPSC2018 if args.dataset == "cpsc2018" else CinC2021
    return builder_class(data_dir=args.data_dir, sampling_rate=args.sampling_rate, cache_dir=cache_dir)


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


def scaled_cinc_copy(data_dir, scale: int, workdir) -> str:
    """`scale` copies of every Challenge record, named `<prefix><copy><digits>` (Q0001 -> Q0010001), one folder per
    copy: the header rewritten with the new name, the signal file a link to the original."""
    root = Path(workdir) / "cinc"
    headers = sorted(Path(data_dir).rglob("*.hea"))
    for k in range(scale):
        folder = root / f"copy{k:03d}"
        folder.mkdir(parents=True)
        for header in headers:
            prefix = header.stem.rstrip("0123456789")
            name = f"{prefix}{k:03d}{header.stem[len(prefix) :]}"
            (folder / f"{name}.hea").write_text(header.read_text().replace(header.stem, name))
            (folder / f"{name}.mat").symlink_to(header.with_suffix(".mat").resolve())
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
    scale = f", each record x{args.scale}" if args.scale > 1 else ""
    print(f"{args.dataset} {args.sampling_rate} Hz from {args.data_dir}{scale}")
    # Other work on the machine slows the runs: say how busy it was.
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    header = f"{'num_proc':>8} {'records':>8} {'seconds':>8} {'CPU s':>6} {'records/s':>10} {'cache MB':>9}"
    print(f"{header} {'full: time':>11} {'full: cache':>12}")
    for num_proc in (1, 2):
        records, seconds, cpu, size = min((run(args, num_proc) for _ in range(args.repeats)), key=lambda r: r[1])
        rate = records / seconds
        print(
            f"{num_proc:>8} {records:>8} {seconds:>8.2f} {cpu:>6.1f} {rate:>10.0f} {size / 1e6:>9.1f} "
            f"{full / rate / 60:>7.1f} min {size / records * full / 1e9:>9.2f} GB"
        )
    print(f"(full: the {full:,}-record dataset at the rate and cache size per record above)")


def fingerprint_cost(count: int, repeats: int = 3):
    """Seconds `data_fingerprint` takes over `count` empty record files in folders of 1,000 (half .hea, half .mat)."""
    with tempfile.TemporaryDirectory() as root:
        for start in range(0, count, 1000):
            folder = Path(root) / f"g{start // 1000:03d}"
            folder.mkdir()
            for i in range(start, min(start + 1000, count)):
                (folder / f"R{i:06d}.{'hea' if i % 2 == 0 else 'mat'}").touch()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            data_fingerprint([root])
            times.append(time.perf_counter() - start)
    print(f"data_fingerprint over {count:,} record files, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}:")
    print(
        f"  best {min(times):.2f} s, median {np.median(times):.2f} s of {repeats} ({min(times) / count * 1e6:.1f} us a file)"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(FULL_SIZE), default="ptbxl")
    parser.add_argument("--data_dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/ptb-xl"))
    parser.add_argument("--task", default="superdiagnostic")
    parser.add_argument("--sampling_rate", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2, help="best of N runs per setting")
    parser.add_argument("--scale", type=int, default=1, help="PTB-XL: list each table row N times; cinc2021: N copies")
    parser.add_argument("--fingerprint", type=int, default=0, help="only time the fingerprint of N record files")
    args = parser.parse_args()
    if args.fingerprint:
        fingerprint_cost(args.fingerprint)
        return
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    if args.scale > 1 and args.dataset == "cpsc2018":
        parser.error("--scale applies to ptbxl and cinc2021")
    with tempfile.TemporaryDirectory() as workdir:
        if args.scale > 1:
            copy = scaled_copy if args.dataset == "ptbxl" else scaled_cinc_copy
            args.data_dir = copy(args.data_dir, args.scale, workdir)
        report(args)


if __name__ == "__main__":
    main()
