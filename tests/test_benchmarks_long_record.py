"""benchmarks/long_record.py and benchmarks/amplitudes.py end to end (toy sizes for the long records)."""

import re

import pytest

from benchmarks import amplitudes, long_record

pytestmark = pytest.mark.slow  # a benchmark's smoke run: deselect with -m 'not slow'


def test_long_record_benchmark_predicts_in_a_fresh_process(capsys):
    long_record.main(["--quick", "--formats", "wfdb"])  # CSV reading is tested in process (test_long_record.py)
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| after |")]
    assert [row.split(" | ")[1:3] for row in rows] == [["WFDB", "10 s"], ["WFDB", "2 min"]]
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert re.fullmatch(r"\d+ MB", cells[8]) and int(cells[8].split()[0]) > 100  # a Python process with torch
        assert cells[9] == ("1" if cells[2] == "10 s" else "23")  # every window of the record was predicted


def test_amplitude_benchmark_measures_the_real_records(data_dir, capsys):
    amplitudes.main(["--data-dir", str(data_dir / "cinc2020")])
    out = capsys.readouterr().out
    assert out.startswith("13 records under") and "lowest  0.133  E00015.hea" in out
    assert "accepted 0.02-8 mV" in out
