"""The amplitude of real ECG records, as the plausibility check measures it: where `AMPLITUDE_RANGE_MV` comes from.

    python -m benchmarks.amplitudes                      # every record under $ECGMAMBA_DATA_DIR (or ../shared/data)
    python -m benchmarks.amplitudes --data-dir /data/ptb-xl/records100

Reads every record (WFDB headers, CPSC2018 `.mat` structs without a header) with the library's reader, converts it
to mV in the standard lead order (`standard_leads_mv`, without the amplitude check), and prints the distribution of
`ecg_records.peak_to_peak_mv` (each lead's 0.5th-99.5th percentile range over the first minute, median over the
leads), the lowest and highest records, PTB-XL's low-voltage (LVOLT) records, and how the accepted range compares.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import numpy as np

from modeling_ecgmamba.ecg_records import (
    AMPLITUDE_RANGE_MV,
    ECGDataError,
    peak_to_peak_mv,
    read_record,
    records_in,
    standard_leads_mv,
)

DATA_DIR = Path(os.environ.get("ECGMAMBA_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


def low_voltage_records(folder: Path) -> set[str]:
    """PTB-XL record file stems (`00001_lr`, `00001_hr`) whose SCP codes include LVOLT, from any database CSV found."""
    found = set()
    for table in folder.rglob("ptbxl_database.csv"):
        with open(table, newline="") as file:
            for row in csv.DictReader(file):
                if "LVOLT" in row["scp_codes"]:
                    ecg_id = int(float(row["ecg_id"]))
                    found.update({f"{ecg_id:05d}_lr", f"{ecg_id:05d}_hr"})
    return found


def measure(folder: Path) -> list[tuple[str, float]]:
    """`(record, statistic in mV)` for every ECG record under `folder` (files that are no record are skipped)."""
    rows = []
    for path in records_in(folder):
        if path.suffix.lower() not in (".hea", ".mat"):
            continue  # metadata tables, not records
        try:
            record = read_record(path)
            signal = standard_leads_mv(record, check_amplitude=False)
        except ECGDataError as err:
            print(f"skipped {err}")
            continue
        value = peak_to_peak_mv(signal, record.sampling_rate)
        if value is not None:
            rows.append((str(path.relative_to(folder)), value))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="folder searched for records")
    args = parser.parse_args(argv)
    rows = sorted(measure(args.data_dir), key=lambda row: row[1])
    if not rows:
        raise SystemExit(f"no records under {args.data_dir}")
    values = np.array([value for _, value in rows])
    low, high = AMPLITUDE_RANGE_MV
    print(f"{len(rows)} records under {args.data_dir}: median peak-to-peak of the leads (mV)")
    quantiles = np.percentile(values, [1, 50, 99])
    print(
        f"  min {values.min():.3f}  1st percentile {quantiles[0]:.3f}  median {quantiles[1]:.3f}  "
        f"99th percentile {quantiles[2]:.3f}  max {values.max():.3f}"
    )
    for name, value in rows[:3]:
        print(f"  lowest  {value:.3f}  {name}")
    for name, value in rows[-3:]:
        print(f"  highest {value:.3f}  {name}")
    lvolt = low_voltage_records(args.data_dir)
    for name, value in rows:
        if Path(name).stem in lvolt:
            print(f"  LVOLT   {value:.3f}  {name}")
    print(
        f"accepted {low:g}-{high:g} mV: {values.min() / low:.1f}x below the lowest, {high / values.max():.1f}x above "
        f"the highest; x10 caught for {np.mean(values * 10 > high):.0%} of these records, x1000 for "
        f"{np.mean(values * 1000 > high):.0%}, x0.001 for {np.mean(values / 1000 < low):.0%}"
    )


if __name__ == "__main__":
    main()
