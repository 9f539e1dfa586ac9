"""Selective scan (the S6 recurrence of Mamba) with interchangeable backends.

This file travels inside Hub checkpoints as remote code: at module level it imports only the standard library,
NumPy and PyTorch. numba (compiled CPU kernel) and mamba_ssm (CUDA kernel) are imported lazily, on first use, and
guarded, so a machine without them still runs the pure-PyTorch scan.

Semantics and layout are those of ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn`` (real-valued,
input-dependent ``B`` and ``C``). Per batch element ``b``, channel ``d`` and state index ``n``::

    dt_t = softplus(delta_t + delta_bias)                (softplus only if ``delta_softplus``)
    h_t  = exp(dt_t * A[d, n]) * h_{t-1} + dt_t * B[b, n, t] * u_t,      h_0 = 0
    y_t  = sum_n C[b, n, t] * h_t + D[d] * u_t
    out  = y * silu(z)                                   (only if ``z`` is given)

Backends (``selective_scan(..., backend=...)``; ``None``/``"auto"`` chooses, see :func:`resolve_backend`):

- ``"reference"``: plain loop over time (:func:`selective_scan_ref`), the test oracle; slow.
- ``"cpu_kernel"``: numba-compiled forward and hand-written backward; the default on CPU.
- ``"torch"``: chunked pure-PyTorch scan (:func:`selective_scan_torch`); the fallback, and what ONNX export traces.
- ``"cuda"``: ``mamba_ssm``'s fused CUDA kernel, for CUDA tensors when ``mamba_ssm`` imports.

The environment variable ``ECGMAMBA_SCAN_BACKEND`` overrides the automatic choice when ``backend`` is ``None``.
"""

from __future__ import annotations

import logging
import math
import os
import threading

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

__all__ = [
    "BACKENDS",
    "available_backends",
    "resolve_backend",
    "selective_scan",
    "selective_scan_ref",
    "selective_scan_torch",
]

BACKENDS = ("reference", "cpu_kernel", "torch", "cuda")
ENV_VAR = "ECGMAMBA_SCAN_BACKEND"

# Steps per chunk of the pure-PyTorch scan. Inside a chunk the decays are products of at most
# _TORCH_CHUNK factors, each clamped to >= exp(_LOG_DECAY_MIN); with the mid-chunk reference point used in
# _torch_scan_chunk every exponent stays within +-_TORCH_CHUNK * |_LOG_DECAY_MIN| / 2 = 80 < 88 (float32 exp
# range), so nothing over- or underflows whatever dt is.
_TORCH_CHUNK = 8
_LOG_DECAY_MIN = -20.0

_SOFTPLUS_THRESHOLD = 20.0  # torch.nn.functional.softplus's default: softplus(x) = x above it


# --------------------------------------------------------------------------------------------------------------
# Reference
# --------------------------------------------------------------------------------------------------------------


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for every input dtype but float64, which is kept (so tests can build a float64 oracle)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _discretisation_inputs(u, delta, A, B, C, delta_bias, delta_softplus):
    """Cast to the compute dtype and apply ``delta_bias`` and the softplus: returns (u, dt, A, B, C)."""
    cdt = _compute_dtype(u.dtype)
    delta = delta.to(cdt)
    if delta_bias is not None:
        delta = delta + delta_bias[..., None].to(cdt)
    if delta_softplus:
        delta = F.softplus(delta)
    return u.to(cdt), delta, A.to(cdt), B.to(cdt), C.to(cdt)


def _skip_and_gate(y, u, D, z):
    """y + D * u, then times silu(z); y and u in the compute dtype."""
    if D is not None:
        y = y + u * D.to(y.dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Selective scan as a plain loop over time: the oracle the fast paths are tested against.

    A port of ``mamba_ssm``'s ``selective_scan_ref`` restricted to real values and input-dependent ``B``, ``C``.

    Shapes (B: batch, D: channels, N: state size, L: length)::

        u:          (B D L)
        delta:      (B D L)
        A:          (D N)      negative reals
        B:          (B N L)
        C:          (B N L)
        D:          (D)        or None
        z:          (B D L)    or None
        delta_bias: (D)        or None
        out:        (B D L)    in ``u``'s dtype

    Computes in float32 (float64 if ``u`` is float64); differentiable through autograd.
    """
    dtype_in = u.dtype
    u, delta, A, B, C = _discretisation_inputs(u, delta, A, B, C, delta_bias, delta_softplus)
    batch, dim, length = u.shape
    # 1. Discretise: deltaA = exp(dt * A), deltaB_u = dt * B * u, both (B D L N).
    delta_a = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    delta_b_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    # 2. Recurrence over time; the state x is (B D N).
    x = A.new_zeros((batch, dim, A.shape[1]))
    ys = []
    for i in range(length):
        x = delta_a[:, :, i] * x + delta_b_u[:, :, i]
        ys.append(torch.einsum("bdn,bn->bd", x, C[:, :, i]))
    y = torch.stack(ys, dim=2)  # (B D L)
    # 3. Skip connection and gate.
    return _skip_and_gate(y, u, D, z).to(dtype_in)


# --------------------------------------------------------------------------------------------------------------
# Pure-PyTorch chunked scan
# --------------------------------------------------------------------------------------------------------------


def _torch_scan_chunk(h0, delta_c, u_c, B_c, C_c, A):
    """One chunk of the scan. h0: (B D N); delta_c, u_c: (B D T); B_c, C_c: (B N T); A: (D N).

    Returns ``(y_c, h_T)`` with y_c: (B D T) (without the D skip and the gate) and h_T: (B D N).

    Within the chunk, with S_t = sum_{k<=t} dt_k A (cumulative log-decay) and a reference point R:
    h_t = exp(S_t - R) * (exp(R) h0 + sum_{s<=t} exp(R - S_s) dt_s B_s u_s). R = S_T / 2 keeps both exponents
    within half the chunk's total log-decay. Out of place throughout (ONNX-exportable; no cumprod).
    """
    log_decay = (delta_c.unsqueeze(-1) * A[:, None, :]).clamp(min=_LOG_DECAY_MIN)  # (B D T N)
    s = torch.cumsum(log_decay, dim=2)
    r = 0.5 * s[:, :, -1:, :]  # (B D 1 N)
    inflow = (delta_c * u_c).unsqueeze(-1) * B_c.transpose(1, 2).unsqueeze(1)  # (B D T N)
    acc = torch.cumsum(torch.exp(r - s) * inflow, dim=2) + torch.exp(r) * h0.unsqueeze(2)
    h = torch.exp(s - r) * acc  # (B D T N)
    y = (h * C_c.transpose(1, 2).unsqueeze(1)).sum(-1)  # (B D T)
    return y, h[:, :, -1]


def _is_tracing() -> bool:
    """True while exporting (ONNX, torch.export), JIT-tracing or compiling: only traceable ops may run."""
    checks = (
        lambda: torch.onnx.is_in_onnx_export(),
        lambda: torch.jit.is_tracing(),
        lambda: torch.compiler.is_compiling(),
        lambda: torch.compiler.is_exporting(),
    )
    for check in checks:
        try:
            if check():
                return True
        except Exception:  # an API missing from this torch version
            pass
    return False


def selective_scan_torch(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, chunk_size=None):
    """Pure-PyTorch selective scan: sequential over chunks of ``chunk_size`` steps, parallel inside a chunk.

    Same arguments and shapes as :func:`selective_scan_ref`. Only one chunk's ``(B D T N)`` tensors exist at a
    time; under autograd each chunk is checkpointed (recomputed in backward), so training memory is
    O(B D L + B D N L / T) instead of several copies of the ``(B D L N)`` state tensor. Exports to ONNX
    (``torch.onnx.export(..., dynamo=True)``, opset 18) for a fixed length.
    """
    dtype_in = u.dtype
    chunk = int(chunk_size or _TORCH_CHUNK)
    u, delta, A, B, C = _discretisation_inputs(u, delta, A, B, C, delta_bias, delta_softplus)
    batch, dim, length = u.shape
    checkpoint = torch.is_grad_enabled() and any(t.requires_grad for t in (u, delta, A, B, C)) and not _is_tracing()
    h = u.new_zeros((batch, dim, A.shape[1]))
    ys = []
    for start in range(0, length, chunk):
        sl = slice(start, min(start + chunk, length))
        args = (h, delta[:, :, sl], u[:, :, sl], B[:, :, sl], C[:, :, sl], A)
        if checkpoint:
            y_c, h = torch.utils.checkpoint.checkpoint(_torch_scan_chunk, *args, use_reentrant=False)
        else:
            y_c, h = _torch_scan_chunk(*args)
        ys.append(y_c)
    y = torch.cat(ys, dim=2)
    return _skip_and_gate(y, u, D, z).to(dtype_in)


# --------------------------------------------------------------------------------------------------------------
# Compiled CPU kernel (numba), loaded lazily
# --------------------------------------------------------------------------------------------------------------

_cpu_kernels = None  # namespace of compiled functions once loaded
_cpu_kernels_error = None  # the exception if loading failed
_cpu_lock = threading.Lock()
_warned = set()


def _warn_once(key: str, message: str, *args) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(message, *args)


def _build_cpu_kernels():
    """Import numba and JIT-define the forward and backward kernels (compiled on first call, cached to disk).

    Kernel layouts (all float32, C-contiguous): u, delta, z, out: (B D L); A: (D N); Bt, Ct: (B L N) (time-major,
    so the inner loop over the state is contiguous); Dv, bias: (D). Unused optional inputs are passed as
    zero-filled arrays with their flag False, so there is one compiled signature.
    """
    import numba
    from numba import prange

    def jit(fn):
        try:
            return numba.njit(parallel=True, cache=True, fastmath=False)(fn)
        except Exception:  # no writable cache location for this source file: compile without a disk cache
            return numba.njit(parallel=True, cache=False, fastmath=False)(fn)

    @jit
    def forward(inputs, flags, out):
        u, delta, A, Bt, Ct, Dv, z, bias = inputs
        has_d, has_z, has_bias, softplus = flags
        batch, dim, length = u.shape
        nstate = A.shape[1]
        for task in prange(batch * dim):
            b = task // dim
            d = task % dim
            h = np.zeros(nstate, dtype=np.float32)
            a = A[d]
            for t in range(length):
                dt = delta[b, d, t]
                if has_bias:
                    dt += bias[d]
                if softplus and dt <= 20.0:
                    dt = np.float32(math.log1p(math.exp(dt)))
                ut = u[b, d, t]
                dtu = dt * ut
                y = np.float32(0.0)
                for n in range(nstate):
                    h[n] = math.exp(dt * a[n]) * h[n] + dtu * Bt[b, t, n]
                    y += Ct[b, t, n] * h[n]
                if has_d:
                    y += Dv[d] * ut
                if has_z:
                    zt = z[b, d, t]
                    y *= zt / (np.float32(1.0) + math.exp(-zt))
                out[b, d, t] = y

    @jit
    def backward(inputs, flags, dout, groups, grads):
        """One task per (batch element, group of channels); channels of a task run one after the other, so
        dB_part/dC_part (G B L N) are written without races. dA_part (B D N), dD_part and dbias_part (B D) are
        per (b, d) and reduced over the batch by the caller."""
        u, delta, A, Bt, Ct, Dv, z, bias = inputs
        has_d, has_z, has_bias, softplus = flags
        du, ddelta, dz, dA_part, dB_part, dC_part, dD_part, dbias_part = grads
        batch, dim, length = u.shape
        nstate = A.shape[1]
        per_group = (dim + groups - 1) // groups
        for task in prange(batch * groups):
            b = task // groups
            g = task % groups
            hs = np.empty((length, nstate), dtype=np.float32)  # states h_t
            es = np.empty((length, nstate), dtype=np.float32)  # decays exp(dt_t A)
            dts = np.empty(length, dtype=np.float32)
            ys = np.empty(length, dtype=np.float32)
            h = np.empty(nstate, dtype=np.float32)
            adj = np.empty(nstate, dtype=np.float32)
            da_acc = np.empty(nstate, dtype=np.float64)
            for d in range(g * per_group, min(dim, (g + 1) * per_group)):
                a = A[d]
                dd = Dv[d] if has_d else np.float32(0.0)
                # 1. Recompute the forward pass for this channel, keeping states and decays.
                for n in range(nstate):
                    h[n] = 0.0
                for t in range(length):
                    dt = delta[b, d, t]
                    if has_bias:
                        dt += bias[d]
                    if softplus and dt <= 20.0:
                        dt = np.float32(math.log1p(math.exp(dt)))
                    dts[t] = dt
                    dtu = dt * u[b, d, t]
                    y = np.float32(0.0)
                    for n in range(nstate):
                        e = np.float32(math.exp(dt * a[n]))
                        es[t, n] = e
                        h[n] = e * h[n] + dtu * Bt[b, t, n]
                        hs[t, n] = h[n]
                        y += Ct[b, t, n] * h[n]
                    ys[t] = y + dd * u[b, d, t]
                # 2. Reverse pass; adj[n] is dLoss/dh_t[n] flowing back from step t+1.
                for n in range(nstate):
                    adj[n] = 0.0
                    da_acc[n] = 0.0
                dd_acc = 0.0
                dbias_acc = 0.0
                for t in range(length - 1, -1, -1):
                    ut = u[b, d, t]
                    dt = dts[t]
                    dy = dout[b, d, t]
                    if has_z:
                        zt = z[b, d, t]
                        sig = np.float32(1.0) / (np.float32(1.0) + np.float32(math.exp(-zt)))
                        dz[b, d, t] = dy * ys[t] * sig * (np.float32(1.0) + zt * (np.float32(1.0) - sig))
                        dy = dy * zt * sig
                    dd_acc += dy * ut
                    du_t = dy * dd
                    ddt = np.float32(0.0)
                    dtu = dt * ut
                    for n in range(nstate):
                        hprev = hs[t - 1, n] if t > 0 else np.float32(0.0)
                        e = es[t, n]
                        bn = Bt[b, t, n]
                        gh = adj[n] + dy * Ct[b, t, n]
                        dC_part[g, b, t, n] += dy * hs[t, n]
                        dB_part[g, b, t, n] += gh * dtu
                        du_t += gh * dt * bn
                        ghe = gh * e * hprev
                        ddt += ghe * a[n] + gh * bn * ut
                        da_acc[n] += ghe * dt
                        adj[n] = gh * e
                    if softplus:
                        raw = delta[b, d, t] + (bias[d] if has_bias else np.float32(0.0))
                        if raw <= 20.0:
                            ddt = ddt / (np.float32(1.0) + np.float32(math.exp(-raw)))
                    ddelta[b, d, t] = ddt
                    dbias_acc += ddt
                    du[b, d, t] = du_t
                for n in range(nstate):
                    dA_part[b, d, n] = da_acc[n]
                dD_part[b, d] = dd_acc
                dbias_part[b, d] = dbias_acc

    return {"numba": numba, "forward": forward, "backward": backward}


def _load_cpu_kernels():
    """The compiled-kernel namespace, or None (with one logged warning) if numba is missing or broken."""
    global _cpu_kernels, _cpu_kernels_error
    if _cpu_kernels is None and _cpu_kernels_error is None:
        with _cpu_lock:
            if _cpu_kernels is None and _cpu_kernels_error is None:
                try:
                    _cpu_kernels = _build_cpu_kernels()
                except Exception as exc:  # ImportError, or a broken numba/llvmlite install
                    _cpu_kernels_error = exc
    if _cpu_kernels is None:
        _warn_once(
            "numba",
            "ECGMamba: the compiled CPU selective scan is unavailable (%s: %s); using the slower pure-PyTorch scan. "
            "Install numba to enable it.",
            type(_cpu_kernels_error).__name__,
            _cpu_kernels_error,
        )
    return _cpu_kernels


def _set_kernel_threads(kernels) -> None:
    numba = kernels["numba"]
    try:
        numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    except Exception:
        pass


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).contiguous().numpy()


_EMPTY = np.zeros(1, dtype=np.float32)


class _CpuKernelScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        kernels = _load_cpu_kernels()
        _set_kernel_threads(kernels)
        batch, dim, length = u.shape
        arrays = (
            _np(u),
            _np(delta),
            _np(A),
            _np(B.transpose(1, 2)),
            _np(C.transpose(1, 2)),
            _np(D) if D is not None else _EMPTY,
            _np(z) if z is not None else _EMPTY.reshape(1, 1, 1),
            _np(delta_bias) if delta_bias is not None else _EMPTY,
        )
        flags = (D is not None, z is not None, delta_bias is not None, bool(delta_softplus))
        out = np.empty((batch, dim, length), dtype=np.float32)
        kernels["forward"](arrays, flags, out)
        ctx.arrays = arrays
        ctx.flags = flags
        ctx.dtypes = [t.dtype if t is not None else None for t in (u, delta, A, B, C, D, z, delta_bias)]
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, dout):
        kernels = _load_cpu_kernels()
        _set_kernel_threads(kernels)
        u, delta, A, Bt, Ct, Dv, z, bias = ctx.arrays
        has_d, has_z, has_bias, _ = ctx.flags
        batch, dim, length = u.shape
        nstate = A.shape[1]
        nthreads = kernels["numba"].get_num_threads()
        groups = max(1, min(dim, -(-4 * nthreads // batch)))
        du = np.empty_like(u)
        ddelta = np.empty_like(u)
        dz = np.zeros_like(u) if has_z else _EMPTY.reshape(1, 1, 1)
        dA_part = np.empty((batch, dim, nstate), dtype=np.float32)
        dB_part = np.zeros((groups, batch, length, nstate), dtype=np.float32)
        dC_part = np.zeros((groups, batch, length, nstate), dtype=np.float32)
        dD_part = np.empty((batch, dim), dtype=np.float32)
        dbias_part = np.empty((batch, dim), dtype=np.float32)
        grads = (du, ddelta, dz, dA_part, dB_part, dC_part, dD_part, dbias_part)
        kernels["backward"](ctx.arrays, ctx.flags, _np(dout), groups, grads)
        ctx.arrays = None
        dtypes = ctx.dtypes

        def out(x, i):
            return torch.from_numpy(x).to(dtypes[i])

        grads = [
            out(du, 0),
            out(ddelta, 1),
            out(dA_part.sum(0), 2),
            torch.from_numpy(dB_part.sum(0)).transpose(1, 2).contiguous().to(dtypes[3]),
            torch.from_numpy(dC_part.sum(0)).transpose(1, 2).contiguous().to(dtypes[4]),
            out(dD_part.sum(0), 5) if has_d else None,
            out(dz, 6) if has_z else None,
            out(dbias_part.sum(0), 7) if has_bias else None,
            None,
        ]
        return tuple(g if ctx.needs_input_grad[i] else None for i, g in enumerate(grads))


def selective_scan_cpu_kernel(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Selective scan with the numba kernel (CPU tensors). Raises RuntimeError if numba is unavailable."""
    if _load_cpu_kernels() is None:
        raise RuntimeError(f"backend 'cpu_kernel' is unavailable: {_cpu_kernels_error!r}")
    dtype_in = u.dtype
    out = _CpuKernelScan.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return out.to(dtype_in)


# --------------------------------------------------------------------------------------------------------------
# CUDA kernel (mamba_ssm), loaded lazily
# --------------------------------------------------------------------------------------------------------------

_cuda_fn = None
_cuda_error = None


def _load_cuda_kernel():
    """mamba_ssm's ``selective_scan_fn``, or None. Never raises: ``import mamba_ssm`` fails without CUDA."""
    global _cuda_fn, _cuda_error
    if _cuda_fn is None and _cuda_error is None:
        try:
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

            _cuda_fn = selective_scan_fn
        except Exception as exc:
            _cuda_error = exc
    return _cuda_fn


def selective_scan_cuda(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Selective scan with mamba_ssm's fused CUDA kernel. Raises RuntimeError if it is unavailable."""
    fn = _load_cuda_kernel()
    if fn is None:
        raise RuntimeError(f"backend 'cuda' is unavailable (mamba_ssm does not import): {_cuda_error!r}")
    if not u.is_cuda:
        raise RuntimeError("backend 'cuda' needs CUDA tensors")
    dtype_in = u.dtype
    # The kernel wants float32 A/D/delta_bias; u, delta, B, C, z may be fp32/fp16/bf16 (it accumulates in fp32).
    out = fn(
        u.contiguous(),
        delta.contiguous(),
        A.float().contiguous(),
        B.contiguous(),
        C.contiguous(),
        D=D.float().contiguous() if D is not None else None,
        z=z.contiguous() if z is not None else None,
        delta_bias=delta_bias.float().contiguous() if delta_bias is not None else None,
        delta_softplus=delta_softplus,
        return_last_state=False,
    )
    return out.to(dtype_in)


# --------------------------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------------------------

_IMPLS = {
    "reference": selective_scan_ref,
    "cpu_kernel": selective_scan_cpu_kernel,
    "torch": selective_scan_torch,
    "cuda": selective_scan_cuda,
}


def available_backends() -> list[str]:
    """Backends that can run on this machine (``"cuda"`` only if CUDA is available and mamba_ssm imports).

    Importing numba happens here (not the compilation, which happens on the first call of the kernel).
    """
    names = ["reference", "torch"]
    if _load_cpu_kernels() is not None:
        names.insert(1, "cpu_kernel")
    if torch.cuda.is_available() and _load_cuda_kernel() is not None:
        names.append("cuda")
    return names


def _check_backend_name(name: str) -> str:
    key = name.strip().lower()
    if key == "auto":
        return key
    if key not in BACKENDS:
        raise ValueError(f"unknown selective-scan backend {name!r}; valid: 'auto', {', '.join(map(repr, BACKENDS))}")
    return key


def resolve_backend(u: torch.Tensor, backend: str | None = None) -> str:
    """Name of the backend :func:`selective_scan` runs for inputs like ``u`` and this ``backend`` argument.

    ``backend=None`` reads ``ECGMAMBA_SCAN_BACKEND`` (unset or ``"auto"``: choose). Automatic choice: CUDA
    tensors run ``"cuda"`` if mamba_ssm imports, else ``"torch"`` (one logged warning); CPU tensors run
    ``"cpu_kernel"`` if numba imports and nothing is being traced/exported/compiled, else ``"torch"`` (one
    logged warning if numba is missing). An explicit backend that cannot run raises (ValueError for an unknown
    name, RuntimeError for an unavailable one).
    """
    if backend is None:
        backend = os.environ.get(ENV_VAR) or "auto"
    key = _check_backend_name(backend)
    if key != "auto":
        if key == "cpu_kernel":
            if _load_cpu_kernels() is None:
                raise RuntimeError(f"backend 'cpu_kernel' is unavailable (numba): {_cpu_kernels_error!r}")
            if u.is_cuda:
                raise RuntimeError("backend 'cpu_kernel' needs CPU tensors")
        elif key == "cuda":
            if not u.is_cuda:
                raise RuntimeError("backend 'cuda' needs CUDA tensors")
            if _load_cuda_kernel() is None:
                raise RuntimeError(f"backend 'cuda' is unavailable (mamba_ssm does not import): {_cuda_error!r}")
        return key
    if u.is_cuda:
        if _is_tracing():
            return "torch"
        if _load_cuda_kernel() is not None:
            return "cuda"
        _warn_once(
            "mamba_ssm",
            "ECGMamba: mamba_ssm's CUDA selective scan is unavailable (%s); using the slower pure-PyTorch scan.",
            _cuda_error,
        )
        return "torch"
    if u.device.type != "cpu" or _is_tracing():
        return "torch"
    return "cpu_kernel" if _load_cpu_kernels() is not None else "torch"


def selective_scan(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, backend=None
) -> torch.Tensor:
    """Selective scan, ``mamba_ssm.selective_scan_fn`` semantics (real-valued): see the module docstring.

    Args:
        u: (batch, dim, L) input.
        delta: (batch, dim, L) time steps (before ``delta_bias`` and the optional softplus).
        A: (dim, N) state matrix (negative reals).
        B, C: (batch, N, L) input-dependent input and output projections.
        D: (dim,) skip weights, or None.
        z: (batch, dim, L) gate, or None; if given the output is ``y * silu(z)``.
        delta_bias: (dim,) added to ``delta`` before the softplus, or None.
        delta_softplus: apply softplus to ``delta + delta_bias``.
        backend: None (``ECGMAMBA_SCAN_BACKEND`` or automatic), ``"auto"``, or one of
            ``"reference"``, ``"cpu_kernel"``, ``"torch"``, ``"cuda"``; see :func:`resolve_backend`.

    Returns:
        (batch, dim, L) tensor in ``u``'s dtype, computed in float32.
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    name = resolve_backend(u, backend)
    return _IMPLS[name](u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)


def _check_shapes(u, delta, A, B, C, D, z, delta_bias) -> None:
    if u.dim() != 3:
        raise ValueError(f"u must be (batch, dim, L), got shape {tuple(u.shape)}")
    batch, dim, length = u.shape
    nstate = A.shape[-1]
    expected = {
        "delta": (delta, (batch, dim, length)),
        "A": (A, (dim, nstate)),
        "B": (B, (batch, nstate, length)),
        "C": (C, (batch, nstate, length)),
        "D": (D, (dim,)),
        "z": (z, (batch, dim, length)),
        "delta_bias": (delta_bias, (dim,)),
    }
    for name, (tensor, shape) in expected.items():
        if tensor is not None and tuple(tensor.shape) != shape:
            raise ValueError(
                f"{name} must have shape {shape} (u is {tuple(u.shape)}, A is {tuple(A.shape)}), "
                f"got {tuple(tensor.shape)}"
            )
