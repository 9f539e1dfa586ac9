"""Speed, FLOPs and memory of ECGMamba against a Transformer and xresnet1d101, side by side.

    python -m benchmarks.speed --json speed.json              # full table (26 min on 2 cores shared at load 6-10)
    python -m benchmarks.speed --quick --json quick.json      # smoke run: 10 s, batch 2, 2 reps (~45 s)
    python -m benchmarks.speed --candidates --skip_main       # the candidate ECGMamba defaults only
    python -m benchmarks.speed --device cuda --amp bf16       # see benchmarks/gpu.sh
    python -m benchmarks.speed --before ../issue13-before     # + the same models from an older checkout, same weights
    python -m benchmarks.speed --compile                      # + a torch.compile column per model
    python -m benchmarks.speed --profile --skip_main          # time per component (scan, mixer, FFN, norms, encoder)

What is measured, per model:
- parameters;
- FLOPs per record at each length (10 s, 60 s, 5 min at 100 Hz), counted with `torch.utils.flop_counter.
  FlopCounterMode` (matmuls and convolutions, 2 FLOPs per multiply-add) plus two analytic terms the counter cannot
  see: the selective scan (a numba kernel) and CPU `scaled_dot_product_attention` (not registered with the
  counter). Scan: per batch element, channel and step, `SCAN_FLOPS_PER_STATE * N + SCAN_FLOPS_PER_STEP`
  = 8 N + 5: per state entry 2 for the exponent's argument (dt * A) and the input (dt * u * B counted as 2 with
  dt * u hoisted: 1 + 1), 1 for the exp, 2 for the state update (decay * h + input) and 2 for the output
  (C * h accumulated); per step 3 for dt = softplus(delta + bias) and 2 for the skip D * u. (mamba-ssm's own
  count is 9 N per step.) Attention: 4 * Lq * Lk * head_dim per head (QK^T and AV), the counter's own SDPA
  formula. Elementwise work (norms, activations, softmax, pooling) is not counted, for any model;
- CPU latency at batch 1 and throughput at batch 32 for each length, forward under `torch.inference_mode()`,
  median of `--reps` runs (fewer for the slow long cases, printed in the `reps` column), all models interleaved
  round-robin within each repetition so that load changes on a shared machine hit every model alike;
- forward + backward time of one training batch (batch 32, 10 s, BCE loss);
- peak memory of each of those calls. CPU: in a fresh subprocess per model, the growth of the resident set
  (VmHWM after resetting it through /proc/self/clear_refs, minus VmRSS before) during the call, the model and
  the input batch already allocated, with glibc's mmap threshold fixed at 64 KiB so freed blocks go back to the
  system; the subprocess also isolates the cases that run out of memory (`OOM`) or time (`timeout`). CUDA:
  `torch.cuda.max_memory_allocated` minus the memory allocated before the call, in process.

Ratios (`x`) are the model's figure divided by ECGMamba's. `--candidates` measures candidate ECGMamba defaults
(FLOPs, parameters, batch-32 throughput at 10 s) against xresnet1d101's FLOPs.

Extra columns, timed in the same interleaved rounds: `--compile` adds each model under `torch.compile` (its logits
checked against eager ones; compiled at every case's shape before timing). `--before PATH` adds each model as the
library of another checkout at PATH defines it (e.g. `git worktree add ../before <commit>`), with this run's weights
and its logits checked against this checkout's: it runs in a worker process that imports the library from PATH
(two versions of the kernels and their thread pools never share a process) and is driven from here call by call, so
its calls alternate with the current models' within every round. `--profile` prints the time per component of
each model (encoder, mixer, the scan or attention core inside it, FFN, norms, the rest) from module hooks.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

MODELS = ("ecgmamba", "transformer", "xresnet1d101")
LENGTHS = (1000, 6000, 30000)  # 10 s, 60 s, 5 min at 100 Hz
SAMPLING_RATE = 100
NUM_LABELS = 5
SCAN_FLOPS_PER_STATE = 8
SCAN_FLOPS_PER_STEP = 5

# Candidate ECGMamba defaults: ECGMambaConfig overrides of the default (hidden 128, 16x downsampling), the first.
_EIGHT_X = {"encoder_strides": [2, 2, 2], "encoder_kernel_sizes": [7, 5, 5]}
CANDIDATES = {
    "h128 s[2,2,2,2] k[7,5,5,5] (default)": {},
    "h128 s[2,2,2] k[7,5,5]": _EIGHT_X,
    "h64 s[2,2,2]": {"hidden_size": 64, **_EIGHT_X},
    "h96 s[2,2,2]": {"hidden_size": 96, **_EIGHT_X},
    # Width 96 with the default's FFN ratio (2x hidden): the widest 8x-token model under xresnet1d101's FLOPs.
    "h96 ffn192 s[2,2,2]": {"hidden_size": 96, "ffn_size": 192, **_EIGHT_X},
}


@dataclass(frozen=True)
class Case:
    """One timed call: `latency` (forward, batch 1), `throughput` (forward, batch 32) or `train` (fwd + bwd)."""

    kind: str
    length: int
    batch: int

    @property
    def label(self) -> str:
        return f"{self.kind} bs{self.batch} {seconds_label(self.length)}"

    def as_list(self) -> list:
        return [self.kind, self.length, self.batch]


def seconds_label(length: int) -> str:
    seconds = length / SAMPLING_RATE
    return f"{seconds / 60:g} min" if seconds >= 120 else f"{seconds:g} s"


# ----------------------------------------------------------------------------------------------------------------
# Models, inputs and one call
# ----------------------------------------------------------------------------------------------------------------


def make_model(name: str, overrides: dict, device, scan_backend: str = "auto"):
    from ecgmamba_training.models import build_model

    overrides = dict(overrides)
    if name == "ecgmamba" and scan_backend != "auto":
        overrides.setdefault("scan_backend", scan_backend)
    model = build_model(name, num_labels=NUM_LABELS, **overrides)
    return model.to(device).eval()


def make_inputs(case: Case, device, seed: int = 0):
    import torch

    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(case.batch, case.length, 12, generator=generator).to(device)
    labels = (torch.rand(case.batch, NUM_LABELS, generator=generator) < 0.3).float().to(device)
    return x, labels


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device, amp: str):
    import torch

    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[amp])


def run_case(model, case: Case, x, labels, device, amp: str) -> float:
    """Run one call of `case` and return its wall time in seconds (device synchronised)."""
    import torch

    synchronize(device)
    start = time.perf_counter()
    if case.kind == "train":
        model.train()
        model.zero_grad(set_to_none=True)
        with autocast(device, amp):
            loss = model(x, labels=labels).loss
        loss.backward()
        model.eval()
    else:
        with torch.inference_mode(), autocast(device, amp):
            model(x)
    synchronize(device)
    return time.perf_counter() - start


# ----------------------------------------------------------------------------------------------------------------
# FLOPs
# ----------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def analytic_flop_hooks(extra: list):
    """Replace the selective scan and SDPA by shape recorders (returning zeros) that add their analytic FLOPs."""
    import torch
    import torch.nn.functional as F

    import modeling_ecgmamba.modeling_ecgmamba as modeling

    original_scan = modeling.selective_scan
    original_sdpa = F.scaled_dot_product_attention

    def scan(u, delta, A, B, C, **kwargs):
        batch, dim, length = u.shape
        extra.append(batch * dim * length * (SCAN_FLOPS_PER_STATE * A.shape[-1] + SCAN_FLOPS_PER_STEP))
        return torch.zeros_like(u)

    def sdpa(query, key, value, *args, **kwargs):
        *lead, q_len, head_dim = query.shape
        extra.append(4 * math.prod(lead) * q_len * key.shape[-2] * head_dim)
        return torch.zeros(*lead, q_len, value.shape[-1], dtype=query.dtype, device=query.device)

    modeling.selective_scan = scan
    F.scaled_dot_product_attention = sdpa
    # The fused CPU mixer runs its convolution and scan in kernels the counter cannot see: count the modules' path
    # (the same arithmetic), whose depthwise convolution the counter sees and whose scan is recorded above.
    bimixer = modeling.ECGMambaBiMixer
    original_fused = bimixer.__dict__.get("_runs_fused")
    if original_fused is not None:
        bimixer._runs_fused = lambda self, projected: False
    try:
        yield
    finally:
        modeling.selective_scan = original_scan
        F.scaled_dot_product_attention = original_sdpa
        if original_fused is not None:
            bimixer._runs_fused = original_fused


def count_flops(model, length: int) -> int:
    """FLOPs of one forward pass on one record of `length` samples (eager, CPU, batch 1)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = model.to("cpu").eval()
    extra: list[int] = []
    counter = FlopCounterMode(display=False)
    with analytic_flop_hooks(extra), counter, torch.no_grad():
        model(torch.randn(1, length, 12))
    return int(counter.get_total_flops() + sum(extra))


def num_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------------------------------
# Peak memory
# ----------------------------------------------------------------------------------------------------------------


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak memory growth during a block: CUDA allocator statistics on CUDA, resident-set high-water mark on CPU."""

    def __init__(self, device):
        self.device = device
        self.method = self._method()
        self.peak_mb: float | None = None

    def _method(self) -> str:
        if self.device.type == "cuda":
            return "torch.cuda.max_memory_allocated - memory_allocated before, in process"
        if _proc_status_kib("VmHWM") is None:
            return "unavailable (no /proc/self/status)"
        return "VmHWM (reset via /proc/self/clear_refs) - VmRSS before"

    def __enter__(self):
        import torch

        gc.collect()
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._before = torch.cuda.memory_allocated(self.device)
        else:
            try:
                with open("/proc/self/clear_refs", "w") as clear_refs:
                    clear_refs.write("5")  # reset the peak resident set size (Linux >= 4.0)
            except OSError:
                pass
            self._before = _proc_status_kib("VmRSS")
        return self

    def __exit__(self, *exc):
        import torch

        if self.device.type == "cuda":
            synchronize(self.device)
            self.peak_mb = (torch.cuda.max_memory_allocated(self.device) - self._before) / 2**20
        elif self._before is not None:
            self.peak_mb = (_proc_status_kib("VmHWM") - self._before) / 1024
        return False


def return_freed_memory_to_system() -> bool:
    """Fix glibc's mmap threshold at 64 KiB so every larger block is unmapped when freed and a later allocation
    shows up as resident-set growth again (glibc otherwise raises the threshold and keeps freed blocks)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 65536)) and bool(libc.mallopt(m_trim_threshold, 0))
    except (OSError, AttributeError):
        return False


def is_oom(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate" in text or "outofmemory" in text


# ----------------------------------------------------------------------------------------------------------------
# Subprocess probes (CPU): peak RSS per case, and the cases that run out of memory or time
# ----------------------------------------------------------------------------------------------------------------


def worker_main(spec: dict) -> None:
    """Run in a fresh process: for each (model, case), one warm call measured for peak memory and time."""
    import resource

    import torch

    torch.set_num_threads(spec["threads"])
    return_freed_memory_to_system()
    limit = int(spec["memory_limit_gb"] * 2**30)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # allocation failures become a catchable OOM
    device = torch.device("cpu")
    models = {}
    for name, kind, length, batch in spec["items"]:
        case = Case(kind, length, batch)
        print("START", json.dumps([name, case.as_list()]), flush=True)
        result = {"status": "ok"}
        try:
            if name not in models:
                models[name] = make_model(name, spec["overrides"].get(name, {}), device, spec["scan_backend"])
                # Warm up on a small batch (loads the numba kernels, oneDNN primitives) before any measurement.
                small = Case("train", 1000, 2)
                run_case(models[name], small, *make_inputs(small, device), device, spec["amp"])
            x, labels = make_inputs(case, device)
            with PeakMemory(device) as peak:
                seconds = run_case(models[name], case, x, labels, device, spec["amp"])
            result.update(seconds=seconds, peak_mb=peak.peak_mb)
            del x, labels
        except Exception as exc:  # report and continue with the next case
            result = {"status": "OOM" if is_oom(exc) else f"error: {type(exc).__name__}: {exc}"[:300]}
        gc.collect()
        print("RESULT", json.dumps([name, case.as_list(), result]), flush=True)


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def run_probes(items: list[tuple[str, Case]], args, log) -> dict:
    """Run the probe worker over `items` (restarting after a failure); returns {(model, case): result}."""
    results: dict = {}
    pending = list(items)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    while pending:
        spec = {
            "items": [[name, *case.as_list()] for name, case in pending],
            "threads": args.threads,
            "memory_limit_gb": args.memory_limit_gb,
            "overrides": {},
            "scan_backend": args.scan_backend,
            "amp": args.amp,
        }
        stderr = tempfile.TemporaryFile(mode="w+")
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.speed", "--_worker", json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
            start_new_session=True,
        )
        first_case = True
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
        current = None
        deadline = time.monotonic() + args.startup_timeout + args.case_timeout
        while pending:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = "TIMEOUT"
            if line is None or line == "TIMEOUT":
                failed = current or pending[0]
                if line is None:
                    rc = proc.wait()
                    stderr.seek(0)
                    last = (stderr.read().strip().splitlines() or [""])[-1][:200]
                    status = "OOM" if rc in (-9, 137) else f"crashed (rc {rc}): {last}"
                else:
                    status = "timeout"
                    os.killpg(proc.pid, 9)
                    proc.wait()
                results[failed] = {"status": status}
                log(f"  probe {failed[0]:<13} {failed[1].label:<24} {status}")
                pending.remove(failed)
                break
            if line.startswith("START"):
                name, case = json.loads(line.split(" ", 1)[1])
                current = (name, Case(*case))
                # The first case of a process also builds and warms up the model.
                deadline = time.monotonic() + args.case_timeout + (args.startup_timeout if first_case else 0)
                first_case = False
            elif line.startswith("RESULT"):
                name, case, result = json.loads(line.split(" ", 1)[1])
                key = (name, Case(*case))
                results[key] = result
                pending.remove(key)
                current = None
                deadline = time.monotonic() + args.startup_timeout + args.case_timeout
                shown = (
                    f"{result['seconds']:.2f} s, peak +{result['peak_mb']:.0f} MB"
                    if result["status"] == "ok"
                    else result["status"]
                )
                log(f"  probe {name:<13} {key[1].label:<24} {shown}")
        if proc.poll() is None and not pending:
            proc.wait(timeout=60)
        stderr.close()
    return results


# ----------------------------------------------------------------------------------------------------------------
# Another checkout's models (--before): a worker process driven call by call
# ----------------------------------------------------------------------------------------------------------------


class BeforeWorker:
    """The models as the library of another checkout (`--before PATH`) defines them, with this process's weights,
    in a worker process that imports the library from PATH. Each call runs and is timed there, driven from here."""

    def __init__(self, path: str, models: dict, args):
        import torch

        self.path = str(Path(path).resolve())
        self.folder = tempfile.TemporaryDirectory()
        weights = {}
        for name, model in models.items():
            weights[name] = os.path.join(self.folder.name, f"{name}.pt")
            torch.save(model.state_dict(), weights[name])
        spec = {"names": list(models), "weights": weights, "threads": args.threads, "amp": args.amp}
        spec["scan_backend"] = args.scan_backend
        pythonpath = os.pathsep.join(p for p in (self.path, os.environ.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--_timing_worker", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=self.path,
            env=dict(os.environ, PYTHONPATH=pythonpath, PYTHONUNBUFFERED="1"),
        )
        self.library = self._reply()["library"]
        if not self.library.startswith(self.path):
            raise RuntimeError(f"--before {path}: the worker imported the library from {self.library}")

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the --before worker exited (code {self.proc.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def call(self, command: str, name: str, case: Case, **options) -> dict:
        self.proc.stdin.write(json.dumps({"cmd": command, "name": name, "case": case.as_list(), **options}) + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.folder.cleanup()


@dataclass(frozen=True)
class BeforeModel:
    """One model of a BeforeWorker: what time_rounds and the profile call instead of a local model."""

    worker: BeforeWorker
    name: str

    def run(self, case: Case) -> float:
        return self.worker.call("run", self.name, case)["seconds"]


def timing_worker_main(spec: dict) -> None:
    """The --before worker: build the models with the library on PYTHONPATH, load the weights, then answer one
    JSON command per line on stdin: run (one timed call), logits, profile."""
    import torch

    torch.set_num_threads(spec["threads"])
    device = torch.device("cpu")
    models = {}
    for name in spec["names"]:
        models[name] = make_model(name, {}, device, spec["scan_backend"])
        models[name].load_state_dict(torch.load(spec["weights"][name]))
    import modeling_ecgmamba

    print(json.dumps({"library": modeling_ecgmamba.__file__}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        try:
            model, case = models[command["name"]], Case(*command["case"])
            if command["cmd"] == "run":
                reply = {"seconds": run_case(model, case, *make_inputs(case, device), device, spec["amp"])}
            elif command["cmd"] == "logits":
                with torch.inference_mode():
                    reply = {"logits": model(make_inputs(case, device, seed=1)[0]).logits.tolist()}
            else:
                reply = {"parts": profile_parts(model, case, device, spec["amp"], command["reps"])}
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        print(json.dumps(reply), flush=True)


def reference_logits(model, device):
    """Logits of a 10 s batch of 2 (seed 1): what --compile and --before compare with the eager current model."""
    import torch

    x, _ = make_inputs(Case("throughput", LENGTHS[0], 2), device, seed=1)
    with torch.inference_mode():
        return model(x).logits.float().cpu()


# ----------------------------------------------------------------------------------------------------------------
# Time per component (--profile)
# ----------------------------------------------------------------------------------------------------------------

# Module classes timed as a whole, by the part they are.
PROFILE_MODULES = {
    "ECGMambaEmbeddings": "encoder",
    "ECGMambaBiMixer": "mixer",
    "ECGTransformerAttention": "mixer",
    "ECGMambaFeedForward": "FFN",
    "LayerNorm": "norms",
    "XResNet1dBlock": "residual blocks",
}
PROFILE_COLUMNS = ("total", "encoder", "mixer", "scan / attention core", "rest of mixer", "FFN", "norms")
PROFILE_COLUMNS += ("residual blocks", "other")


def profile_parts(model, case: Case, device, amp: str, reps: int) -> dict:
    """Wall time per component of one forward call of `case` (mean of `reps` calls after one warm-up): module
    hooks on PROFILE_MODULES, and wrappers of the selective scan (the fused CPU kernel, or the scan function of the
    unfused mixer) and of scaled_dot_product_attention ("scan / attention core", inside "mixer"). "other": the
    input checks, residual adds, pooling and head."""
    import torch
    import torch.nn.functional as F

    totals: dict = {}
    starts: dict = {}
    depth = [0]

    def add(part, seconds):
        totals[part] = totals.get(part, 0.0) + seconds

    def timed(part, fn):
        def wrapper(*args, **kwargs):
            depth[0] += 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:  # nested scan entry points count once
                    add(part, time.perf_counter() - start)

        return wrapper

    patches = [(F, "scaled_dot_product_attention", "scan / attention core")]
    modeling = sys.modules[type(model).__module__]
    if hasattr(modeling, "selective_scan"):
        patches.append((modeling, "selective_scan", "scan / attention core"))
        kernels = sys.modules[modeling.selective_scan.__module__]
        if hasattr(kernels, "_scan_forward"):  # the fused CPU mixer's scan kernel
            patches.append((kernels, "_scan_forward", "scan / attention core"))
    originals = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in patches]
    handles = []
    for module in model.modules():
        part = PROFILE_MODULES.get(type(module).__name__)
        if part is not None:
            handles.append(
                module.register_forward_pre_hook(lambda m, a: starts.__setitem__(id(m), time.perf_counter()))
            )
            handles.append(
                module.register_forward_hook(
                    lambda m, a, o, part=part: add(part, time.perf_counter() - starts.pop(id(m)))
                )
            )
    x, _ = make_inputs(case, device)
    try:
        for owner, attr, part in patches:
            setattr(owner, attr, timed(part, getattr(owner, attr)))
        with torch.inference_mode(), autocast(device, amp):
            model(x)
            totals.clear()
            for _ in range(reps):
                synchronize(device)
                start = time.perf_counter()
                model(x)
                synchronize(device)
                add("total", time.perf_counter() - start)
    finally:
        for owner, attr, original in originals:
            setattr(owner, attr, original)
        for handle in handles:
            handle.remove()
    parts = {part: seconds / reps for part, seconds in totals.items()}
    if "mixer" in parts:
        parts["rest of mixer"] = parts["mixer"] - parts.get("scan / attention core", 0.0)
    timed_parts = ("encoder", "mixer", "FFN", "norms", "residual blocks")
    parts["other"] = parts["total"] - sum(parts.get(part, 0.0) for part in timed_parts)
    return parts


def run_profile(args, device, models: dict, report: dict, log) -> None:
    """The time per component of every model (and column) at batch 1 and batch `--batch`, for each length."""
    cases = [
        Case(kind, length, batch)
        for length in args.lengths
        for kind, batch in (("latency", 1), ("throughput", args.batch))
    ]
    log(f"## time per component (ms per forward call, mean of {args.profile_reps} calls with module hooks)")
    report["profile"] = {}
    header = ["", *PROFILE_COLUMNS]
    for case in cases:
        lines = [[case.label, *header[1:]]]
        for key, model in models.items():
            if isinstance(model, BeforeModel):
                parts = model.worker.call("profile", model.name, case, reps=args.profile_reps)["parts"]
            else:
                parts = profile_parts(model, case, device, args.amp, args.profile_reps)
            report["profile"].setdefault(case.label, {})[key] = parts
            lines.append([f"  {key}", *(fmt(1000 * parts[c]) if c in parts else "-" for c in PROFILE_COLUMNS)])
        widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
        log("\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines))


# ----------------------------------------------------------------------------------------------------------------
# Interleaved timing
# ----------------------------------------------------------------------------------------------------------------


def call_model(model, case: Case, x, labels, device, amp: str) -> float:
    """One timed call of `case`: in this process, or in the --before worker."""
    if isinstance(model, BeforeModel):
        return model.run(case)
    return run_case(model, case, x, labels, device, amp)


def time_rounds(
    plan: list[tuple[Case, dict, int]],
    device,
    amp: str,
    case_timeout: float,
    warmup: bool = True,
    column_warmup: dict | None = None,
) -> dict:
    """Time every (case, model) of `plan` [(case, {name: model}, reps)] in rounds: round r runs each case that
    wants more than r repetitions once per model, the models' order rotating, so that a change of load on a shared
    machine hits every model, and every length of a block, alike. Returns {case.label: {name: entry}} with the
    median, every time and the round it was taken in (for ratios between lengths taken in the same rounds)."""
    inputs, times, rounds, status = {}, {}, {}, {}
    for case, models, _ in plan:
        inputs[case] = make_inputs(case, device)
        small = Case(case.kind, case.length, min(2, case.batch))
        for name, model in models.items():
            key = (case, name)
            times[key], rounds[key], status[key] = [], [], "ok"
            # Untimed, at this length, on a small batch (kernels and caches); the extra columns always, compiled
            # models at the timed shape (compiling it).
            how = (column_warmup or {}).get(name, "small" if warmup else None)
            if how is not None:
                warm = case if how == "full" else small
                try:
                    x, labels = inputs[case]
                    call_model(model, warm, x[: warm.batch], labels[: warm.batch], device, amp)
                except Exception as exc:
                    status[key] = "OOM" if is_oom(exc) else f"error: {type(exc).__name__}: {exc}"[:300]
    for rnd in range(max((reps for _, _, reps in plan), default=0)):
        for case, models, reps in plan:
            if rnd >= reps:
                continue
            order = list(models)
            shift = rnd % max(1, len(order))
            for name in order[shift:] + order[:shift]:
                key = (case, name)
                if status[key] != "ok":
                    continue
                try:
                    seconds = call_model(models[name], case, *inputs[case], device, amp)
                except Exception as exc:
                    status[key] = "OOM" if is_oom(exc) else f"error: {type(exc).__name__}: {exc}"[:300]
                    continue
                times[key].append(seconds)
                rounds[key].append(rnd)
                if seconds > case_timeout:
                    status[key] = "stopped early: slower than --case_timeout"
    out: dict = {}
    for case, models, _ in plan:
        for name in models:
            key = (case, name)
            if times[key] and status[key] in ("ok", "stopped early: slower than --case_timeout"):
                entry = {"status": "ok", "median_s": statistics.median(times[key]), "reps": len(times[key])}
                entry.update(times_s=times[key], rounds=rounds[key])
            else:
                entry = {"status": status[key]}
            out.setdefault(case.label, {})[name] = entry
    return out


def plan_reps(estimates: list[float], args) -> int:
    """As many repetitions as fit in `--case_budget` seconds, between `--min_reps` and `--reps`; 2 for a case
    whose single round (one call per model) already takes longer than the budget."""
    per_rep = sum(estimates)
    if per_rep <= 0:
        return args.reps
    least = args.min_reps if per_rep <= args.case_budget else min(2, args.min_reps)
    return int(max(least, min(args.reps, args.case_budget // per_rep)))


# ----------------------------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:.{decimals}f}"


def case_value(entry: dict | None, case: Case) -> float | None:
    """The figure a row shows: ms for latency, records/s for throughput, s per batch for training."""
    if not entry or "median_s" not in entry:
        return None
    if case.kind == "latency":
        return 1000 * entry["median_s"]
    if case.kind == "throughput":
        return case.batch / entry["median_s"]
    return entry["median_s"]


def render_table(rows: list[tuple[str, str, dict]], models: list[str]) -> str:
    """rows: (label, reps, {model: value or status string}); values get a ratio to the first model."""
    base = models[0]
    header = ["", "reps", *models]
    lines = [header]
    for label, reps, values in rows:
        cells = [label, reps]
        reference = values.get(base)
        for name in models:
            value = values.get(name)
            if isinstance(value, (int, float)):
                cell = fmt(value)
                if name != base and isinstance(reference, (int, float)) and reference:
                    cell += f" ({fmt(value / reference, 2)}x)"
            else:
                cell = value or "-"
            cells.append(cell)
        lines.append(cells)
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in lines)


def paired_growth(short: dict | None, long: dict | None) -> float | None:
    """Median over the rounds in which both were timed of time(long) / time(short); None if none is shared."""
    if not short or not long or "rounds" not in short or "rounds" not in long:
        return None
    by_round = dict(zip(short["rounds"], short["times_s"]))
    ratios = [t / by_round[r] for r, t in zip(long["rounds"], long["times_s"]) if r in by_round]
    return statistics.median(ratios) if ratios else None


def target_lines(report: dict) -> list[str]:
    """The targets, met or missed, from the measured figures: eager ECGMamba at batch 1 and batch --batch at least
    as fast as the Transformer at 10 s and faster beyond, faster than xresnet1d101 at every length, a training step
    within 1.5x of the Transformer's, fewer FLOPs than xresnet1d101, the same logits in every extra column."""
    models, meta = report["models"], report["meta"]
    if "ecgmamba" not in models:
        return []
    lines = []

    def entry(name, kind, length):
        batch = 1 if kind == "latency" else meta["batch"]
        return models.get(name, {}).get("cases", {}).get(Case(kind, length, batch).label)

    def verdict(ok: bool) -> str:
        return "MET   " if ok else "MISSED"

    first = str(meta["lengths"][0])
    if "xresnet1d101" in models and first == str(LENGTHS[0]):
        mine, theirs = models["ecgmamba"]["gflops"][first], models["xresnet1d101"]["gflops"][first]
        lines.append(
            f"{verdict(mine < theirs)} fewer FLOPs than xresnet1d101 per 10 s record: {fmt(mine)} vs {fmt(theirs)} "
            f"GFLOPs ({fmt(mine / theirs, 2)}x)"
        )
    for key, info in models.items():
        if "logits_max_abs_diff" in info:
            diff = info["logits_max_abs_diff"]
            lines.append(
                f"{verdict(diff <= 1e-5)} {key}: logits within 1e-5 of this checkout's eager model ({diff:.1e})"
            )

    def compare(other: str, kind: str, length: int, strict: bool) -> None:
        batch = 1 if kind == "latency" else meta["batch"]
        case = Case(kind, length, batch)
        what = f"{case.label} {'better than' if strict else 'at least equal to'} {other}'s"
        ours, theirs = (case_value(entry(name, kind, length), case) for name in ("ecgmamba", other))
        if ours is None or theirs is None:
            lines.append(f"n/a    {what}: not measured")
            return
        ratio = theirs / ours if kind == "latency" else ours / theirs  # > 1: ECGMamba faster
        ok = ratio > 1 if strict else ratio >= 1
        unit = "ms" if kind == "latency" else "records/s"
        lines.append(f"{verdict(ok)} {what}: {fmt(ours)} vs {fmt(theirs)} {unit} (ECGMamba {fmt(ratio, 2)}x as fast)")

    for length in meta["lengths"]:
        for kind in ("latency", "throughput"):
            if "transformer" in models:
                compare("transformer", kind, length, strict=length != LENGTHS[0])
            if "xresnet1d101" in models:
                compare("xresnet1d101", kind, length, strict=True)
    train = Case("train", meta["lengths"][0], meta["batch"])
    if "transformer" in models and train.length == LENGTHS[0]:
        ours, theirs = (case_value(entry(name, "train", train.length), train) for name in ("ecgmamba", "transformer"))
        if ours is not None and theirs is not None:
            lines.append(
                f"{verdict(ours <= 1.5 * theirs)} {train.label} within 1.5x of the Transformer's: {fmt(ours)} vs "
                f"{fmt(theirs)} s ({fmt(ours / theirs, 2)}x)"
            )
    if len(meta["lengths"]) > 1:
        short, long = meta["lengths"][0], meta["lengths"][-1]
        linear = long / short
        lines.append(
            f"# growth of the time per call from {short} to {long} samples (linear: {fmt(linear)}x), median of "
            "the ratios within the same rounds"
        )
        for name in models:
            parts = []
            for kind in ("throughput", "latency"):
                growth = paired_growth(entry(name, kind, short), entry(name, kind, long))
                parts.append(f"{kind} {fmt(growth)}x ({fmt(growth / linear, 2)}x linear)" if growth else f"{kind} n/a")
            growth = paired_growth(entry(name, "throughput", short), entry(name, "throughput", long))
            text = f"{name}: " + ", ".join(parts)
            if name == "ecgmamba" and growth:
                lines.append(f"{verdict(growth / linear <= 1.5)} {text}; target: throughput within 1.5x of linear")
            else:
                lines.append(f"       {text}")
    return lines


# ----------------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------------


def git_state() -> str:
    """The commit measured, and the measured files (model package, baselines, this script) that differ from it."""
    files = [
        "modeling_ecgmamba/configuration_ecgmamba.py",
        "modeling_ecgmamba/modeling_ecgmamba.py",
        "modeling_ecgmamba/selective_scan.py",
        "modeling_ecgmamba/configuration_ecg_transformer.py",
        "modeling_ecgmamba/modeling_ecg_transformer.py",
        "modeling_ecgmamba/configuration_xresnet1d.py",
        "modeling_ecgmamba/modeling_xresnet1d.py",
        "benchmarks/speed.py",
    ]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", *files], cwd=REPO_ROOT, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    changed = [line[3:] for line in status.stdout.splitlines()]
    return commit.stdout.strip() + (f" + uncommitted {', '.join(changed)}" if changed else "")


def git_commit(path: str) -> str:
    """The short commit of the checkout at `path` (and "+ changes" if its tracked files differ from it)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=path, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=path, capture_output=True, text=True)
    except OSError:
        return "unknown"
    return commit.stdout.strip() + (" + changes" if dirty.stdout.strip() else "")


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", help="write all figures to this JSON file")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 10 s only, batch 2, 2 reps, memory in process"
    )
    parser.add_argument("--candidates", action="store_true", help="also measure the candidate ECGMamba defaults")
    parser.add_argument("--skip_main", action="store_true", help="skip the main table (with --candidates)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--lengths", nargs="+", type=int, default=list(LENGTHS), help="samples at 100 Hz")
    parser.add_argument("--batch", type=int, default=32, help="batch of the throughput and training cases")
    parser.add_argument("--reps", type=int, default=10, help="repetitions per case (median), most")
    parser.add_argument("--min_reps", type=int, default=3, help="repetitions per case, least")
    parser.add_argument("--case_budget", type=float, default=150.0, help="seconds of timing per case (sets reps)")
    parser.add_argument("--case_timeout", type=float, default=240.0, help="a call slower than this is 'timeout'")
    parser.add_argument("--startup_timeout", type=float, default=180.0, help="probe process start-up allowance")
    parser.add_argument("--threads", type=int, default=2, help="torch (and numba) threads on CPU")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument(
        "--omp_wait_policy",
        default=os.environ.get("OMP_WAIT_POLICY", "default"),
        help="OMP_WAIT_POLICY for this run ('default': leave it unset, as users run). PASSIVE: idle OpenMP threads "
        "sleep instead of spinning (on a shared, loaded machine spinning made single calls swing up to 10x), but "
        "users do not run so: until the kernels ran on torch's own threads it hid their cost of 2x at batch 32",
    )
    parser.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"), help="autocast dtype")
    parser.add_argument(
        "--compile", action="store_true", help="add a torch.compile column per model (logits checked against eager)"
    )
    parser.add_argument(
        "--before",
        help="add each model as the library at this path defines it (another checkout), same weights, same rounds. "
        "Its worker is a second process whose OpenMP threads spin after each call unless OMP_WAIT_POLICY is PASSIVE, "
        "taking the cores from the next call in this one: pair it with --omp_wait_policy PASSIVE, or run each "
        "checkout's benchmark on its own for the figures users see",
    )
    parser.add_argument("--profile", action="store_true", help="print the time per component of every column")
    parser.add_argument("--profile_reps", type=int, default=5, help="calls averaged per component figure")
    parser.add_argument(
        "--scan_backend",
        default="auto",
        help="ECGMamba's selective-scan backend (config.scan_backend, which checks the name)",
    )
    parser.add_argument(
        "--memory",
        default="auto",
        choices=("auto", "subprocess", "inprocess"),
        help="auto: subprocess on CPU (full run), in process on CUDA and with --quick",
    )
    parser.add_argument("--memory_limit_gb", type=float, default=None, help="address-space cap of CPU probes")
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    parser.add_argument("--_timing_worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.lengths = [LENGTHS[0]]
        args.batch = min(args.batch, 2)
        args.reps = min(args.reps, 2)
        args.min_reps = min(args.min_reps, args.reps)
        args.case_timeout = min(args.case_timeout, 60)
    if args.memory == "auto":
        args.memory = "subprocess" if args.device == "cpu" and not args.quick else "inprocess"
    if args.memory_limit_gb is None:
        import psutil

        args.memory_limit_gb = round(min(16.0, 0.75 * psutil.virtual_memory().available / 2**30), 1)
    return args


def build_cases(args) -> list[Case]:
    cases = []
    for length in args.lengths:
        cases += [Case("latency", length, 1), Case("throughput", length, args.batch)]
        if length == args.lengths[0]:
            cases.append(Case("train", length, args.batch))
    return cases


def prepare_models(names_overrides: dict, args, device, log) -> tuple[dict, dict]:
    """Build each model; returns (models, info) with params, FLOPs and scan backend."""
    import torch

    from modeling_ecgmamba.selective_scan import resolve_backend

    models, info = {}, {}
    for key, (name, overrides) in names_overrides.items():
        cpu_model = make_model(name, overrides, torch.device("cpu"), args.scan_backend)
        entry = {"model_type": name, "overrides": overrides, "params": num_parameters(cpu_model)}
        entry["gflops"] = {str(length): count_flops(cpu_model, length) / 1e9 for length in args.flop_lengths}
        if name == "ecgmamba":
            probe = torch.empty(1, 1, 1, device=device)
            backend = None if args.scan_backend == "auto" else args.scan_backend
            entry["scan_backend"] = resolve_backend(probe, backend)
            cfg = cpu_model.config
            tokens = LENGTHS[0]
            for stride in cfg.encoder_strides if cfg.use_encoder else ():
                tokens = -(-tokens // stride)  # "same"-padded odd kernels: ceil(length / stride)
            entry["tokens_per_10s"] = tokens
        models[key] = cpu_model.to(device).eval()
        info[key] = entry
        first = str(args.flop_lengths[0])
        backend = f", scan backend {entry['scan_backend']}" if "scan_backend" in entry else ""
        log(
            f"  {key:<28} {entry['params'] / 1e6:.3f} M params, {entry['gflops'][first]:.3f} GFLOPs/record {first}{backend}"
        )
    return models, info


def add_columns(models: dict, info: dict, args, device, log) -> tuple[dict, BeforeWorker | None]:
    """The --compile and --before columns of each model: {column: model}, and the worker of --before."""
    import torch

    columns, worker = {}, None
    names = list(models)
    if args.before:
        worker = BeforeWorker(args.before, models, args)
        log(f"  --before: {worker.library} (git {git_commit(args.before)}), this run's weights")
        if os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
            log(
                "  warning: OMP_WAIT_POLICY is not PASSIVE: each process's spinning threads slow the other's next call "
                "(see --before's help); the columns are not the figures a user sees"
            )
        for name in names:
            key = f"{name} before"
            columns[key] = BeforeModel(worker, name)
            logits = torch.tensor(worker.call("logits", name, Case("throughput", LENGTHS[0], 2))["logits"])
            parity = float((logits - reference_logits(models[name], device)).abs().max())
            info[key] = {
                **info[name],
                "cases": {},
                "variant": f"--before {args.before}",
                "logits_max_abs_diff": parity,
            }
            log(f"  {key:<28} max |logit difference| to this checkout: {parity:.1e}")
    if args.compile:
        for name in names:
            key = f"{name} compiled"
            columns[key] = torch.compile(models[name])
            start = time.perf_counter()
            parity = float(
                (reference_logits(columns[key], device) - reference_logits(models[name], device)).abs().max()
            )
            info[key] = {**info[name], "cases": {}, "variant": "torch.compile", "logits_max_abs_diff": parity}
            info[key]["first_compile_s"] = time.perf_counter() - start
            log(
                f"  {key:<28} max |logit difference| to eager: {parity:.1e} (first compile {info[key]['first_compile_s']:.0f} s)"
            )
    return columns, worker


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args._worker:
        worker_main(json.loads(args._worker))
        return {}
    if args._timing_worker:
        timing_worker_main(json.loads(args._timing_worker))
        return {}
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    if args.omp_wait_policy != "default":
        # Read by torch's and numba's OpenMP runtimes when they start (also inherited by the probe processes).
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
    omp_effective = "torch" not in sys.modules  # torch imported earlier (in-process use) keeps its runtime's policy
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    args.flop_lengths = list(args.lengths)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(message, flush=True)

    meta = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "device_type": device.type,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "amp": args.amp,
        "compile": args.compile,
        "before": args.before and f"{Path(args.before).resolve()} (git {git_commit(args.before)})",
        "lengths": args.lengths,
        "batch": args.batch,
        "reps_requested": args.reps,
        "case_budget": args.case_budget,
        "quick": args.quick,
        "memory_method": None,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default")
        + ("" if omp_effective else " (set after torch was imported: not effective)"),
        "git": git_state(),
        "scan_flops": f"batch * channels * steps * ({SCAN_FLOPS_PER_STATE} * state_size + {SCAN_FLOPS_PER_STEP})",
        "attention_flops": "4 * batch * heads * q_len * k_len * head_dim",
    }
    report: dict = {"meta": meta, "models": {}}
    log(
        f"# {meta['device']} ({device.type}), torch {meta['torch']}, {args.threads} threads, load average "
        f"{meta['load_average_start']}, OMP_WAIT_POLICY {meta['omp_wait_policy']}, amp {args.amp}, compile "
        f"{args.compile}, git {meta['git']}"
    )

    if not args.skip_main or args.profile:
        run_main_table(args, device, report, log)
    if args.candidates:
        run_candidates(args, device, report, log)

    meta["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    meta["wall_s"] = time.perf_counter() - started
    log(f"# done in {meta['wall_s']:.0f} s; load average at the end {meta['load_average_end']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


def run_main_table(args, device, report: dict, log) -> None:
    cases = build_cases(args)
    names = list(args.models)
    log("## models")
    models, info = prepare_models({name: (name, {}) for name in names}, args, device, log)
    for name in names:
        info[name]["cases"] = {}
    report["models"] = info
    extra, worker = add_columns(models, info, args, device, log)
    columns = [*names, *extra]
    try:
        if args.profile:
            run_profile(args, device, {**models, **extra}, report, log)
        if not args.skip_main:
            time_main_table(args, device, cases, models, extra, report, log)
    finally:
        if worker is not None:
            worker.close()
    if not args.skip_main:
        log("")
        log(main_table_text(report, cases, columns))
        log("")
        for line in target_lines(report):
            log(line)


def time_main_table(args, device, cases, models: dict, extra: dict, report: dict, log) -> None:
    """Memory probes of the models, then the timing rounds of every column, filling report["models"]."""
    info, names = report["models"], list(models)
    probes: dict = {}
    if args.memory == "subprocess":
        report["meta"]["memory_method"] = (
            "subprocess per model: VmHWM (reset via /proc/self/clear_refs) - VmRSS "
            "before the call, model and input allocated, glibc mmap threshold fixed at 64 KiB"
        )
        log(f"## probes (fresh process per model; peak RSS growth; memory cap {args.memory_limit_gb} GB)")
        for name in names:
            probes.update(run_probes([(name, case) for case in cases], args, log))
    else:
        report["meta"]["memory_method"] = PeakMemory(device).method + " in process"
        if device.type == "cpu" and return_freed_memory_to_system():
            report["meta"]["memory_method"] += ", glibc mmap threshold fixed at 64 KiB"

    log("## timing (interleaved: models and lengths take turns within each round)")
    report["reps"] = {}
    for kind in ("latency", "throughput", "train"):
        plan = []
        for case in (c for c in cases if c.kind == kind):
            runnable, estimates = {}, []
            for name in names:
                probe = probes.get((name, case))
                if probe is not None and probe["status"] != "ok":
                    info[name]["cases"][case.label] = {"status": probe["status"]}
                    continue
                runnable[name] = models[name]
                if probe is not None:
                    estimates.append(probe["seconds"])
                    info[name]["cases"][case.label] = {"peak_mb": probe["peak_mb"]}
            if args.memory == "inprocess":
                measure_inprocess_memory(runnable, case, device, args, info)
                runnable = {n: m for n, m in runnable.items() if info[n]["cases"][case.label].get("status") != "OOM"}
                runnable = {
                    n: m for n, m in runnable.items() if info[n]["cases"][case.label].get("status") != "timeout"
                }
                estimates = [info[n]["cases"][case.label]["probe_s"] for n in runnable]
            # A column of a model joins the case when its model runs it; its time counts like the model's.
            columns = {key: model for key, model in extra.items() if info[key]["model_type"] in runnable}
            estimates += [estimates[0]] * len(columns) if estimates else []
            plan.append((case, {**runnable, **columns}, plan_reps(estimates, args)))
            report["reps"][case.label] = plan[-1][2]
        # measure_inprocess_memory has just warmed every model up at these shapes
        column_warmup = {key: "full" if key.endswith(" compiled") else "small" for key in extra}
        warmup = args.memory != "inprocess"
        timed = time_rounds(plan, device, args.amp, args.case_timeout, warmup, column_warmup)
        for case, runnable, reps in plan:
            for name, entry in timed[case.label].items():
                info[name]["cases"].setdefault(case.label, {}).update(entry)
            shown = ", ".join(f"{n} {fmt(case_value(info[n]['cases'].get(case.label), case))}" for n in runnable)
            log(f"  {case.label:<24} reps {reps:>2}: {shown}")


def measure_inprocess_memory(models: dict, case: Case, device, args, info: dict) -> None:
    """One call per model under PeakMemory, in this process (CUDA, or --quick on CPU); also a time estimate."""
    x, labels = make_inputs(case, device)
    for name, model in models.items():
        entry = info[name]["cases"].setdefault(case.label, {})
        try:
            run_case(model, case, x, labels, device, args.amp)  # warm-up
            with PeakMemory(device) as peak:
                entry["probe_s"] = run_case(model, case, x, labels, device, args.amp)
            entry["peak_mb"] = peak.peak_mb
            if entry["probe_s"] > args.case_timeout:
                entry["status"] = "timeout"
        except Exception as exc:
            if not is_oom(exc):
                raise
            entry["status"] = "OOM"
            if device.type == "cuda":
                import torch

                torch.cuda.empty_cache()


def main_table_text(report: dict, cases: list[Case], names: list[str]) -> str:
    info = report["models"]
    rows = [("params (M)", "", {n: info[n]["params"] / 1e6 for n in names})]
    for length in report["meta"]["lengths"]:
        rows.append(
            (f"GFLOPs / record {seconds_label(length)}", "", {n: info[n]["gflops"][str(length)] for n in names})
        )
    units = {"latency": "ms", "throughput": "records/s", "train": "s / batch"}
    for case in cases:
        values = {}
        for name in names:
            entry = info[name]["cases"].get(case.label, {})
            value = case_value(entry, case)
            values[name] = value if value is not None else entry.get("status", "-")
        rows.append((f"{case.label} ({units[case.kind]})", str(report["reps"].get(case.label, "")), values))
    for case in cases:
        if case.kind == "latency":
            continue
        values = {}
        for name in names:
            entry = info[name]["cases"].get(case.label, {})
            status = entry.get("status", "-")
            values[name] = (
                entry.get("peak_mb") if entry.get("peak_mb") is not None else {"ok": "-"}.get(status, status)
            )
        rows.append((f"peak memory {case.label} (MB)", "", values))
    note = (
        f"# ratios (x) are relative to {names[0]}; latency/train: lower is better, throughput: higher is better; "
        f"memory: {report['meta']['memory_method']}"
    )
    few = [label for label, reps in report["reps"].items() if reps < report["meta"]["reps_requested"]]
    if few:
        note += (
            f"\n# fewer than {report['meta']['reps_requested']} repetitions (median of the 'reps' column) for "
            f"{', '.join(few)}: capped by --case_budget {report['meta']['case_budget']:g} s per case"
        )
    return note + "\n" + render_table(rows, names)


def run_candidates(args, device, report: dict, log) -> None:
    """FLOPs, params and batch throughput at 10 s of candidate ECGMamba defaults (and xresnet1d101's FLOPs)."""
    log("## candidate ECGMamba defaults")
    args.flop_lengths = [LENGTHS[0]]
    entries = {key: ("ecgmamba", overrides) for key, overrides in CANDIDATES.items()}
    entries["xresnet1d101 (reference)"] = ("xresnet1d101", {})
    models, info = prepare_models(entries, args, device, log)
    case = Case("throughput", LENGTHS[0], args.batch)
    timed = time_rounds([(case, models, args.reps)], device, args.amp, args.case_timeout)[case.label]
    for key, entry in timed.items():
        info[key]["cases"] = {case.label: entry}
    report["candidates"] = info
    xres = info["xresnet1d101 (reference)"]["gflops"][str(LENGTHS[0])]
    header = ["candidate", "tokens/10 s", "params (M)", "GFLOPs/10 s", "vs xresnet1d101", f"{case.label} (rec/s)"]
    lines = [header]
    base = case_value(timed[next(iter(CANDIDATES))], case)
    for key, entry in info.items():
        gflops = entry["gflops"][str(LENGTHS[0])]
        value = case_value(timed[key], case)
        shown = (
            fmt(value) + (f" ({fmt(value / base, 2)}x)" if value and base else "") if value else timed[key]["status"]
        )
        lines.append(
            [
                key,
                str(entry.get("tokens_per_10s", "-")),
                fmt(entry["params"] / 1e6),
                fmt(gflops),
                f"{fmt(gflops / xres, 3)}x",
                shown,
            ]
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    log(f"# reps {args.reps}, interleaved; throughput ratio relative to the default")
    log("\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines))


if __name__ == "__main__":
    main()
