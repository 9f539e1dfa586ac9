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
- ``"torch"``: chunked pure-PyTorch scan (:func:`selective_scan_torch`); the fallback.
- ``"parallel"``: the same recurrence with no Python loop over time (:func:`selective_scan_parallel`), so that a
  traced graph does not depend on the length; what ``torch.export``/ONNX export trace, chosen automatically there.
- ``"cuda"``: ``mamba_ssm``'s fused CUDA kernel, for CUDA tensors when ``mamba_ssm`` imports.

The environment variable ``ECGMAMBA_SCAN_BACKEND`` overrides the automatic choice when ``backend`` is ``None``.
"""

from __future__ import annotations

import logging
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
    "is_exporting",
    "is_tracing",
    "selective_scan",
    "selective_scan_parallel",
    "selective_scan_ref",
    "selective_scan_torch",
]

BACKENDS = ("reference", "cpu_kernel", "torch", "parallel", "cuda")
ENV_VAR = "ECGMAMBA_SCAN_BACKEND"

# Steps per chunk of the pure-PyTorch scan, and the floor of each step's log-decay dt * A there: inside a chunk
# the exponents stay within _TORCH_CHUNK * |_LOG_DECAY_MIN| = 64 (float32's exp overflows above 88; the margin
# keeps gradients finite), whatever dt is. Short chunks also keep the (B D N T) intermediates in cache, which
# measured faster than longer chunks on 2 cores.
_TORCH_CHUNK = 4
_TORCH_CHUNK_SEGMENT = 32  # steps per autograd checkpoint of the PyTorch scan (a multiple of _TORCH_CHUNK)
_LOG_DECAY_MIN = -16.0
# Steps per chunk of the loop-free scan: with log-decays clamped at -20 per step and exponents taken around the
# chunk's mid-point, they stay within +-80 (float32-safe).
_PARALLEL_CHUNK = 8
_PARALLEL_LOG_DECAY_MIN = -20.0


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

    Computes in float32 (float64 if ``u`` is float64); differentiable through autograd. Materialises two
    (B D L N) tensors: about 2.6 GB each at batch 32, 256 channels, N 16, L 5000.
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


def _torch_scan_chunk(h0, dt_c, u_c, B_c, C_c, A):
    """One chunk of T steps. h0: (B D N); dt_c, u_c: (B D T); B_c, C_c: (B N T); A: (D N).

    Returns ``(y_c, h_T)``: y_c (B D T) without the D skip and the gate, h_T (B D N) the state after the chunk.

    With S_t = sum_{k<=t} dt_k A (cumulative log-decay inside the chunk),
    h_t = exp(S_t) * (h0 + sum_{s<=t} exp(-S_s) dt_s B_s u_s). Each step's log-decay is clamped at
    _LOG_DECAY_MIN (a decay below exp(-16) = 1.1e-7 per step, float32's resolution, is kept at 1.1e-7), so
    |S_t| <= _TORCH_CHUNK * 16 = 64 and neither exp(+-S) nor the gradients overflow (float32's exp does above 88).
    Intermediates are (B D N T): B_c and C_c broadcast without copies and the cumsums run over the contiguous
    last dimension. Out of place where autograd needs it, no cumprod: exports to ONNX.
    """
    s = torch.cumsum((dt_c.unsqueeze(2) * A.unsqueeze(-1)).clamp(min=_LOG_DECAY_MIN), dim=-1)  # (B D N T)
    growth = torch.exp(s)
    # exp(-S); 1 / growth is cheaper but its derivative -1/growth^2 would overflow, so only without autograd
    shrink = torch.exp(-s) if torch.is_grad_enabled() else torch.reciprocal(growth)
    inflow = (dt_c * u_c).unsqueeze(2) * B_c.unsqueeze(1) * shrink  # exp(-S_s) dt_s B_s u_s
    inflow[..., 0] += h0
    h = growth * torch.cumsum(inflow, dim=-1)  # (B D N T)
    y = (h * C_c.unsqueeze(1)).sum(2)  # (B D T)
    return y, h[..., -1].contiguous()  # a copy: a view would keep the whole (B D N T) chunk alive


def _torch_scan_segment(h, dt, u, B, C, A):
    """Chunks of _TORCH_CHUNK steps one after the other over a segment: returns (y (B D T), final state)."""
    ys = []
    for start in range(0, dt.shape[-1], _TORCH_CHUNK):
        sl = slice(start, start + _TORCH_CHUNK)
        y_c, h = _torch_scan_chunk(h, dt[:, :, sl], u[:, :, sl], B[:, :, sl], C[:, :, sl], A)
        ys.append(y_c)
    return torch.cat(ys, dim=2), h


def selective_scan_torch(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Pure-PyTorch selective scan: sequential over chunks of _TORCH_CHUNK steps, parallel inside a chunk.

    Same arguments and shapes as :func:`selective_scan_ref`. Only one chunk's ``(B D N T)`` tensors exist at a
    time. Under autograd each segment of _TORCH_CHUNK_SEGMENT steps is checkpointed (recomputed in backward):
    training keeps O(B D L) plus one state per segment, B D N L / _TORCH_CHUNK_SEGMENT, instead of several copies
    of the ``(B D N L)`` states, and one segment's intermediates while its backward runs. Exports to ONNX
    (``torch.onnx.export(..., dynamo=True)``, opset 18) for a fixed length.
    """
    dtype_in = u.dtype
    u, delta, A, B, C = _discretisation_inputs(u, delta, A, B, C, delta_bias, delta_softplus)
    batch, dim, length = u.shape
    checkpoint = torch.is_grad_enabled() and any(t.requires_grad for t in (u, delta, A, B, C)) and not is_tracing()
    h = u.new_zeros((batch, dim, A.shape[1]))
    ys = []
    for start in range(0, length, _TORCH_CHUNK_SEGMENT):
        sl = slice(start, start + _TORCH_CHUNK_SEGMENT)
        args = (h, delta[:, :, sl], u[:, :, sl], B[:, :, sl], C[:, :, sl], A)
        if checkpoint:
            y_s, h = torch.utils.checkpoint.checkpoint(_torch_scan_segment, *args, use_reentrant=False)
        else:
            y_s, h = _torch_scan_segment(*args)
        ys.append(y_s)
    y = torch.cat(ys, dim=2) if len(ys) > 1 else ys[0]
    return _skip_and_gate(y, u, D, z).to(dtype_in)


def _call_quietly(check) -> bool:
    try:
        return bool(check())
    except Exception:  # an API missing from this torch version
        return False


def is_exporting() -> bool:
    """True while ``torch.export`` or the ONNX exporter traces the model: the graph must not depend on the length."""
    return _call_quietly(torch.compiler.is_exporting) or _call_quietly(torch.onnx.is_in_onnx_export)


def is_tracing() -> bool:
    """True while exporting, JIT-tracing or compiling: only traceable ops may run (no data-dependent checks)."""
    return is_exporting() or _call_quietly(torch.jit.is_tracing) or _call_quietly(torch.compiler.is_compiling)


# --------------------------------------------------------------------------------------------------------------
# Loop-free scan (export)
# --------------------------------------------------------------------------------------------------------------


def selective_scan_parallel(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, chunk_size=_PARALLEL_CHUNK
):
    """Selective scan without a Python loop over time or chunks: exportable with a dynamic length.

    Same semantics and shapes as :func:`selective_scan_ref`. Two levels: inside chunks of ``chunk_size`` steps,
    states from a zero start by cumulative sums around the chunk's mid-point; across chunks, the state entering
    chunk c is ``sum_{c' < c} exp(G_{c-1} - G_{c'}) h_{c'}`` (G: cumulative log-decay at chunk ends), a masked
    matrix product whose exponents are all <= 0. No cumprod (ONNX lacks it). Memory grows as
    ``(L / chunk)^2 * D * N`` per record: fine for 10-30 s windows, not for long records in eager mode.
    """
    dtype_in = u.dtype
    u, delta, A, B, C = _discretisation_inputs(u, delta, A, B, C, delta_bias, delta_softplus)
    batch, dim, length = u.shape
    nstate, size = A.shape[1], int(chunk_size)
    chunks = (length + size - 1) // size
    pad = chunks * size - length  # padded steps: dt = 0 (no decay) and no input, so the state passes through

    def split(x, channels):  # (B X L) -> (B X chunks T)
        return F.pad(x, (0, pad)).reshape(batch, channels, chunks, size)

    dt, x = split(delta, dim), split(u, dim)
    b_in = split(B, nstate).permute(0, 2, 3, 1).unsqueeze(1)  # (B 1 chunks T N)
    c_out = split(C, nstate).permute(0, 2, 3, 1).unsqueeze(1)
    log_decay = (dt.unsqueeze(-1) * A[:, None, None, :]).clamp(min=_PARALLEL_LOG_DECAY_MIN)  # (B D chunks T N)
    s = torch.cumsum(log_decay, dim=3)
    mid = 0.5 * s[:, :, :, -1:, :]
    inflow = (dt * x).unsqueeze(-1) * b_in
    local = torch.exp(s - mid) * torch.cumsum(torch.exp(mid - s) * inflow, dim=3)  # states from a zero start
    ends = torch.cumsum(s[:, :, :, -1, :], dim=2).transpose(2, 3)  # (B D N chunks): G_c
    gaps = ends.unsqueeze(-1) - ends.unsqueeze(-2)  # [c, c'] = G_c - G_c'
    index = torch.arange(chunks, device=u.device)
    causal = index[:, None] >= index[None, :]
    decay = torch.exp(torch.where(causal, gaps, torch.full_like(gaps, float("-inf"))))
    carried = (decay @ local[:, :, :, -1, :].transpose(2, 3).unsqueeze(-1)).squeeze(-1)  # state at chunk ends
    entering = F.pad(carried, (1, 0))[..., :-1].transpose(2, 3)  # (B D chunks N): state entering each chunk
    h = local + torch.exp(s) * entering.unsqueeze(3)
    y = (h * c_out).sum(-1).reshape(batch, dim, chunks * size)[:, :, :length]
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


# Kernels of the compiled CPU path. Plain Python here; _build_cpu_kernels() compiles them with numba on first use.
# They call each other through the module globals below, which _build_cpu_kernels() points at the compiled
# functions (numba resolves globals when it compiles; closures over other jitted functions would defeat numba's
# disk cache, whose key hashes a closure's contents). Layouts, all float32 and C-contiguous: u, delta, z, out:
# (B D L); A: (D N); Bt, Ct: (B L N), time-major so that the loops over the state index are contiguous and
# vectorise; Dv, bias: (D). Absent optional inputs come as one-element arrays with their flag False, so there is
# one compiled signature. The loops over the state index hold no reduction (fastmath is off, so a reduction would
# keep LLVM from vectorising them); sums over the state run in separate short loops.
_prange = range
_expf = _step = _kernel_f32_bits = _kernel_f32_from_bits = None
_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)


def _kernel_expf(x):
    """exp(x) in float32, within 1e-7 relative; branch-free so that loops calling it vectorise.

    Cephes' expf: x = k ln2 + r with |r| <= ln2/2, exp(r) by a degree-7 polynomial, 2^k from the exponent
    bits (k by the round-to-nearest 1.5*2^23 trick). Underflows to 0 below -87.3, overflows to inf above 88.7.
    """
    xc = x if x > np.float32(-87.0) else np.float32(-87.0)
    xc = xc if xc < np.float32(88.0) else np.float32(88.0)
    k = xc * np.float32(1.44269504088896341) + np.float32(12582912.0)
    fk = k - np.float32(12582912.0)
    r = xc - fk * np.float32(0.693359375) + fk * np.float32(2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * r * r + r + _ONE
    res = p * _kernel_f32_from_bits((_kernel_f32_bits(k) - np.int32(0x4B400000) + np.int32(127)) << np.int32(23))
    res = res if x > np.float32(-87.33654) else _ZERO
    return res if x < np.float32(88.72283) else np.float32(np.inf)


def _kernel_step(a, dt, dtu, bt, ct, h_prev, h_t, e_t):
    """One time step of one channel: e_t = exp(dt a), h_t = e_t h_prev + dt u B_t; returns C_t . h_t.
    h_prev and h_t must be different arrays (an overlap would keep LLVM from vectorising the loop)."""
    for n in range(a.shape[0]):
        e = _expf(dt * a[n])
        e_t[n] = e
        h_t[n] = e * h_prev[n] + dtu * bt[n]
    y = _ZERO
    for n in range(a.shape[0]):
        y += ct[n] * h_t[n]
    return y


def _kernel_forward(inputs, flags, out):
    u, delta, A, Bt, Ct, Dv, z = inputs
    has_d, has_z = flags
    batch, dim, length = u.shape
    nstate = A.shape[1]
    for task in _prange(batch * dim):
        b = task // dim
        d = task % dim
        a = A[d]
        dd = Dv[d] if has_d else _ZERO
        h_prev = np.zeros(nstate, dtype=np.float32)
        h = np.empty(nstate, dtype=np.float32)
        e = np.empty(nstate, dtype=np.float32)
        for t in range(length):
            dt = delta[b, d, t]
            ut = u[b, d, t]
            y = _step(a, dt, dt * ut, Bt[b, t], Ct[b, t], h_prev, h, e) + dd * ut
            h_prev, h = h, h_prev
            if has_z:
                zt = z[b, d, t]
                y *= zt / (_ONE + _expf(-zt))
            out[b, d, t] = y


def _kernel_backward(inputs, flags, dout, groups, grads):
    """One task per (batch element, group of channels); a task's channels run one after the other, so it adds
    into its own dB_part/dC_part (G B L N) slice without races. dA_part (B D N) and dD_part (B D) are per
    (b, d) and summed over the batch by the caller.

    Per channel: 1. recompute the forward pass into scratch (states h_t, decays exp(dt_t A), y_t:
    O(L N) per task, nothing of size B D L N); 2. run the adjoint recurrence backwards in time.
    """
    u, delta, A, Bt, Ct, Dv, z = inputs
    has_d, has_z = flags
    du, ddelta, dz, dA_part, dB_part, dC_part, dD_part = grads
    batch, dim, length = u.shape
    nstate = A.shape[1]
    per_group = (dim + groups - 1) // groups
    for task in _prange(batch * groups):
        b = task // groups
        g = task % groups
        hs = np.zeros((length + 1, nstate), dtype=np.float32)  # hs[t + 1] = h_t, hs[0] = h_{-1} = 0
        es = np.empty((length, nstate), dtype=np.float32)  # exp(dt_t A)
        ys = np.empty(length, dtype=np.float32)  # y_t + D u_t, before the gate
        adj = np.empty(nstate, dtype=np.float32)  # dLoss/dh_t, carried from step t + 1
        q1 = np.empty(nstate, dtype=np.float32)
        q2 = np.empty(nstate, dtype=np.float32)
        da_acc = np.empty(nstate, dtype=np.float64)
        for d in range(g * per_group, min(dim, (g + 1) * per_group)):
            a = A[d]
            dd = Dv[d] if has_d else _ZERO
            # 1. Forward recomputation.
            for t in range(length):
                dt = delta[b, d, t]
                ut = u[b, d, t]
                ys[t] = _step(a, dt, dt * ut, Bt[b, t], Ct[b, t], hs[t], hs[t + 1], es[t]) + dd * ut
            # 2. Reverse pass.
            for n in range(nstate):
                adj[n] = _ZERO
                da_acc[n] = 0.0
            dd_acc = 0.0
            for t in range(length - 1, -1, -1):
                ut = u[b, d, t]
                dt = delta[b, d, t]
                dtu = dt * ut
                dy = dout[b, d, t]
                if has_z:
                    zt = z[b, d, t]
                    sig = _ONE / (_ONE + _expf(-zt))
                    dz[b, d, t] = dy * ys[t] * sig * (_ONE + zt * (_ONE - sig))
                    dy = dy * zt * sig
                bt = Bt[b, t]
                ct = Ct[b, t]
                e_t = es[t]
                h_prev = hs[t]
                h_t = hs[t + 1]
                dc = dC_part[g, b, t]
                db = dB_part[g, b, t]
                for n in range(nstate):
                    gh = adj[n] + dy * ct[n]  # dLoss/dh_t
                    dc[n] += dy * h_t[n]
                    db[n] += gh * dtu
                    ghe = gh * e_t[n] * h_prev[n]
                    q1[n] = gh * bt[n]
                    q2[n] = ghe * a[n]
                    da_acc[n] += ghe * dt
                    adj[n] = gh * e_t[n]
                s1 = _ZERO
                s2 = _ZERO
                for n in range(nstate):
                    s1 += q1[n]
                    s2 += q2[n]
                du[b, d, t] = dy * dd + dt * s1
                dd_acc += dy * ut
                ddelta[b, d, t] = s2 + ut * s1
            for n in range(nstate):
                dA_part[b, d, n] = da_acc[n]
            dD_part[b, d] = dd_acc


def _build_cpu_kernels():
    """Import numba and JIT-wrap the kernels (compiled on their first call, cached to disk next to this file,
    or in numba's user-wide cache dir if this file's folder is read-only, or not at all if neither is writable)."""
    try:  # optional: in a try block, so that transformers does not require numba to load a checkpoint's code
        import numba
        from llvmlite import ir
        from numba import types
        from numba.extending import intrinsic
    except ImportError:
        raise

    def jit(fn, **options):
        options = {"cache": True, "fastmath": False, **options}
        try:
            return numba.njit(**options)(fn)
        except Exception:  # no writable cache location for this source file: compile without a disk cache
            return numba.njit(**{**options, "cache": False})(fn)

    @intrinsic
    def f32_bits(typingctx, x):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.IntType(32))

        return types.int32(types.float32), codegen

    @intrinsic
    def f32_from_bits(typingctx, x):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.FloatType())

        return types.float32(types.int32), codegen

    g = globals()
    g["_prange"] = numba.prange
    g["_kernel_f32_bits"] = f32_bits
    g["_kernel_f32_from_bits"] = f32_from_bits
    g["_expf"] = jit(_kernel_expf, inline="always")  # inlined in numba IR so that the callers' loops vectorise
    g["_step"] = jit(_kernel_step, inline="always")
    return {
        "numba": numba,
        "forward": jit(_kernel_forward, parallel=True),
        "backward": jit(_kernel_backward, parallel=True),
        "expf": g["_expf"],
    }


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


_EMPTY1 = np.zeros(1, dtype=np.float32)
_EMPTY3 = np.zeros((1, 1, 1), dtype=np.float32)


def _kernel_inputs(u, dt, A, B, C, D, z):
    """The kernels' input tuple: float32 C-contiguous arrays, B and C time-major, absent inputs as 1-element."""
    return (
        _np(u),
        _np(dt),
        _np(A),
        _np(B.transpose(1, 2)),
        _np(C.transpose(1, 2)),
        _np(D) if D is not None else _EMPTY1,
        _np(z) if z is not None else _EMPTY3,
    )


class _CpuKernelScan(torch.autograd.Function):
    """Autograd wrapper of the numba kernels, taking dt (bias and softplus already applied by autograd-tracked
    PyTorch ops: vectorised, and their backward comes for free). Saves only the inputs; backward recomputes the
    states."""

    @staticmethod
    def forward(ctx, u, dt, A, B, C, D, z):
        kernels = _load_cpu_kernels()
        _set_kernel_threads(kernels)
        flags = (D is not None, z is not None)
        out = np.empty(tuple(u.shape), dtype=np.float32)
        kernels["forward"](_kernel_inputs(u, dt, A, B, C, D, z), flags, out)
        ctx.flags = flags
        ctx.save_for_backward(u, dt, A, B, C, D, z)
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, dout):
        kernels = _load_cpu_kernels()
        _set_kernel_threads(kernels)
        saved = ctx.saved_tensors
        has_d, has_z = ctx.flags
        batch, dim, length = saved[0].shape
        nstate = saved[2].shape[1]
        # Channel groups per batch element: enough tasks (>= 4 per thread) to balance the threads.
        nthreads = kernels["numba"].get_num_threads()
        groups = max(1, min(dim, -(-4 * nthreads // batch)))
        f32 = np.float32
        grads = (
            np.empty((batch, dim, length), dtype=f32),  # du
            np.empty((batch, dim, length), dtype=f32),  # ddt
            np.empty((batch, dim, length), dtype=f32) if has_z else _EMPTY3,  # dz
            np.empty((batch, dim, nstate), dtype=f32),  # dA per batch element
            np.zeros((groups, batch, length, nstate), dtype=f32),  # dB per channel group, time-major
            np.zeros((groups, batch, length, nstate), dtype=f32),  # dC per channel group, time-major
            np.empty((batch, dim), dtype=f32),  # dD per batch element
        )
        kernels["backward"](_kernel_inputs(*saved), ctx.flags, _np(dout), groups, grads)
        du, ddt, dz, dA_part, dB_part, dC_part, dD_part = (torch.from_numpy(g) for g in grads)
        result = (
            du,
            ddt,
            dA_part.sum(0),
            dB_part.sum(0).transpose(1, 2),
            dC_part.sum(0).transpose(1, 2),
            dD_part.sum(0) if has_d else None,
            dz if has_z else None,
        )
        return tuple(
            g.to(t.dtype).contiguous() if g is not None and ctx.needs_input_grad[i] else None
            for i, (g, t) in enumerate(zip(result, saved))
        )


def selective_scan_cpu_kernel(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Selective scan with the numba kernel (CPU tensors). Raises RuntimeError if numba is unavailable."""
    if _load_cpu_kernels() is None:
        raise RuntimeError(f"backend 'cpu_kernel' is unavailable (numba): {_cpu_kernels_error!r}")
    dtype_in = u.dtype
    dt = delta.float()
    if delta_bias is not None:
        dt = dt + delta_bias.float()[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    return _CpuKernelScan.apply(u, dt, A, B, C, D, z).to(dtype_in)


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
    if dtype_in not in (torch.float32, torch.float16, torch.bfloat16):
        raise RuntimeError(f"backend 'cuda' takes float32, float16 or bfloat16 inputs, not {dtype_in}")
    # The kernel checks dtypes: delta, the input-dependent B and C, and z in u's dtype; A, D and delta_bias in
    # float32. It computes in float32 whatever u's dtype.
    out = fn(
        u.contiguous(),
        delta.to(dtype_in).contiguous(),
        A.float().contiguous(),
        B.to(dtype_in).contiguous(),
        C.to(dtype_in).contiguous(),
        D=D.float().contiguous() if D is not None else None,
        z=z.to(dtype_in).contiguous() if z is not None else None,
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
    "parallel": selective_scan_parallel,
    "cuda": selective_scan_cuda,
}


def available_backends() -> list[str]:
    """Backends that can run on this machine (``"cuda"`` only if CUDA is available and mamba_ssm imports).

    Importing numba happens here (not the compilation, which happens on the first call of the kernel).
    """
    names = ["reference", "torch", "parallel"]
    if _load_cpu_kernels() is not None:
        names.insert(1, "cpu_kernel")
    if torch.cuda.is_available() and _load_cuda_kernel() is not None:
        names.append("cuda")
    return names


def _check_backend_name(name: str, source: str = "backend") -> str:
    key = str(name).strip().lower()
    if key != "auto" and key not in BACKENDS:
        valid = ", ".join(repr(b) for b in ("auto", *BACKENDS))
        raise ValueError(f"unknown selective-scan backend {name!r} (from {source}); valid: {valid}")
    return key


def resolve_backend(u: torch.Tensor, backend: str | None = None) -> str:
    """Name of the backend :func:`selective_scan` runs for inputs like ``u`` and this ``backend`` argument.

    ``backend=None`` reads ``ECGMAMBA_SCAN_BACKEND`` (unset or ``"auto"``: choose). While ``torch.export`` or the
    ONNX exporter traces the model, every backend runs as ``"parallel"`` (the only form whose graph holds for any
    length; the kernels cannot be exported). Otherwise the automatic choice: CUDA tensors run ``"cuda"`` if
    mamba_ssm imports, else ``"torch"`` (one logged warning); CPU tensors run ``"cpu_kernel"`` if numba imports,
    else ``"torch"`` (one logged warning); while JIT-tracing or compiling, and for float64 CUDA tensors or other
    devices, ``"torch"``. An explicit backend that cannot run raises (ValueError for an unknown name,
    RuntimeError for an unavailable one).
    """
    if backend is None:
        key = _check_backend_name(os.environ.get(ENV_VAR) or "auto", f"the environment variable {ENV_VAR}")
    else:
        key = _check_backend_name(backend)
    if is_exporting():
        return "parallel"
    if key != "auto":
        if key == "cpu_kernel":
            if _load_cpu_kernels() is None:
                raise RuntimeError(f"backend 'cpu_kernel' is unavailable (numba): {_cpu_kernels_error!r}")
            if u.device.type != "cpu":
                raise RuntimeError(f"backend 'cpu_kernel' needs CPU tensors, not {u.device.type}")
        elif key == "cuda":
            if not u.is_cuda:
                raise RuntimeError("backend 'cuda' needs CUDA tensors")
            if _load_cuda_kernel() is None:
                raise RuntimeError(f"backend 'cuda' is unavailable (mamba_ssm does not import): {_cuda_error!r}")
        return key
    if u.is_cuda:
        if is_tracing() or u.dtype == torch.float64:  # mamba_ssm's kernel takes fp32/fp16/bf16
            return "torch"
        if _load_cuda_kernel() is not None:
            return "cuda"
        _warn_once(
            "mamba_ssm",
            "ECGMamba: mamba_ssm's CUDA selective scan is unavailable (%s); using the slower pure-PyTorch scan.",
            _cuda_error,
        )
        return "torch"
    if u.device.type != "cpu" or is_tracing():
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
            ``"reference"``, ``"cpu_kernel"``, ``"torch"``, ``"parallel"``, ``"cuda"``; see :func:`resolve_backend`.

    Returns:
        (batch, dim, L) tensor in ``u``'s dtype, computed in float32 (half-precision inputs are upcast; float64
        inputs stay float64 in the ``"reference"`` and ``"torch"`` backends, the kernels compute in float32).
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
