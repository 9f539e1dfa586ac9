"""Benchmark the selective-scan backends side by side: reference loop, pure-PyTorch scan, numba kernel.

    python -m benchmarks.scan             # full grid: batch 1 and 32, L = 250, 1000, 5000 (dim 256, N 16)
    python -m benchmarks.scan --quick     # small sizes, < 60 s: a smoke test
    python -m benchmarks.scan --json out.json

Method (printed with the results):
- torch.set_num_threads(--threads, default 2); the numba kernel runs on as many threads (torch's own OpenMP team).
- Times are wall-clock medians of --reps runs (default 10) after one warm-up run (which also compiles the numba
  kernel or loads it from numba's disk cache), the backends interleaved round by round. Where --reps runs would take over --budget seconds (default 60)
  a figure gets fewer (at least 3; the reference possibly none, then the warm-up run is reported, n = "1w");
  above --ref-max-elements (batch*dim*L*N) the reference is skipped. Column n says how many runs each figure
  is the median of.
- "fwd" runs under torch.no_grad(); "fwd+bwd" times forward and backward() of (out * g).sum() with every input
  requiring grad ("bwd" is the backward() part alone).
- Errors are max |difference| to the reference's output (and, relative to the largest gradient, to its input
  gradients), same inputs, float32.
- Peak memory: during the warm-up forward+backward of each case a thread samples the process RSS (psutil) every 1 ms;
  reported is peak minus the RSS just before (after gc and malloc_trim, so memory freed earlier is returned to
  the OS first). It sees every allocation (torch, numpy, numba), but a short spike between two samples can be
  missed, and inputs created before the call are not counted.
- Training step (`--step-tokens`, skipped with --quick unless given): one forward+backward of an ECGMamba
  classifier (hidden 128, 4 layers, batch 32, BCE loss; `use_encoder=False` so the tokens are exactly the input
  length) per scan backend, median of 3 after a warm-up, and its peak extra RSS at each token count (the memory
  should grow linearly with the tokens). The reference (autograd through the loop) only with `--step-reference`:
  one step takes minutes.
- The machine may be shared: the load average is printed before and after; treat ratios as the robust figure.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch

# The package exports the function `selective_scan` under the submodule's name: import the module itself.
scan = importlib.import_module("modeling_ecgmamba.selective_scan")

BACKENDS = ("reference", "torch", "cpu_kernel")
INPUTS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(batch, dim, nstate, length, seed=0):
    """Mamba-like inputs: dt = softplus(delta + bias) mostly in [1e-3, 0.1], A = -(1..N) per channel."""
    gen = torch.Generator().manual_seed(seed)
    return {
        "u": torch.randn(batch, dim, length, generator=gen),
        "delta": torch.randn(batch, dim, length, generator=gen) * 0.5 - 4.0,
        "A": -torch.arange(1, nstate + 1, dtype=torch.float32).repeat(dim, 1),
        "B": torch.randn(batch, nstate, length, generator=gen),
        "C": torch.randn(batch, nstate, length, generator=gen),
        "D": torch.ones(dim),
        "z": torch.randn(batch, dim, length, generator=gen),
        "delta_bias": torch.zeros(dim),
    }


def call(backend, inputs):
    return scan.selective_scan(**inputs, delta_softplus=True, backend=backend)


def forward_once(backend, inputs):
    with torch.no_grad():
        start = time.perf_counter()
        out = call(backend, inputs)
        return time.perf_counter() - start, out


def train_once(backend, inputs, grad_out):
    leaves = {k: v.detach().requires_grad_() for k, v in inputs.items()}
    start = time.perf_counter()
    out = call(backend, leaves)
    mid = time.perf_counter()
    (out * grad_out).sum().backward()
    end = time.perf_counter()
    return mid - start, end - mid, {k: v.grad for k, v in leaves.items()}


def _trim():
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass


def peak_rss_delta(fn):
    """Run fn() while sampling RSS every 1 ms; return ((peak - baseline) in MiB, fn's result)."""
    _trim()
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        result = fn()
    finally:
        done.set()
        thread.join()
    peak[0] = max(peak[0], proc.memory_info().rss)
    return (peak[0] - base) / 2**20, result


def max_abs(a, b):
    return (a.double() - b.double()).abs().max().item()


def grad_rel_err(grads, ref_grads):
    return max(max_abs(grads[k], ref_grads[k]) / ref_grads[k].abs().max().clamp_min(1e-12).item() for k in grads)


def n_reps(backend, first_s, args):
    """Timed runs after a warm-up run that took first_s: --reps, fewer where that would exceed --budget seconds
    (at least 3; for the reference 0 = report the warm-up run itself)."""
    if first_s * args.reps <= args.budget:
        return args.reps
    floor = 0 if backend == "reference" else 3
    return max(floor, min(args.reps, int(args.budget / first_s)))


def bench_case(batch, length, args, dim, nstate):
    inputs = make_inputs(batch, dim, nstate, length)
    grad_out = torch.randn(batch, dim, length, generator=torch.Generator().manual_seed(1))
    elements = batch * dim * length * nstate
    rows, outputs, grads, forward_reps, train_reps = {}, {}, {}, {}, {}
    for backend in args.backends:
        rows[backend] = {"batch": batch, "L": length, "dim": dim, "N": nstate, "backend": backend}
        if backend == "reference" and elements > args.ref_max_elements:
            rows[backend]["skipped"] = f"reference skipped: batch*dim*L*N = {elements:.2e} > --ref-max-elements"
            continue
        first, outputs[backend] = forward_once(backend, inputs)  # warm-up (compiles / loads the numba kernel)
        forward_reps[backend] = (n_reps(backend, first, args), [first])
        if not args.forward_only:
            # The warm-up forward+backward is also the memory run (the sampler thread costs a little time).
            rows[backend]["peak_extra_mib"], (f0, b0, grads[backend]) = peak_rss_delta(
                lambda b=backend: train_once(b, inputs, grad_out)
            )
            train_reps[backend] = (n_reps(backend, f0 + b0, args), [(f0, b0)])
    # Timed runs, interleaved: round r runs every backend that wants more than r runs, so that a change of load on
    # a shared machine hits every backend alike.
    for plan, run in ((forward_reps, lambda b: forward_once(b, inputs)[0]), (train_reps, None)):
        times = {backend: [] for backend in plan}
        for rnd in range(max((reps for reps, _ in plan.values()), default=0)):
            for backend, (reps, _) in plan.items():
                if rnd < reps:
                    times[backend].append(run(backend) if run else train_once(backend, inputs, grad_out)[:2])
        for backend, (reps, warmup) in plan.items():
            plan[backend] = (reps, times[backend] or warmup)
    for backend, (reps, times) in forward_reps.items():
        rows[backend].update(fwd_s=statistics.median(times), fwd_reps=reps or "1w")
    for backend, (reps, runs) in train_reps.items():
        rows[backend].update(
            train_fwd_s=statistics.median(r[0] for r in runs),
            bwd_s=statistics.median(r[1] for r in runs),
            train_s=statistics.median(r[0] + r[1] for r in runs),
            train_reps=reps or "1w",
        )
    if "reference" in outputs:
        for backend in outputs:
            if backend != "reference":
                rows[backend]["max_abs_err_out"] = max_abs(outputs[backend], outputs["reference"])
                if backend in grads:
                    rows[backend]["max_rel_err_grad"] = grad_rel_err(grads[backend], grads["reference"])
    rows = list(rows.values())
    ref = next((row for row in rows if row["backend"] == "reference" and "fwd_s" in row), None)
    for row in rows:
        if ref is not None and row is not ref and "fwd_s" in row:
            row["fwd_speedup"] = ref["fwd_s"] / row["fwd_s"]
            if "bwd_s" in row:
                row["bwd_speedup"] = ref["bwd_s"] / row["bwd_s"]
                row["train_speedup"] = ref["train_s"] / row["train_s"]
    return rows


def fmt(row, key, spec, default="-"):
    """row[key] formatted with spec, or default padded to the spec's width."""
    if key in row:
        return format(row[key], spec)
    return default.rjust(int(spec.split(".")[0] or 0))


def print_table(rows):
    header = (
        f"{'batch':>5} {'L':>5} {'backend':>10} | {'fwd s':>8} {'x ref':>6} {'n':>3} | {'fwd+bwd s':>9} "
        f"{'bwd s':>8} {'bwd x ref':>9} {'n':>3} | {'max|dy|':>8} {'grad rel':>8} | {'peak MiB':>8}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        if "skipped" in row:
            print(f"{row['batch']:>5} {row['L']:>5} {row['backend']:>10} | {row['skipped']}")
            continue
        print(
            f"{row['batch']:>5} {row['L']:>5} {row['backend']:>10} | {fmt(row, 'fwd_s', '8.4f')} "
            f"{fmt(row, 'fwd_speedup', '6.1f'):>6} {row['fwd_reps']!s:>3} | {fmt(row, 'train_s', '9.4f')} "
            f"{fmt(row, 'bwd_s', '8.4f')} {fmt(row, 'bwd_speedup', '9.1f'):>9} {row.get('train_reps', '-')!s:>3} | "
            f"{fmt(row, 'max_abs_err_out', '8.1e'):>8} {fmt(row, 'max_rel_err_grad', '8.1e'):>8} | "
            f"{fmt(row, 'peak_extra_mib', '8.0f'):>8}",
            flush=True,
        )


def training_step_rows(args, tokens_list, backends):
    """Forward+backward of one training batch of a 4-layer ECGMamba per backend and token count."""
    from modeling_ecgmamba import ECGMambaConfig, ECGMambaForSequenceClassification

    rows = []
    for tokens in tokens_list:
        inputs = torch.randn(args.step_batch, tokens, 12, generator=torch.Generator().manual_seed(0))
        labels = (torch.rand(args.step_batch, 5, generator=torch.Generator().manual_seed(1)) > 0.7).float()
        for backend in backends:
            torch.manual_seed(0)
            config = ECGMambaConfig(
                hidden_size=args.step_hidden, num_hidden_layers=4, use_encoder=False, scan_backend=backend
            )
            model = ECGMambaForSequenceClassification(config).train()

            def step(model=model, inputs=inputs, labels=labels):
                model.zero_grad(set_to_none=True)
                start = time.perf_counter()
                model(input_values=inputs, labels=labels).loss.backward()
                return time.perf_counter() - start

            peak_mib, first_s = peak_rss_delta(step)
            reps = 0 if backend == "reference" else 3  # the reference's warm-up step is its figure
            times = [step() for _ in range(reps)] or [first_s]
            rows.append(
                dict(
                    tokens=tokens,
                    backend=backend,
                    step_s=statistics.median(times),
                    reps=reps or "1w",
                    peak_extra_mib=peak_mib,
                )
            )
            print(
                f"  tokens {tokens:5d}  {backend:>10}  step {rows[-1]['step_s']:8.3f} s (n {rows[-1]['reps']})"
                f"  peak extra {peak_mib:7.0f} MiB",
                flush=True,
            )
            del model
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Thread pools (--threads-study): numba's parallel pools against the kernels' own Python threads, beside torch;
# then the model's mixer on torch's OpenMP team (the library's default) against the task threads (its fallback)
# ----------------------------------------------------------------------------------------------------------------

THREAD_MODES = {  # mode: (how the kernel's two tasks run, NUMBA_THREADING_LAYER)
    "numba omp": ("numba prange", "omp"),
    "numba workqueue": ("numba prange", "workqueue"),
    "python threads": ("the library's task threads", None),
}


def thread_study_worker(mode: str, calls: int) -> dict:
    """In a fresh process (numba fixes its threading layer at the first parallel launch): the median and mean time
    of a kernel call of two ~20 us tasks, and of a small torch op (LayerNorm of 63 x 128) alone and right after a
    kernel call, torch on 2 threads."""
    import numba

    torch.set_num_threads(2)
    data = np.random.default_rng(0).random((2, 4096), dtype=np.float32)

    def task_body(tasks, data):
        for task in range(tasks[0], tasks[1]):
            row = data[task]
            for _ in range(20):
                for j in range(row.shape[0]):
                    row[j] = row[j] * np.float32(0.999) + np.float32(0.001)

    if THREAD_MODES[mode][0] == "numba prange":

        @numba.njit(parallel=True)
        def launch(data):
            for task in numba.prange(data.shape[0]):
                row = data[task]
                for _ in range(20):
                    for j in range(row.shape[0]):
                        row[j] = row[j] * np.float32(0.999) + np.float32(0.001)

        def kernel_call():
            launch(data)
    else:
        body = numba.njit(nogil=True)(task_body)
        threads = scan._TaskThreads()

        def kernel_call():
            threads.run(body, data.shape[0], (data,))

    layer_norm = torch.nn.LayerNorm(128)
    x = torch.randn(1, 63, 128)

    def timed(fn):
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    with torch.inference_mode():
        for _ in range(50):
            kernel_call()
            layer_norm(x)
        alone = [timed(lambda: layer_norm(x)) for _ in range(calls)]
        kernel, after = [], []
        for _ in range(calls):
            kernel.append(timed(kernel_call))
            after.append(timed(lambda: layer_norm(x)))
    layer = numba.threading_layer() if THREAD_MODES[mode][1] else "-"
    summary = {"threading_layer": layer}
    for name, values in (("kernel", kernel), ("torch op alone", alone), ("torch op after kernel", after)):
        summary[name] = {"median_us": 1e6 * statistics.median(values), "mean_us": 1e6 * statistics.mean(values)}
    return summary


MIXER_MODES = ("torch's OpenMP team", "task threads")


def mixer_study_worker(mode: str, calls: int) -> dict:
    """In a fresh process: the median time of one default ECGMamba mixer (in_proj, the fused kernels, out_proj) on
    63 tokens (a 10 s record) at batch 1 and 32, the kernels on `mode`, torch on 2 threads. Its in_proj is a torch
    operator right before the kernels, as in the model: torch's threads are spinning when the kernels start."""
    from modeling_ecgmamba import ECGMambaConfig, ECGMambaModel

    torch.set_num_threads(2)
    if mode == "task threads":
        scan._openmp = (None,)
    torch.manual_seed(0)
    mixer = ECGMambaModel(ECGMambaConfig()).eval().layers[0].mixer  # initialised as in a model
    summary = {"openmp_team": scan._openmp_team() is not None}
    with torch.inference_mode():
        for batch in (1, 32):
            tokens = torch.randn(batch, 63, mixer.config.hidden_size)
            runs = max(5, calls // batch)
            times = []
            for i in range(runs + 5):
                start = time.perf_counter()
                mixer(tokens)
                if i >= 5:
                    times.append(time.perf_counter() - start)
            summary[f"batch {batch}"] = {"median_us": 1e6 * statistics.median(times), "calls": runs}
    return summary


def run_study_worker(worker: str, mode: str, calls: int, policy: str, env: dict | None = None) -> dict:
    """One row of a study: `--_{worker}-worker mode` in a fresh process (OpenMP and numba fix their thread pools at
    start-up) under OMP_WAIT_POLICY `policy` ("default": unset) and the extra `env`; its JSON result."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "NUMBA_THREADING_LAYER")} | (env or {})
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    command = [sys.executable, "-m", "benchmarks.scan", f"--_{worker}-worker", mode, "--thread-calls", str(calls)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{worker} study worker {mode!r} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def mixer_study(calls: int) -> list[dict]:
    """Every MIXER_MODES mode under both OMP_WAIT_POLICY settings, each in a fresh process."""
    rows = []
    for policy in ("default", "PASSIVE"):
        for mode in MIXER_MODES:
            result = run_study_worker("mixer", mode, calls, policy)
            rows.append({"omp_wait_policy": policy, "mode": mode, **result})
            cells = "  ".join(f"batch {b} {result[f'batch {b}']['median_us']:9.1f}" for b in (1, 32))
            print(f"  {policy:<8} {mode:<20} {cells}", flush=True)
    return rows


def thread_study(calls: int) -> list[dict]:
    """Every THREAD_MODES mode under both OMP_WAIT_POLICY settings (torch's and numba's OpenMP threads spin after
    a parallel region by default; PASSIVE makes them sleep), each in a fresh process."""
    rows = []
    for policy in ("default", "PASSIVE"):
        for mode, (_, layer) in THREAD_MODES.items():
            env = {"NUMBA_NUM_THREADS": "2", **({"NUMBA_THREADING_LAYER": layer} if layer else {})}
            result = run_study_worker("thread", mode, calls, policy, env)
            rows.append({"omp_wait_policy": policy, "mode": mode, **result})
            cells = "  ".join(
                f"{part} {result[part]['median_us']:8.1f} / {result[part]['mean_us']:8.1f}"
                for part in ("kernel", "torch op alone", "torch op after kernel")
            )
            print(f"  {policy:<8} {mode:<16} {cells}", flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (batch 1, 4; L 32, 128; dim 32): < 60 s")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=10, help="timed runs per figure after one warm-up")
    parser.add_argument("--batch", type=int, nargs="+", help="override the batch sizes")
    parser.add_argument("--lengths", type=int, nargs="+", help="override the lengths")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--forward-only", action="store_true", help="skip forward+backward")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--nstate", type=int, default=16)
    parser.add_argument(
        "--budget",
        type=float,
        default=60.0,
        help="seconds per figure: slow cases get fewer reps (>= 3, reference >= 0)",
    )
    parser.add_argument("--ref-max-elements", type=float, default=1.4e8, help="skip the reference above this")
    parser.add_argument(
        "--step-tokens", type=int, nargs="*", help="training-step token counts (default 125 250 500; none: skip)"
    )
    parser.add_argument("--step-batch", type=int, default=32)
    parser.add_argument("--step-hidden", type=int, default=128)
    parser.add_argument("--step-reference", action="store_true", help="also time the reference loop's step")
    parser.add_argument("--skip-grid", action="store_true", help="only the training step")
    parser.add_argument(
        "--threads-study",
        action="store_true",
        help="only the thread-pool studies: numba's pools vs Python threads beside torch's OpenMP, and the model's "
        "mixer with its kernels on torch's OpenMP team vs on the task threads",
    )
    parser.add_argument("--thread-calls", type=int, default=2000, help="calls per figure of the thread study")
    parser.add_argument("--_thread-worker", help=argparse.SUPPRESS)
    parser.add_argument("--_mixer-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._thread_worker:
        print(json.dumps(thread_study_worker(args._thread_worker, args.thread_calls)))
        return []
    if args._mixer_worker:
        print(json.dumps(mixer_study_worker(args._mixer_worker, args.thread_calls)))
        return []
    if args.threads_study:
        print(
            "thread study: a kernel call of 2 tasks (~20 us each), a torch LayerNorm (63 x 128) alone and right after "
            "it; median / mean in us, 2 threads, one fresh process per row"
        )
        study = {"loadavg_start": os.getloadavg(), "rows": thread_study(args.thread_calls)}
        print(
            "mixer study: one ECGMamba mixer (in_proj, fused kernels, out_proj) on 63 tokens right after its in_proj, "
            "the kernels on torch's OpenMP team or on the task threads; median in us, one fresh process per row"
        )
        study["mixer_rows"] = mixer_study(args.thread_calls)
        study["loadavg_end"] = os.getloadavg()
        print(f"load average start {study['loadavg_start']}, end {study['loadavg_end']}")
        if args.json:
            args.json.write_text(json.dumps({"thread_study": study}, indent=2))
        return study["rows"]
    torch.set_num_threads(args.threads)
    dim = 32 if args.quick else args.dim
    batches = args.batch or ([1, 4] if args.quick else [1, 32])
    lengths = args.lengths or ([32, 128] if args.quick else [250, 1000, 5000])
    if args.quick:
        args.reps = min(args.reps, 3)

    meta = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "available_backends": scan.available_backends(),
        "loadavg_start": os.getloadavg(),
    }
    try:
        import numba

        meta["numba"] = numba.__version__
    except Exception:
        meta["numba"] = None
    print(f"selective scan benchmark: dim {dim}, N {args.nstate}, float32, softplus, D and z on; {meta}")
    start = time.perf_counter()
    if "cpu_kernel" in meta["available_backends"]:
        compile_start = time.perf_counter()
        leaves = {k: v.requires_grad_() for k, v in make_inputs(1, 8, args.nstate, 4).items()}
        call("cpu_kernel", leaves).sum().backward()
        meta["cpu_kernel_first_call_s"] = time.perf_counter() - compile_start
        print(
            f"cpu_kernel first forward+backward (compile, or load from numba's cache): {meta['cpu_kernel_first_call_s']:.1f} s"
        )

    rows = []
    print()
    for batch in [] if args.skip_grid else batches:
        for length in lengths:
            case_rows = bench_case(batch, length, args, dim, args.nstate)
            print_table(case_rows)
            print()
            rows.extend(case_rows)
    step_tokens = args.step_tokens if args.step_tokens is not None else ([] if args.quick else [125, 250, 500])
    step_rows = []
    if step_tokens:
        step_backends = [b for b in args.backends if b != "reference" or args.step_reference]
        print(f"training step: ECGMamba hidden {args.step_hidden}, 4 layers, batch {args.step_batch}, fwd+bwd")
        step_rows = training_step_rows(args, step_tokens, step_backends)
        print()
    meta["loadavg_end"] = os.getloadavg()
    meta["total_s"] = time.perf_counter() - start
    print(f"load average start {meta['loadavg_start']}, end {meta['loadavg_end']}; total {meta['total_s']:.0f} s")
    print("x ref: reference time / backend time (median wall-clock); n: runs per median")
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": rows, "training_step": step_rows}, indent=2))
        print(f"wrote {args.json}")
    return rows


if __name__ == "__main__":
    main()
