"""benchmarks/scan.py end to end at toy sizes: every backend against the reference, and the training-step table."""

import json

import pytest

from benchmarks import scan as scan_benchmark

pytestmark = pytest.mark.slow  # a benchmark's smoke run: deselect with -m 'not slow'


def test_scan_benchmark_runs_every_path_and_the_training_step(tmp_path, capsys):
    out = tmp_path / "scan.json"
    argv = ["--quick", "--batch", "2", "--lengths", "16", "--reps", "2", "--json", str(out)]
    argv += ["--step-tokens", "8", "16", "--step-batch", "2", "--step-hidden", "16"]
    scan_benchmark.main(argv)
    report = json.loads(out.read_text())
    rows = {row["backend"]: row for row in report["rows"]}
    assert set(rows) == {"reference", "torch", "cpu_kernel"}
    for backend in ("torch", "cpu_kernel"):
        row = rows[backend]
        assert row["max_abs_err_out"] < 1e-5 and row["max_rel_err_grad"] < 1e-5  # same numbers as the loop
        assert row["fwd_speedup"] > 0 and row["bwd_speedup"] > 0 and row["peak_extra_mib"] >= 0
    steps = report["training_step"]
    assert [(r["tokens"], r["backend"]) for r in steps] == [
        (8, "torch"),
        (8, "cpu_kernel"),
        (16, "torch"),
        (16, "cpu_kernel"),
    ]  # the reference's step only with --step-reference
    assert all(r["step_s"] > 0 and r["reps"] == 3 for r in steps)
    assert "training step: ECGMamba hidden 16, 4 layers, batch 2" in capsys.readouterr().out


def test_thread_study_worker_times_the_kernel_threads_beside_torch():
    """One row of `--threads-study` in process (the study itself runs each row in a fresh process)."""
    result = scan_benchmark.thread_study_worker("python threads", calls=20)
    assert result["threading_layer"] == "-"
    for part in ("kernel", "torch op alone", "torch op after kernel"):
        assert result[part]["median_us"] > 0 and result[part]["mean_us"] > 0


def test_mixer_study_worker_times_the_mixer_on_both_pools(monkeypatch):
    """Both rows of the mixer study in process: the default ECGMamba mixer at batch 1 and 32, its kernels on torch's
    OpenMP team or on the task threads (the worker forces the latter; restored after the test)."""
    selective_scan = scan_benchmark.scan
    monkeypatch.setattr(selective_scan, "_openmp", selective_scan._openmp)
    team_available = selective_scan._openmp_team() is not None
    for mode in scan_benchmark.MIXER_MODES:
        result = scan_benchmark.mixer_study_worker(mode, calls=4)
        assert result["openmp_team"] == (team_available and mode == "torch's OpenMP team")
        for batch in (1, 32):
            assert result[f"batch {batch}"]["median_us"] > 0 and result[f"batch {batch}"]["calls"] >= 5
