"""Smoke run of benchmarks/data.py: the CinC 2021 table with scaled copies of the sample, and the fingerprint cost."""

import sys

import pytest
from conftest import require_data

from benchmarks import data

pytestmark = pytest.mark.slow  # a benchmark's smoke run: deselect with -m 'not slow'


def test_cinc2021_table_and_scaled_copies(data_dir, tmp_path, monkeypatch, capsys):
    cinc_dir = require_data(data_dir / "cinc2020", "PhysioNet/CinC sample not found")
    copy = data.scaled_cinc_copy(cinc_dir, 2, tmp_path)
    names = sorted(p.stem for p in tmp_path.rglob("*.hea"))
    assert len(names) == 26 and "Q0000001" in names and "E00100009" in names  # E00009's quirky first line too
    argv = ["data.py", "--dataset", "cinc2021", "--data_dir", str(cinc_dir), "--scale", "2", "--repeats", "1"]
    monkeypatch.setattr(sys, "argv", argv)
    data.main()
    out = capsys.readouterr().out
    assert "each record x2" in out and "88,253-record dataset" in out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["1"], ["2"]) and "CPUs" not in line]
    assert [row[:2] for row in rows] == [["1", "26"], ["2", "26"]]
    assert copy.endswith("cinc")


def test_fingerprint_cost(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["data.py", "--fingerprint", "2500"])
    data.main()
    assert "data_fingerprint over 2,500 record files" in capsys.readouterr().out
