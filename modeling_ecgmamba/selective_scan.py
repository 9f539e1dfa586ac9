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
- ``"cpu_kernel"``: numba-compiled forward and hand-written backward; the default on CPU. The model's mixer calls
  the same kernels through :func:`fused_mixer` (both directions, convolution, softplus, skip, average and gate fused).
- ``"torch"``: pure-PyTorch scan (:func:`selective_scan_torch`), the reference's recurrence with a hand-written
  backward; the fallback.
- ``"parallel"``: the same recurrence with no Python loop over time (:func:`selective_scan_parallel`), so that a
  traced graph does not depend on the length; what ``torch.export``/ONNX export trace, chosen automatically there.
- ``"cuda"``: ``mamba_ssm``'s fused CUDA kernel, for CUDA tensors when ``mamba_ssm`` imports.

The environment variable ``ECGMAMBA_SCAN_BACKEND`` overrides the automatic choice when ``backend`` is ``None``.
"""

from __future__ import annotations

import logging
import os
import queue
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

# Steps the pure-PyTorch scan discretises at once: its time-major (T B D N) buffers of decays, inflows and states
# (16 MiB each at batch 32, 256 channels, N 16) are the only tensors of the state's size that exist; under autograd
# it keeps the state entering each block, and its backward pass recomputes a block's states from it.
_TORCH_BLOCK = 32
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
# Pure-PyTorch scan
# --------------------------------------------------------------------------------------------------------------


class _TorchBlocks:
    """Time-major views of the scan's inputs and reusable (T B D N) buffers for one block of _TORCH_BLOCK steps.

    The buffers are allocated once per call (fresh 10-30 MB tensors for each block cost more in page faults
    than the arithmetic), and the per-step multiply-adds run on contiguous (B D N) slices of them."""

    def __init__(self, u, dt, A, B, C, buffers: int):
        self.u, self.dt, self.B, self.C = (t.permute(2, 0, 1) for t in (u, dt, B, C))  # (L B D) and (L B N)
        self.A = A
        batch, dim, length = u.shape
        self.length, self.shape = length, (batch, dim, A.shape[1])
        self.buffers = [u.new_empty(min(_TORCH_BLOCK, length), *self.shape) for _ in range(buffers)]

    def starts(self, reverse: bool = False):
        starts = range(0, self.length, _TORCH_BLOCK)
        return reversed(starts) if reverse else starts

    def discretise(self, start: int):
        """Decays exp(dt A) and inflows dt u B of the block starting at ``start``: two (T B D N) buffers."""
        sl = slice(start, start + _TORCH_BLOCK)
        steps = len(range(self.length)[sl])
        decay, inflow = self.buffers[0][:steps], self.buffers[1][:steps]
        dt = self.dt[sl].unsqueeze(-1)
        torch.mul(dt, self.A, out=decay).exp_()
        torch.mul(dt * self.u[sl].unsqueeze(-1), self.B[sl].unsqueeze(2), out=inflow)
        return sl, decay, inflow

    def states(self, h, decay, inflow):
        """h_t = decay_t h_{t-1} + inflow_t through the block from the state h, one in-place multiply-add per
        step (the reference's arithmetic: no cumulative sums of log-decays, no clamping): the (T B D N) states."""
        states = self.buffers[2][: len(decay)]
        for k in range(len(decay)):
            h = torch.addcmul(inflow[k], decay[k], h, out=states[k])
        return states

    def contract(self, states, weights):
        """sum_n states[t, b, :, n] weights[t, b, n] as one batched product: (T B D)."""
        steps, batch, dim, nstate = states.shape
        flat = states.view(steps * batch, dim, nstate)
        return torch.bmm(flat, weights.reshape(steps * batch, nstate, 1)).view(steps, batch, dim)


def _torch_scan_forward(u, dt, A, B, C):
    """y (B D L), without the D skip and the gate, and the state entering each block of _TORCH_BLOCK steps."""
    blocks = _TorchBlocks(u, dt, A, B, C, buffers=3)
    y = u.new_empty(blocks.length, u.shape[0], u.shape[1])  # (L B D)
    h, entering = u.new_zeros(blocks.shape), []
    for start in blocks.starts():
        sl, decay, inflow = blocks.discretise(start)
        entering.append(h)
        states = blocks.states(h, decay, inflow)
        y[sl] = blocks.contract(states, blocks.C[sl])
        h = states[-1].clone()  # the buffers are reused by the next block
    return y.permute(1, 2, 0), entering


class _TorchScan(torch.autograd.Function):
    """The scan of :func:`_torch_scan_forward` with a hand-written backward pass: per block, from the last,
    recompute the states from the saved entering state, run the adjoint recurrence dLoss/dh_{t-1} =
    decay_t (dLoss/dh_t) back through it (one multiply-add and one multiply per step), and get every input's
    gradient from the block's adjoints with batched products. Memory: the inputs, one state per block, and five
    (T B D N) buffers."""

    @staticmethod
    def forward(ctx, u, dt, A, B, C):
        y, entering = _torch_scan_forward(u, dt, A, B, C)
        ctx.save_for_backward(u, dt, A, B, C, *entering)
        return y

    @staticmethod
    def backward(ctx, dy):
        u, dt, A, B, C, *entering = ctx.saved_tensors
        blocks = _TorchBlocks(u, dt, A, B, C, buffers=5)
        dy = dy.permute(2, 0, 1)  # (L B D)
        du, ddt = (u.new_empty(blocks.length, *u.shape[:2]) for _ in range(2))  # (L B D)
        dB, dC = (B.new_empty(blocks.length, B.shape[0], B.shape[1]) for _ in range(2))  # (L B N)
        dA = torch.zeros_like(A)
        adjoint = u.new_zeros(blocks.shape)  # dLoss/dh_t, carried backwards in time
        step_adjoint = torch.empty_like(adjoint)
        for index, start in zip(range(len(entering) - 1, -1, -1), blocks.starts(reverse=True)):
            sl, decay, inflow = blocks.discretise(start)
            states = blocks.states(entering[index], decay, inflow)
            grads = blocks.buffers[3][: len(decay)]  # dLoss/dh_t of each step of the block
            dy_b, dt_b, u_b, C_b = (dy[sl].unsqueeze(-1), blocks.dt[sl], blocks.u[sl], blocks.C[sl].unsqueeze(2))
            for k in range(len(decay) - 1, -1, -1):
                torch.addcmul(adjoint, dy_b[k], C_b[k], out=grads[k])
                adjoint = torch.mul(grads[k], decay[k], out=step_adjoint)
            # dLoss/d(dt_t A) per state: dLoss/dh_t decay_t h_{t-1}
            weighted = torch.mul(grads, decay, out=blocks.buffers[4][: len(decay)])
            weighted[1:] *= states[:-1]
            weighted[0] *= entering[index]
            s1 = blocks.contract(grads, blocks.B[sl])  # sum_n dLoss/dh_t B_t: (T B D)
            dC[sl] = torch.einsum("tbd,tbdn->tbn", dy[sl], states)
            dB[sl] = torch.einsum("tbdn,tbd->tbn", grads, dt_b * u_b)
            du[sl] = dt_b * s1
            ddt[sl] = torch.einsum("tbdn,dn->tbd", weighted, A) + u_b * s1
            dA += torch.einsum("tbdn,tbd->dn", weighted, dt_b)
        return du.permute(1, 2, 0), ddt.permute(1, 2, 0), dA, dB.permute(1, 2, 0), dC.permute(1, 2, 0)


def selective_scan_torch(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Pure-PyTorch selective scan: the reference's recurrence, time-major, one in-place multiply-add per step.

    Same arguments and shapes as :func:`selective_scan_ref`, and the same arithmetic: exact for any time step (no
    cumulative sums of log-decays, which lose float32 precision, and no clamping), in float32 (float64 inputs stay
    float64). Steps are discretised _TORCH_BLOCK at a time, so only one block's ``(T B D N)`` tensors exist.
    Under autograd the backward pass is hand-written (:class:`_TorchScan`): training keeps O(B D L) plus one state
    per block, instead of autograd's copies of every state.
    """
    dtype_in = u.dtype
    u, delta, A, B, C = _discretisation_inputs(u, delta, A, B, C, delta_bias, delta_softplus)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (u, delta, A, B, C)):
        y = _TorchScan.apply(u, delta, A, B, C)
    else:
        y = _torch_scan_forward(u, delta, A, B, C)[0]
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
    totals = s[:, :, :, -1, :].transpose(2, 3)  # (B D N chunks): each chunk's log-decay
    index = torch.arange(chunks, device=u.device)
    # [c, c'] = G_c - G_c' = sum of the totals of chunks c' + 1 .. c, as a cumulative sum of masked copies: each
    # entry adds only its own terms (the difference of two long cumulative sums loses float32 precision)
    gaps = torch.cumsum(totals.unsqueeze(-1).expand(*totals.shape, chunks).masked_fill(index[:, None] <= index, 0), -2)
    decay = torch.exp(gaps.masked_fill(index[:, None] < index, float("-inf")))
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


# Kernels of the compiled CPU path: plain Python here, compiled with numba by _build_cpu_kernels() on first use. They
# call each other through the module globals below, which _build_cpu_kernels() points at the compiled functions
# (numba resolves globals when it compiles; closures over jitted functions would defeat numba's disk cache, whose
# key hashes a closure's contents).
#
# Layout: time-major with the channels last, as the model's linear layers produce them, so that the innermost loops
# run over contiguous channels and vectorise (16 float32 lanes with AVX-512). S is the number of directions: 1, or 2
# for the BiSSM, whose direction 1 walks time backwards (no flipped copies). B batch, L time, D channels, N state:
#   xz, gate: (B L G)    the mixer's input x is columns [0, D) of in_proj's output, its gate z columns [z_off, z_off + D)
#   u, dt:    (S B L D)  scan input (after the convolution and SiLU) and time step (after bias and softplus)
#   out:      (B L D)    the average of the directions, times silu(z); mask: (B L) of 0/1
# and, one array per direction in a tuple (the modules' own parameters, no stacked copies):
#   delta:    (B L D)    dt before its bias and softplus;  proj: (B L P) x_proj's output, B_t in its columns
#                        [b_off, b_off + N), C_t in [b_off + N, b_off + 2N)
#   A:        (D N)      A, or A_log with A = -exp(A_log);  conv weight: (D K);  Dv and the biases: (D)
# A task is one batch element and one block of channels (several blocks when the batch is smaller than the thread
# count); parameters are copied into channel-last scratch per task. Absent optional inputs come as small dummy arrays
# with their flag False, so that each kernel has one compiled signature. Arithmetic may contract a * b + c into one
# fused multiply-add ("contract"); only _kernel_adjoint_step may also reassociate its sums over channels, which
# LLVM needs to vectorise them (never the exponential's range reduction, which reassociation would break).
_exp2_decay = _expf = _exp_decay = _silu = _log = _softplus = _task = _conv_at = _time_steps = _step_inputs = (
    _channels_last
) = _decays = _decay_exponents = _adjoint_step = _wide_vectors = _kernel_f32_bits = _kernel_f32_from_bits = (
    _kernel_address
) = _next_task = None
_carray = _view1 = _view2 = _view3 = _view4 = _view5 = _meta = _conv_inputs_view = _scan_inputs_view = None
_conv_forward_tasks = _conv_backward_tasks = _scan_forward_tasks = _scan_backward_tasks = None
_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)
_LOG2E = np.float32(1.4426950408889634)
_KERNEL_CHUNK = 32  # steps between the states the forward pass saves for the backward pass's recomputation


def _kernel_expf(x):
    """exp(x) in float32, within 1e-7 relative; branch-free so that loops calling it vectorise.

    Cephes' expf: x = k ln2 + r with |r| <= ln2/2, exp(r) by a degree-7 polynomial, 2^k from the exponent
    bits (k by the round-to-nearest 1.5*2^23 trick). Underflows to 0 below -87.3, overflows to inf above 88.7.
    Both sides of each choice are computed and one selected: a call inside a branch kept LLVM from vectorising.
    """
    y = _exp_decay(x if x < np.float32(88.0) else np.float32(88.0))
    return y if x < np.float32(88.72283) else np.float32(np.inf)


def _kernel_exp_decay(x):
    """exp(x) for x <= 88 (softplus clamps its argument at 20): _kernel_expf without the overflow branch."""
    xc = x if x > np.float32(-87.0) else np.float32(-87.0)
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
    return res if x > np.float32(-87.33654) else _ZERO


def _kernel_exp2_decay(x):
    """2^x for x <= 0, within 2e-7 relative: the decays exp(dt A) = 2^(dt A log2(e)), with A log2(e) computed once per
    task. Cheaper than _kernel_exp_decay (no ln 2 range reduction: f = x - round(x) is exact) in the scan's innermost
    loop, where it runs once per state, channel and step. Cephes' exp2f polynomial on [-0.5, 0.5]; 0 below -126."""
    xc = x if x > np.float32(-126.0) else np.float32(-126.0)
    k = xc + np.float32(12582912.0)  # round to nearest
    fk = k - np.float32(12582912.0)
    f = xc - fk
    p = np.float32(1.535336188319500e-4)
    p = p * f + np.float32(1.339887440266574e-3)
    p = p * f + np.float32(9.618437357674640e-3)
    p = p * f + np.float32(5.550332471162809e-2)
    p = p * f + np.float32(2.402264791363012e-1)
    p = p * f + np.float32(6.931472028550421e-1)
    p = p * f + _ONE
    res = p * _kernel_f32_from_bits((_kernel_f32_bits(k) - np.int32(0x4B400000) + np.int32(127)) << np.int32(23))
    return res if x > np.float32(-126.0) else _ZERO


def _kernel_silu(x):
    return x / (_ONE + _expf(-x))


def _kernel_log(x):
    """log(x) in float32 for finite x >= 1 (Cephes' logf, within 2e-7 relative); branch-free, to vectorise."""
    bits = _kernel_f32_bits(x)
    e = ((bits >> np.int32(23)) & np.int32(0xFF)) - np.int32(126)
    m = _kernel_f32_from_bits((bits & np.int32(0x807FFFFF)) | np.int32(0x3F000000))  # x = m 2^e, m in [0.5, 1)
    small = m < np.float32(0.707106781186547524)
    f = (m + m if small else m) - _ONE
    fe = np.float32(e - np.int32(1) if small else e)
    z = f * f
    p = np.float32(7.0376836292e-2)
    p = p * f - np.float32(1.1514610310e-1)
    p = p * f + np.float32(1.1676998740e-1)
    p = p * f - np.float32(1.2420140846e-1)
    p = p * f + np.float32(1.4249322787e-1)
    p = p * f - np.float32(1.6668057665e-1)
    p = p * f + np.float32(2.0000714765e-1)
    p = p * f - np.float32(2.4999993993e-1)
    p = p * f + np.float32(3.3333331174e-1)
    y = p * f * z - np.float32(2.12194440e-4) * fe - np.float32(0.5) * z
    return f + y + np.float32(0.693359375) * fe


def _kernel_softplus(x):
    """softplus(x) = log(1 + exp(x)), x itself above 20 (torch's threshold); log1p by Goldberg's correction.
    Branch-free like _kernel_expf: the unused side may be NaN (0/0 where 1 + y rounds to 1), never selected."""
    y = _exp_decay(x if x < np.float32(20.0) else np.float32(20.0))
    one_plus = _ONE + y
    corrected = _log(one_plus) * (y / (one_plus - _ONE))
    log1p = y if one_plus == _ONE else corrected
    return x if x > np.float32(20.0) else log1p


def _kernel_task(task, blocks, dim):
    """Batch element, first channel and channel count of a task."""
    per = (dim + blocks - 1) // blocks
    d0 = (task % blocks) * per
    return task // blocks, d0, min(dim, d0 + per) - d0


def _kernel_conv_at(xz, mask, wk, bias, flags, s, b, t, d0, acc):
    """acc = the pre-activation of direction s at time t for channels [d0, d0 + w): the bias plus the K taps
    (wk: the direction's weights, (K, w)) over x = xz[b, :, d0:d0 + w] * mask[b]."""
    has_mask, has_bias = flags
    ksize, w = wk.shape
    length = xz.shape[1]
    if has_bias:
        acc[:] = bias[s][d0 : d0 + w]
    else:
        acc[:] = _ZERO
    for k in range(ksize):
        tk = t - ksize + 1 + k if s == 0 else t + ksize - 1 - k
        if 0 <= tk < length:
            m = mask[b, tk] if has_mask else _ONE
            x = xz[b, tk, d0 : d0 + w]
            for j in range(w):
                acc[j] += wk[k, j] * (x[j] * m)


def _kernel_conv_forward(tasks, xz, mask, weight, bias, flags, blocks, out):
    """Causal depthwise convolution of each direction, SiLU and mask: out[s, b, t] = silu(bias[s] + sum_k
    weight[s][:, k] * x[b, t_k]) * m[b, t] with x = xz[:, :, :D] * m. Direction 0 is causal (t_k = t - K + 1 + k),
    direction 1 anti-causal (t_k = t + K - 1 - k: the causal convolution of the reversed sequence, reversed back)."""
    has_mask, has_bias = flags
    ndir, batch, length, dim = out.shape
    ksize = weight[0].shape[1]
    for task in range(tasks[0], tasks[1]):
        _wide_vectors()
        b, d0, w = _task(task, blocks, dim)
        wk = np.empty((ksize, w), dtype=np.float32)
        acc = np.empty(w, dtype=np.float32)
        for s in range(ndir):
            _channels_last(weight[s], d0, wk)
            for t in range(length):
                _conv_at(xz, mask, wk, bias, flags, s, b, t, d0, acc)
                mt = mask[b, t] if has_mask else _ONE
                row = out[s, b, t, d0 : d0 + w]
                for j in range(w):
                    row[j] = _silu(acc[j]) * mt


def _kernel_conv_backward(tasks, xz, mask, weight, bias, flags, blocks, dout, grads):
    """Gradients of _kernel_conv_forward: dx added into columns [0, D) of dxz (B L G, zero-filled by the caller),
    and per batch element the weight (B S D K) and bias (B S D) gradients, which the caller sums. Recomputes the
    pre-activations."""
    has_mask, has_bias = flags
    dxz, dweight, dbias = grads
    ndir, batch, length, dim = dout.shape
    ksize = weight[0].shape[1]
    for task in range(tasks[0], tasks[1]):
        _wide_vectors()
        b, d0, w = _task(task, blocks, dim)
        wk = np.empty((ksize, w), dtype=np.float32)
        acc = np.empty(w, dtype=np.float32)
        dw = np.empty((ksize, w), dtype=np.float64)
        db = np.empty(w, dtype=np.float64)
        for s in range(ndir):
            _channels_last(weight[s], d0, wk)
            dw[:] = 0.0
            db[:] = 0.0
            for t in range(length):
                _conv_at(xz, mask, wk, bias, flags, s, b, t, d0, acc)
                mt = mask[b, t] if has_mask else _ONE
                grad = dout[s, b, t, d0 : d0 + w]
                for j in range(w):  # acc becomes dLoss/d(pre-activation)
                    a = acc[j]
                    sig = _ONE / (_ONE + _expf(-a))
                    acc[j] = grad[j] * mt * sig * (_ONE + a * (_ONE - sig))
                    db[j] += acc[j]
                for k in range(ksize):
                    tk = t - ksize + 1 + k if s == 0 else t + ksize - 1 - k
                    if 0 <= tk < length:
                        m = mask[b, tk] if has_mask else _ONE
                        x, dx = xz[b, tk, d0 : d0 + w], dxz[b, tk, d0 : d0 + w]
                        for j in range(w):
                            dw[k, j] += acc[j] * (x[j] * m)
                            dx[j] += acc[j] * wk[k, j] * m
            dbias[b, s, d0 : d0 + w] = db
            for j in range(w):
                for k in range(ksize):
                    dweight[b, s, d0 + j, k] = dw[k, j]


def _kernel_time_steps(delta, bias, flags, b, t, d0, dtv):
    """dtv = softplus(delta + bias) (each optional per flags) of one direction at time t, channels [d0, d0 + w)."""
    has_bias, softplus = flags
    w = dtv.shape[0]
    row = delta[b, t, d0 : d0 + w]
    shift = bias[d0 : d0 + w] if has_bias else row  # read only with has_bias
    for j in range(w):
        v = row[j] + shift[j] if has_bias else row[j]
        dtv[j] = _softplus(v) if softplus else v


def _kernel_step_inputs(u, dt, s, b, t, d0, dtv, dtu):
    """dtv = dt and dtu = dt * u of direction s at time t, channels [d0, d0 + w)."""
    w = dtv.shape[0]
    dt_row, u_row = dt[s, b, t, d0 : d0 + w], u[s, b, t, d0 : d0 + w]
    for j in range(w):
        dtv[j] = dt_row[j]
        dtu[j] = dtv[j] * u_row[j]


def _kernel_channels_last(param, d0, out):
    """out[x, j] = param[d0 + j, x]: a (D, X) parameter (A, the conv weight) for channels [d0, d0 + w), channels
    last (X, w)."""
    size, w = out.shape
    for j in range(w):
        row = param[d0 + j]
        for x in range(size):
            out[x, j] = row[x]


def _kernel_decays(A, log_a, d0, a):
    """a = A for channels [d0, d0 + w), channels last (N, w); A = -exp(A_log) when given A_log (log_a)."""
    _channels_last(A, d0, a)
    if log_a:
        for n in range(a.shape[0]):
            for j in range(a.shape[1]):
                a[n, j] = -_expf(a[n, j])


def _kernel_decay_exponents(a, out):
    """out = a log2(e) ((N, w) arrays; out may be a): the decays exp(dt A) are 2^(dt out). One definition for the
    forward scan and the backward pass, which must recompute the forward's decays bit for bit."""
    for n in range(a.shape[0]):
        for j in range(a.shape[1]):
            out[n, j] = a[n, j] * _LOG2E


def _kernel_scan_forward(tasks, inputs, offsets, flags, blocks, outputs):
    """Selective scan of every direction, D skip, average of the directions and gate (see the layout above); the
    time steps are dt = softplus(delta + bias), computed here.

    With ``save`` it also writes what the backward pass needs: dt (S B L D), the average before the gate (ypre,
    B L D) and every _KERNEL_CHUNK-th state of each direction (states, S B chunks N D: the state entering each
    chunk)."""
    u, delta, proj, A, Dv, bias, gate = inputs
    b_off, z_off = offsets
    has_d, has_z, has_bias, log_a, softplus, save = flags
    out, ypre, states, dt = outputs
    ndir, batch, length, dim = u.shape
    nstate = A[0].shape[1]
    scale = _ONE / np.float32(ndir)  # 1 or 0.5: exact, so 0.5 yf + 0.5 yb equals 0.5 (yf + yb)
    for task in range(tasks[0], tasks[1]):
        _wide_vectors()
        b, d0, w = _task(task, blocks, dim)
        a = np.empty((nstate, w), dtype=np.float32)
        h = np.empty((nstate, w), dtype=np.float32)
        y = np.empty(w, dtype=np.float32)
        dtv = np.empty(w, dtype=np.float32)
        dtu = np.empty(w, dtype=np.float32)
        for s in range(ndir):
            _decays(A[s], log_a, d0, a)
            _decay_exponents(a, a)  # a becomes A log2(e): the decays are 2^(dt a)
            proj_s = proj[s]
            h[:] = _ZERO
            for i in range(length):
                t = i if s == 0 else length - 1 - i
                if save and i % _KERNEL_CHUNK == 0:
                    states[s, b, i // _KERNEL_CHUNK, :, d0 : d0 + w] = h
                _time_steps(delta[s], bias[s], (has_bias, softplus), b, t, d0, dtv)
                if save:
                    dt[s, b, t, d0 : d0 + w] = dtv
                u_row = u[s, b, t, d0 : d0 + w]
                for j in range(w):
                    dtu[j] = dtv[j] * u_row[j]
                    y[j] = _ZERO
                for n in range(nstate):
                    bn = proj_s[b, t, b_off + n]
                    cn = proj_s[b, t, b_off + nstate + n]
                    for j in range(w):
                        v = _exp2_decay(dtv[j] * a[n, j]) * h[n, j] + dtu[j] * bn
                        h[n, j] = v
                        y[j] += cn * v
                if has_d:
                    skip = Dv[s][d0 : d0 + w]
                    for j in range(w):
                        y[j] += skip[j] * u_row[j]
                row = out[b, t, d0 : d0 + w]
                if s == 0:
                    for j in range(w):
                        row[j] = scale * y[j]
                else:
                    for j in range(w):
                        row[j] += scale * y[j]
        if save:
            ypre[b, :, d0 : d0 + w] = out[b, :, d0 : d0 + w]
        if has_z:
            for t in range(length):
                row, z = out[b, t, d0 : d0 + w], gate[b, t, z_off + d0 : z_off + d0 + w]
                for j in range(w):
                    row[j] *= _silu(z[j])


def _kernel_adjoint_step(gy, h_t, h_prev, e_t, a, row, b_off, dtv, dtu, adj, s1, s2, da, dbc):
    """One step of the adjoint recurrence backwards in time, for one block of w channels (arrays (N, w) or (w)).

    gy = dLoss/dy_t; adj holds dLoss/dh_t from later steps and leaves with dLoss/dh_{t-1}. Returns through
    s1 = sum_n dLoss/dh_t[n] B_t[n] and s2 = sum_n dLoss/dh_t[n] e_t[n] h_{t-1}[n] A[n] (for du and ddt), adds
    into da (dA) and writes dbc = (dB_t, dC_t), sums over the block's channels (reassociated to vectorise)."""
    _wide_vectors()
    nstate, w = adj.shape
    for j in range(w):
        s1[j] = _ZERO
        s2[j] = _ZERO
    for n in range(nstate):
        bn = row[b_off + n]
        cn = row[b_off + nstate + n]
        acc_b = _ZERO
        acc_c = _ZERO
        for j in range(w):
            gh = adj[n, j] + gy[j] * cn  # dLoss/dh_t
            acc_c += gy[j] * h_t[n, j]
            acc_b += gh * dtu[j]
            s1[j] += gh * bn
            ghe = gh * e_t[n, j]
            q = ghe * h_prev[n, j]
            s2[j] += q * a[n, j]
            da[n, j] += q * dtv[j]
            adj[n, j] = ghe
        dbc[n] = acc_b
        dbc[nstate + n] = acc_c


def _kernel_scan_backward(tasks, inputs, offsets, flags, blocks, saved, dout, grads):
    """Gradients of _kernel_scan_forward. Per direction, chunks of _KERNEL_CHUNK steps from the last: recompute
    the chunk's states from the saved one, then run the adjoint recurrence back through it.

    grads: du, ddelta (S B L D); dbc (blocks S B L 2N): dB and dC per channel block; dA (B S D N), dD and dbias
    (B S D) per batch element; dgate (B L G), whose columns [z_off, z_off + D) get dz; gy (B L D) scratch. The
    caller sums the partial gradients."""
    u, delta, proj, A, Dv, bias, gate = inputs
    b_off, z_off = offsets
    has_d, has_z, has_bias, log_a, softplus, save = flags
    ypre, states, dt = saved
    du, ddelta, dbc, dA, dD, dbias, dgate, gy = grads
    ndir, batch, length, dim = u.shape
    nstate = A[0].shape[1]
    scale = _ONE / np.float32(ndir)
    chunks = (length + _KERNEL_CHUNK - 1) // _KERNEL_CHUNK
    for task in range(tasks[0], tasks[1]):
        _wide_vectors()
        b, d0, w = _task(task, blocks, dim)
        g = task % blocks
        # 1. The gate: dz, and dLoss/dy of each direction's output.
        for t in range(length):
            grad, gy_row = dout[b, t, d0 : d0 + w], gy[b, t, d0 : d0 + w]
            if has_z:
                z, dz = gate[b, t, z_off + d0 : z_off + d0 + w], dgate[b, t, z_off + d0 : z_off + d0 + w]
                y = ypre[b, t, d0 : d0 + w]
                for j in range(w):
                    sig = _ONE / (_ONE + _expf(-z[j]))
                    dz[j] = grad[j] * y[j] * sig * (_ONE + z[j] * (_ONE - sig))
                    gy_row[j] = scale * grad[j] * z[j] * sig
            else:
                for j in range(w):
                    gy_row[j] = scale * grad[j]
        a = np.empty((nstate, w), dtype=np.float32)
        a2 = np.empty((nstate, w), dtype=np.float32)
        hs = np.empty((_KERNEL_CHUNK + 1, nstate, w), dtype=np.float32)
        es = np.empty((_KERNEL_CHUNK, nstate, w), dtype=np.float32)
        adj = np.empty((nstate, w), dtype=np.float32)
        da = np.empty((nstate, w), dtype=np.float64)
        dd = np.empty(w, dtype=np.float64)
        db = np.empty(w, dtype=np.float64)
        pre = np.empty(w, dtype=np.float32)
        s1 = np.empty(w, dtype=np.float32)
        s2 = np.empty(w, dtype=np.float32)
        dtv = np.empty(w, dtype=np.float32)
        dtu = np.empty(w, dtype=np.float32)
        for s in range(ndir):
            _decays(A[s], log_a, d0, a)
            _decay_exponents(a, a2)  # the forward pass's, to recompute its decays exactly
            proj_s = proj[s]
            adj[:] = _ZERO
            da[:] = 0.0
            dd[:] = 0.0
            db[:] = 0.0
            for c in range(chunks - 1, -1, -1):
                i0 = c * _KERNEL_CHUNK
                steps = min(length, i0 + _KERNEL_CHUNK) - i0
                # 2. Recompute the chunk's decays and states.
                hs[0] = states[s, b, c, :, d0 : d0 + w]
                for k in range(steps):
                    t = i0 + k if s == 0 else length - 1 - i0 - k
                    _step_inputs(u, dt, s, b, t, d0, dtv, dtu)
                    for n in range(nstate):
                        bn = proj_s[b, t, b_off + n]
                        for j in range(w):
                            e = _exp2_decay(dtv[j] * a2[n, j])
                            es[k, n, j] = e
                            hs[k + 1, n, j] = e * hs[k, n, j] + dtu[j] * bn
                # 3. Adjoint recurrence back through the chunk.
                for k in range(steps - 1, -1, -1):
                    t = i0 + k if s == 0 else length - 1 - i0 - k
                    _step_inputs(u, dt, s, b, t, d0, dtv, dtu)
                    gyt = gy[b, t, d0 : d0 + w]
                    _adjoint_step(
                        gyt,
                        hs[k + 1],
                        hs[k],
                        es[k],
                        a,
                        proj_s[b, t],
                        b_off,
                        dtv,
                        dtu,
                        adj,
                        s1,
                        s2,
                        da,
                        dbc[g, s, b, t],
                    )
                    _time_steps(delta[s], bias[s], (has_bias, False), b, t, d0, pre)  # softplus' argument
                    u_row, skip = u[s, b, t, d0 : d0 + w], Dv[s][d0 : d0 + w]
                    du_row, ddelta_row = du[s, b, t, d0 : d0 + w], ddelta[s, b, t, d0 : d0 + w]
                    for j in range(w):
                        du_row[j] = (gyt[j] * skip[j] if has_d else _ZERO) + dtv[j] * s1[j]
                        gdt = s2[j] + u_row[j] * s1[j]  # dLoss/ddt; softplus' derivative is the sigmoid
                        x = pre[j]
                        gdelta = gdt / (_ONE + _expf(-x)) if softplus and x <= np.float32(20.0) else gdt
                        ddelta_row[j] = gdelta
                        dd[j] += gyt[j] * u_row[j]
                        db[j] += gdelta
            dD[b, s, d0 : d0 + w] = dd
            dbias[b, s, d0 : d0 + w] = db
            for j in range(w):  # dA_log = dA * A when A = -exp(A_log)
                for n in range(nstate):
                    dA[b, s, d0 + j, n] = da[n, j] * a[n, j] if log_a else da[n, j]


# Task bodies: what each thread of torch's own OpenMP team runs (see _run_tasks). A body gets one int64 array,
# the kernel's arguments flattened by _pack_arguments (each array as its address and shape, in argument order, the
# per-direction tuples always two entries), takes tasks off the array's first entry (an atomic counter) until none
# is left, and runs the kernel on each.
def _kernel_meta(data):
    """The packed argument array behind `data`: (meta, number of tasks, index of the first argument)."""
    size = _carray(data, (2,), np.int64)[1]
    meta = _carray(data, (size,), np.int64)
    return meta, meta[2], 3


def _kernel_view1(meta, i):
    return _carray(_kernel_address(meta[i]), (meta[i + 1],), np.float32), i + 2


def _kernel_view2(meta, i):
    return _carray(_kernel_address(meta[i]), (meta[i + 1], meta[i + 2]), np.float32), i + 3


def _kernel_view3(meta, i):
    shape = (meta[i + 1], meta[i + 2], meta[i + 3])
    return _carray(_kernel_address(meta[i]), shape, np.float32), i + 4


def _kernel_view4(meta, i):
    shape = (meta[i + 1], meta[i + 2], meta[i + 3], meta[i + 4])
    return _carray(_kernel_address(meta[i]), shape, np.float32), i + 5


def _kernel_view5(meta, i):
    shape = (meta[i + 1], meta[i + 2], meta[i + 3], meta[i + 4], meta[i + 5])
    return _carray(_kernel_address(meta[i]), shape, np.float32), i + 6


def _kernel_conv_inputs_view(meta, i):
    """The convolution kernels' (xz, mask, weight, bias, flags, blocks) arguments, and the index after them."""
    xz, i = _view3(meta, i)
    mask, i = _view2(meta, i)
    weight0, i = _view2(meta, i)
    weight1, i = _view2(meta, i)
    bias0, i = _view1(meta, i)
    bias1, i = _view1(meta, i)
    flags = (meta[i] != 0, meta[i + 1] != 0)
    return xz, mask, (weight0, weight1), (bias0, bias1), flags, meta[i + 2], i + 3


def _kernel_scan_inputs_view(meta, i):
    """The scan kernels' (inputs, offsets, flags, blocks) arguments, and the index after them."""
    u, i = _view4(meta, i)
    delta0, i = _view3(meta, i)
    delta1, i = _view3(meta, i)
    proj0, i = _view3(meta, i)
    proj1, i = _view3(meta, i)
    a0, i = _view2(meta, i)
    a1, i = _view2(meta, i)
    skip0, i = _view1(meta, i)
    skip1, i = _view1(meta, i)
    bias0, i = _view1(meta, i)
    bias1, i = _view1(meta, i)
    gate, i = _view3(meta, i)
    inputs = (u, (delta0, delta1), (proj0, proj1), (a0, a1), (skip0, skip1), (bias0, bias1), gate)
    offsets = (meta[i], meta[i + 1])
    has_d, has_z, has_bias = meta[i + 2] != 0, meta[i + 3] != 0, meta[i + 4] != 0
    log_a, softplus, save = meta[i + 5] != 0, meta[i + 6] != 0, meta[i + 7] != 0
    return inputs, offsets, (has_d, has_z, has_bias, log_a, softplus, save), meta[i + 8], i + 9


def _kernel_conv_forward_body(data):
    meta, ntasks, i = _meta(data)
    xz, mask, weights, biases, flags, blocks, i = _conv_inputs_view(meta, i)
    out, i = _view4(meta, i)
    task = _next_task(data)
    while task < ntasks:
        _conv_forward_tasks((task, task + 1), xz, mask, weights, biases, flags, blocks, out)
        task = _next_task(data)


def _kernel_conv_backward_body(data):
    meta, ntasks, i = _meta(data)
    xz, mask, weights, biases, flags, blocks, i = _conv_inputs_view(meta, i)
    dout, i = _view4(meta, i)
    dxz, i = _view3(meta, i)
    dweight, i = _view4(meta, i)
    dbias, i = _view3(meta, i)
    task = _next_task(data)
    while task < ntasks:
        _conv_backward_tasks((task, task + 1), xz, mask, weights, biases, flags, blocks, dout, (dxz, dweight, dbias))
        task = _next_task(data)


def _kernel_scan_forward_body(data):
    meta, ntasks, i = _meta(data)
    inputs, offsets, flags, blocks, i = _scan_inputs_view(meta, i)
    out, i = _view3(meta, i)
    ypre, i = _view3(meta, i)
    states, i = _view5(meta, i)
    dt, i = _view4(meta, i)
    task = _next_task(data)
    while task < ntasks:
        _scan_forward_tasks((task, task + 1), inputs, offsets, flags, blocks, (out, ypre, states, dt))
        task = _next_task(data)


def _kernel_scan_backward_body(data):
    meta, ntasks, i = _meta(data)
    inputs, offsets, flags, blocks, i = _scan_inputs_view(meta, i)
    ypre, i = _view3(meta, i)
    states, i = _view5(meta, i)
    dt, i = _view4(meta, i)
    dout, i = _view3(meta, i)
    du, i = _view4(meta, i)
    ddelta, i = _view4(meta, i)
    dbc, i = _view5(meta, i)
    dA, i = _view4(meta, i)
    dD, i = _view3(meta, i)
    dbias, i = _view3(meta, i)
    dgate, i = _view3(meta, i)
    gy, i = _view3(meta, i)
    grads = (du, ddelta, dbc, dA, dD, dbias, dgate, gy)
    task = _next_task(data)
    while task < ntasks:
        _scan_backward_tasks((task, task + 1), inputs, offsets, flags, blocks, (ypre, states, dt), dout, grads)
        task = _next_task(data)


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

    contract = {"contract"}

    def jit(fn, **options):
        # error_model "numpy": a float division by zero gives inf rather than a check that keeps loops scalar
        options = {"cache": True, "fastmath": contract, "nogil": True, "error_model": "numpy", **options}
        try:
            return numba.njit(**options)(fn)
        except Exception:  # no writable cache location for this source file: compile without a disk cache
            return numba.njit(**{**options, "cache": False})(fn)

    def compile_body(fn):
        """A task body as a C function `void body(void *packed_arguments)`, compiled now (on first use of the
        kernels, or loaded from the disk cache)."""
        signature = types.void(types.voidptr)
        options = {"cache": True, "fastmath": contract, "error_model": "numpy"}
        try:
            return numba.cfunc(signature, **options)(fn)
        except Exception:
            return numba.cfunc(signature, **{**options, "cache": False})(fn)

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

    @intrinsic
    def wide_vectors(typingctx):
        """Let LLVM vectorise the calling function with 512-bit registers where the CPU has them: on AVX-512
        machines LLVM otherwise prefers 256 bits, half the lanes (what clang's -mprefer-vector-width=512 sets)."""

        def codegen(context, builder, signature, args):
            try:  # llvmlite validates attribute names against a fixed list: add the string attribute as is
                set.add(builder.function.attributes, '"prefer-vector-width"="512"')
            except Exception:
                pass
            return context.get_dummy_value()

        return types.none(), codegen

    @intrinsic
    def address(typingctx, value):
        """The int64 `value` as a pointer (an array's address, packed by _pack_arguments)."""

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], ir.IntType(8).as_pointer())

        return types.voidptr(types.int64), codegen

    @intrinsic
    def next_task(typingctx, counter):
        """Add 1 to the int64 that `counter` points at, atomically (threads share it); the value before."""

        def codegen(context, builder, signature, args):
            pointer = builder.bitcast(args[0], ir.IntType(64).as_pointer())
            return builder.atomic_rmw("add", pointer, ir.Constant(ir.IntType(64), 1), "monotonic")

        return types.int64(types.voidptr), codegen

    g = globals()
    g["_carray"] = numba.carray
    g["_kernel_address"] = address
    g["_next_task"] = next_task
    g["_kernel_f32_bits"] = f32_bits
    g["_kernel_f32_from_bits"] = f32_from_bits
    g["_wide_vectors"] = wide_vectors
    # Inlined in numba IR (inline="always") so that the callers' loops vectorise.
    g["_exp_decay"] = jit(_kernel_exp_decay, inline="always")
    g["_exp2_decay"] = jit(_kernel_exp2_decay, inline="always")
    g["_expf"] = jit(_kernel_expf, inline="always")
    g["_silu"] = jit(_kernel_silu, inline="always")
    g["_task"] = jit(_kernel_task, inline="always")
    g["_conv_at"] = jit(_kernel_conv_at, inline="always")
    g["_step_inputs"] = jit(_kernel_step_inputs, inline="always")
    g["_time_steps"] = jit(_kernel_time_steps, inline="always")
    g["_log"] = jit(_kernel_log, inline="always")
    g["_softplus"] = jit(_kernel_softplus, inline="always")
    g["_channels_last"] = jit(_kernel_channels_last, inline="always")
    g["_decays"] = jit(_kernel_decays, inline="always")
    g["_decay_exponents"] = jit(_kernel_decay_exponents, inline="always")
    g["_adjoint_step"] = jit(_kernel_adjoint_step, fastmath={"contract", "reassoc"})
    kernels = {"numba": numba, "expf": g["_expf"]}
    for view in ("_view1", "_view2", "_view3", "_view4", "_view5", "_meta", "_conv_inputs_view", "_scan_inputs_view"):
        g[view] = jit(g["_kernel" + view], inline="always")
    for name in ("conv_forward", "conv_backward", "scan_forward", "scan_backward"):
        kernels[name] = jit(g[f"_kernel_{name}"])  # called from Python: the fallback and single-thread path
        # Inlined into its task body, so that a body compiles the kernel once: calling a compiled kernel from the
        # body instead linked its code in and optimised it a second time.
        g[f"_{name}_tasks"] = jit(g[f"_kernel_{name}"], inline="always")
    kernels["compile_body"] = compile_body
    return kernels


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


def _kernels():
    """The compiled kernels (raises RuntimeError if numba is unavailable)."""
    kernels = _load_cpu_kernels()
    if kernels is None:
        raise RuntimeError(f"backend 'cpu_kernel' is unavailable (numba): {_cpu_kernels_error!r}")
    return kernels


# torch's intra-op threads are an OpenMP team on Linux and macOS builds. After each parallel operator they spin for
# a while waiting for the next one (OMP_WAIT_POLICY unset, as users run): a kernel on threads of its own then
# shares the cores with spinning threads and ran up to 2.7x as slow (benchmarks/scan.py --threads-study). So the
# kernels run on that team itself: GOMP_parallel, the entry point of GCC's and LLVM's OpenMP runtimes, runs a task
# body on every thread of the calling thread's team, which the spinning threads pick up at once.
_openmp = None  # (GOMP_parallel or None,) once looked up
_bodies = {}  # kernel name -> address of its compiled task body


class _TaskThreads:
    """Worker threads that run kernel task ranges beside the calling thread, where torch has no OpenMP team to run
    them on (other builds, a forked child).

    The kernels release the GIL and run on plain Python threads, as many as torch's intra-op threads, rather than
    in numba's parallel pool: with numba's OpenMP pool and torch's both spinning on the same cores, each stalled the
    other (a 63-token scan took 8 ms instead of 0.7 ms), and numba's other pool costs 27 us a launch against 7 here.
    """

    def __init__(self):
        self.workers = []
        self.done = queue.SimpleQueue()

    def _work(self, jobs):
        while True:
            fn, args = jobs.get()
            try:
                fn(*args)
                self.done.put(None)
            except BaseException as exc:  # handed to the caller
                self.done.put(exc)

    def run(self, fn, ntasks: int, args: tuple) -> None:
        threads = max(1, min(torch.get_num_threads(), ntasks))
        while len(self.workers) < threads - 1:
            jobs = queue.SimpleQueue()
            threading.Thread(target=self._work, args=(jobs,), daemon=True, name="ecgmamba-kernel").start()
            self.workers.append(jobs)
        bounds = [ntasks * i // threads for i in range(threads + 1)]
        for i in range(1, threads):
            self.workers[i - 1].put((fn, ((bounds[i], bounds[i + 1]), *args)))
        error = None
        try:
            fn((bounds[0], bounds[1]), *args)
        except BaseException as exc:
            error = exc
        for _ in range(threads - 1):
            error = self.done.get() or error
        if error is not None:
            raise error


def _reset_task_threads() -> None:
    global _task_threads, _task_lock
    _task_threads, _task_lock = _TaskThreads(), threading.Lock()


def _after_fork_in_child() -> None:
    """A forked child (a DataLoader worker) has none of its parent's threads: new task threads, and no OpenMP team
    (GNU OpenMP hangs starting a team in the child of a process that ran one; torch's own operators there too)."""
    global _openmp
    _reset_task_threads()
    _openmp = (None,)


_reset_task_threads()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _run_tasks(name: str, ntasks: int, *args) -> None:
    """Run kernel `name` over tasks [0, ntasks), split across torch's thread count: on torch's own OpenMP team
    where torch has one, else on the task threads (on the calling thread alone while another thread's call holds
    them)."""
    kernel = _kernels()[name]
    threads = min(torch.get_num_threads(), ntasks)
    team = _openmp_team() if threads > 1 else None
    if team is not None:
        packed = _pack_arguments(ntasks, args)
        team(_task_body(name), packed.ctypes.data, threads, 0)
        return
    args = _as_numpy(args)
    if threads <= 1 or not _task_lock.acquire(blocking=False):
        kernel((0, ntasks), *args)
        return
    try:
        _task_threads.run(kernel, ntasks, args)
    finally:
        _task_lock.release()


def _openmp_team():
    """torch's `GOMP_parallel(body, data, num_threads, flags)` as a ctypes function, or None where torch's
    intra-op threads are not an OpenMP team with that entry point (other builds, a broken lookup)."""
    global _openmp
    if _openmp is None:
        team = None
        try:
            if "parallel backend: OpenMP" in torch.__config__.parallel_info():
                import ctypes

                # dlsym through torch's own extension finds the OpenMP runtime torch itself calls
                team = ctypes.CDLL(torch._C.__file__).GOMP_parallel
                team.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
                team.restype = None
        except (OSError, AttributeError):
            team = None
        _openmp = (team,)
    return _openmp[0]


def _task_body(name: str) -> int:
    """The address of kernel `name`'s task body (compiled on first use)."""
    address = _bodies.get(name)
    if address is None:
        with _cpu_lock:
            if name not in _bodies:
                _bodies[name] = _kernels()["compile_body"](globals()[f"_kernel_{name}_body"]).address
            address = _bodies[name]
    return address


def _pack_arguments(ntasks: int, args: tuple) -> np.ndarray:
    """The int64 array a task body reads: [task counter, length, ntasks, then `args` flattened in order: each tensor
    as its address and shape, each tuple item by item, each flag or integer as is]."""
    packed = [0, 0, ntasks]

    def add(values):
        for value in values:
            if isinstance(value, torch.Tensor):
                packed.append(value.data_ptr())
                packed.extend(value.shape)
            elif isinstance(value, tuple):
                add(value)
            else:
                packed.append(int(value))

    add(args)
    packed[1] = len(packed)
    return np.array(packed, dtype=np.int64)


def _as_numpy(args: tuple) -> tuple:
    """`args` with every tensor as a NumPy array (views: the kernels write into the output tensors)."""
    return tuple(
        value.numpy() if isinstance(value, torch.Tensor) else _as_numpy(value) if isinstance(value, tuple) else value
        for value in args
    )


def _channel_blocks(batch: int, dim: int) -> int:
    """Channel blocks per batch element: 1 when the batch alone shares evenly enough (two tasks or more per thread,
    or a multiple of the thread count), else a block per thread for a batch smaller than the thread count and two
    per batch element otherwise; blocks of at least 32 channels. Wider blocks pay: each step's loops have a fixed
    cost (at batch 1 two blocks of 128 channels ran the mixer faster than four of 64, or one of 256)."""
    threads = torch.get_num_threads()
    if batch >= 2 * threads or batch % threads == 0:
        return 1
    return max(1, min(-(-threads // batch) if batch < threads else 2, dim // 32))


_DUMMY = {rank: torch.zeros((1,) * rank) for rank in (1, 2, 3, 4, 5)}
_DUMMY_SAVED = (_DUMMY[3], _DUMMY[5], _DUMMY[4])  # the scan's ypre, states and dt when nothing is saved


def _f32(t: torch.Tensor | None, rank: int = 1) -> torch.Tensor:
    """t as a float32 C-contiguous tensor outside autograd (a view, or a copy); a dummy of the given rank for None."""
    if t is None:
        return _DUMMY[rank]
    if t.dtype != torch.float32 or not t.is_contiguous():
        t = t.to(torch.float32).contiguous()
    return t.detach()


def _f32s(tensors: list, rank: int = 1) -> tuple:
    """One tensor per direction, always two (the kernels read the first S; one compiled signature for S = 1 and 2),
    dummies for an absent optional parameter (an empty list)."""
    arrays = tuple(_f32(t) for t in tensors) if tensors else (_DUMMY[rank],)
    return arrays + arrays[-1:] * (2 - len(arrays))


def _conv_forward(xz, mask, weight, bias, dim):
    ndir, batch, length = len(weight), xz.shape[0], xz.shape[1]
    out = torch.empty(ndir, batch, length, dim)
    flags = (mask is not None, bool(bias))
    blocks = _channel_blocks(batch, dim)
    args = (_f32(xz), _f32(mask, 2), _f32s(weight, 2), _f32s(bias), flags, blocks, out)
    _run_tasks("conv_forward", batch * blocks, *args)
    return out


def _conv_backward(grad, xz, mask, weight, bias):
    ndir, (dim, ksize), batch = len(weight), weight[0].shape, xz.shape[0]
    dxz = torch.zeros(xz.shape)
    dweight = torch.empty(batch, ndir, dim, ksize)
    dbias = torch.empty(batch, ndir, dim)
    flags = (mask is not None, bool(bias))
    blocks = _channel_blocks(batch, dim)
    grads = (dxz, dweight, dbias)
    args = (_f32(xz), _f32(mask, 2), _f32s(weight, 2), _f32s(bias), flags, blocks, _f32(grad), grads)
    _run_tasks("conv_backward", batch * blocks, *args)
    return dxz, dweight.sum(0), dbias.sum(0)


def _scan_inputs(u, delta, proj, A, D, delta_bias, gate):
    return (
        _f32(u),
        _f32s(delta),
        _f32s(proj),
        _f32s(A, 2),
        _f32s(D),
        _f32s(delta_bias),
        _f32(gate, 3),
    )


def _scan_forward(u, delta, proj, A, D, delta_bias, gate, b_off, z_off, log_a, softplus, save):
    ndir, batch, length, dim = u.shape
    out = torch.empty(batch, length, dim)
    ypre = torch.empty(batch, length, dim) if save else torch.empty(0)
    states = torch.empty(ndir, batch, -(-length // _KERNEL_CHUNK), A[0].shape[1], dim) if save else torch.empty(0)
    dt = torch.empty(ndir, batch, length, dim) if save else torch.empty(0)
    outputs = (out, ypre, states, dt) if save else (out, *_DUMMY_SAVED)
    flags = (bool(D), gate is not None, bool(delta_bias), log_a, softplus, save)
    blocks = _channel_blocks(batch, dim)
    inputs = _scan_inputs(u, delta, proj, A, D, delta_bias, gate)
    _run_tasks("scan_forward", batch * blocks, inputs, (b_off, z_off), flags, blocks, outputs)
    return out, ypre, states, dt


def _scan_backward(grad, u, delta, proj, A, D, delta_bias, gate, ypre, states, dt, b_off, z_off, log_a, softplus):
    ndir, batch, length, dim = u.shape
    nstate = A[0].shape[1]
    blocks = _channel_blocks(batch, dim)
    du, ddelta = torch.empty(ndir, batch, length, dim), torch.empty(ndir, batch, length, dim)
    dbc = torch.empty(blocks, ndir, batch, length, 2 * nstate)
    dA, dD, dbias = torch.empty(batch, ndir, dim, nstate), torch.empty(batch, ndir, dim), torch.empty(batch, ndir, dim)
    dgate = torch.zeros(gate.shape) if gate is not None else torch.empty(0)
    scratch = torch.empty(batch, length, dim)
    grads = (du, ddelta, dbc, dA, dD, dbias, dgate if gate is not None else _DUMMY[3], scratch)
    flags = (bool(D), gate is not None, bool(delta_bias), log_a, softplus, True)
    saved = (_f32(ypre), _f32(states), _f32(dt))
    inputs = _scan_inputs(u, delta, proj, A, D, delta_bias, gate)
    _run_tasks("scan_backward", batch * blocks, inputs, (b_off, z_off), flags, blocks, saved, _f32(grad), grads)
    dproj = torch.zeros(ndir, *proj[0].shape)
    dproj[..., b_off : b_off + 2 * nstate] = dbc.sum(0) if blocks > 1 else dbc[0]
    return du, ddelta, dproj, dA.sum(0), dD.sum(0), dbias.sum(0), dgate


# The kernels as torch.library custom ops: opaque to torch.compile, which traces the rest of the model around them
# through their fake (shape-only) implementations, and differentiable through the hand-written backward kernels.
# Per-direction parameters are lists (empty for an absent optional one). Registered on first use under a namespace
# named after this module: a checkpoint's remote code is a second copy.
_OPS_NAMESPACE = "ecgmamba_" + "".join(c if c.isalnum() else "_" for c in __name__)
_ops = None


def _custom_ops():
    global _ops
    if _ops is not None:
        return _ops
    with _cpu_lock:
        if _ops is None:
            _ops = _register_custom_ops()
    return _ops


def _register_custom_ops():
    lib = _OPS_NAMESPACE
    existing = getattr(torch.ops, lib, None)
    if existing is not None and hasattr(existing, "scan"):  # registered by an earlier load of this module
        return existing
    define = torch.library.custom_op
    conv = define(
        f"{lib}::conv",
        _conv_forward,
        mutates_args=(),
        schema="(Tensor xz, Tensor? mask, Tensor[] weight, Tensor[] bias, int dim) -> Tensor",
    )
    conv_backward = define(
        f"{lib}::conv_backward",
        _conv_backward,
        mutates_args=(),
        schema="(Tensor grad, Tensor xz, Tensor? mask, Tensor[] weight, Tensor[] bias) -> (Tensor, Tensor, Tensor)",
    )
    scan_inputs = "Tensor u, Tensor[] delta, Tensor[] proj, Tensor[] A, Tensor[] D, Tensor[] delta_bias, Tensor? gate"
    options = "int b_off, int z_off, bool log_a, bool softplus"
    scan = define(
        f"{lib}::scan",
        _scan_forward,
        mutates_args=(),
        schema=f"({scan_inputs}, {options}, bool save) -> (Tensor, Tensor, Tensor, Tensor)",
    )
    scan_backward = define(
        f"{lib}::scan_backward",
        _scan_backward,
        mutates_args=(),
        schema=f"(Tensor grad, {scan_inputs}, Tensor ypre, Tensor states, Tensor dt, {options}) -> "
        "(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
    )

    @conv.register_fake
    def _(xz, mask, weight, bias, dim):
        return xz.new_empty(len(weight), xz.shape[0], xz.shape[1], dim)

    @conv_backward.register_fake
    def _(grad, xz, mask, weight, bias):
        ndir, (dim, ksize) = len(weight), weight[0].shape
        return xz.new_empty(xz.shape), xz.new_empty(ndir, dim, ksize), xz.new_empty(ndir, dim)

    @scan.register_fake
    def _(u, delta, proj, A, D, delta_bias, gate, b_off, z_off, log_a, softplus, save):
        ndir, batch, length, dim = u.shape
        if not save:
            return u.new_empty(batch, length, dim), u.new_empty(0), u.new_empty(0), u.new_empty(0)
        chunks = (length + _KERNEL_CHUNK - 1) // _KERNEL_CHUNK
        states = u.new_empty(ndir, batch, chunks, A[0].shape[1], dim)
        return u.new_empty(batch, length, dim), u.new_empty(batch, length, dim), states, u.new_empty(u.shape)

    @scan_backward.register_fake
    def _(grad, u, delta, proj, A, D, delta_bias, gate, ypre, states, dt, b_off, z_off, log_a, softplus):
        ndir, dim = u.shape[0], u.shape[3]
        dgate = u.new_empty(gate.shape) if gate is not None else u.new_empty(0)
        dproj, dA = u.new_empty(ndir, *proj[0].shape), u.new_empty(ndir, *A[0].shape)
        return (
            u.new_empty(u.shape),
            u.new_empty(u.shape),
            dproj,
            dA,
            u.new_empty(ndir, dim),
            u.new_empty(ndir, dim),
            dgate,
        )

    def conv_setup(ctx, inputs, output):
        xz, mask, weight, bias, _ = inputs
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(xz, mask, *weight, *bias)
        ctx.ndir = len(weight)

    def conv_grad(ctx, grad):
        if grad is None:
            return None, None, None, None, None
        xz, mask, *params = ctx.saved_tensors
        weight, bias = params[: ctx.ndir], params[ctx.ndir :]
        dxz, dweight, dbias = conv_backward(grad.contiguous(), xz, mask, list(weight), list(bias))
        return dxz, None, list(dweight.unbind(0)), list(dbias.unbind(0)) if bias else [], None

    def scan_setup(ctx, inputs, output):
        u, delta, proj, A, D, delta_bias, gate, b_off, z_off, log_a, softplus, save = inputs
        if not save:
            raise RuntimeError("the CPU scan kernel was called without save=True under autograd")
        ctx.set_materialize_grads(False)
        ctx.options = (b_off, z_off, log_a, softplus)
        ctx.sizes = [len(group) for group in (delta, proj, A, D, delta_bias)]
        ctx.has_gate = gate is not None
        ctx.save_for_backward(u, *delta, *proj, *A, *D, *delta_bias, gate, *output[1:])

    def scan_grad(ctx, grad, *unused):
        if grad is None:
            return (None,) * 12
        u, *rest = ctx.saved_tensors
        groups = []
        for size in ctx.sizes:
            groups.append(rest[:size])
            rest = rest[size:]
        gate, ypre, states, dt = rest
        grads = scan_backward(grad.contiguous(), u, *map(list, groups), gate, ypre, states, dt, *ctx.options)
        du, ddelta, dproj, dA, dD, dbias, dgate = grads
        per_direction = [
            list(g.unbind(0)) if size else [] for g, size in zip((ddelta, dproj, dA, dD, dbias), ctx.sizes)
        ]
        return du, *per_direction, dgate if ctx.has_gate else None, None, None, None, None, None

    conv.register_autograd(conv_grad, setup_context=conv_setup)
    scan.register_autograd(scan_grad, setup_context=scan_setup)
    return getattr(torch.ops, lib)


def _needs_graph(*tensors) -> bool:
    """Whether a kernel call must go through its custom op: under autograd or while compiling."""
    if _call_quietly(torch.compiler.is_compiling):
        return True
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _kernel_conv(xz, mask, weight, bias, dim):
    if _needs_graph(xz, *weight, *bias):
        return _custom_ops().conv(xz, mask, weight, bias, dim)
    return _conv_forward(xz, mask, weight, bias, dim)  # inference: skip the dispatcher's overhead


def _kernel_scan(u, delta, proj, A, D, delta_bias, gate, b_off, z_off, log_a, softplus):
    args = (u, delta, proj, A, D, delta_bias, gate, b_off, z_off, log_a, softplus)
    if _needs_graph(u, *delta, *proj, *A, *D, *delta_bias, gate):
        return _custom_ops().scan(*args, torch.is_grad_enabled())[0]
    return _scan_forward(*args, False)[0]  # inference: skip the dispatcher's overhead


def selective_scan_cpu_kernel(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Selective scan with the numba kernel (CPU tensors). Raises RuntimeError if numba is unavailable.

    The kernel's layout is time-major (see the layout notes above): the (B D L) inputs are transposed into it."""
    _kernels()
    dtype_in = u.dtype

    def time_major(x):  # (B X L) -> (B L X), float32
        return x.float().transpose(1, 2)

    proj = time_major(torch.cat([B, C], dim=1))  # B_t then C_t
    gate = None if z is None else time_major(z)
    skip, bias = ([] if x is None else [x.float()] for x in (D, delta_bias))
    scan_input = time_major(u)[None]
    out = _kernel_scan(
        scan_input, [time_major(delta)], [proj], [A.float()], skip, bias, gate, 0, 0, False, delta_softplus
    )
    return out.transpose(1, 2).to(dtype_in)


def fused_mixer(xz, mask, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, dt_proj_bias, A_log, D):
    """The (bi)directional mixer between ``in_proj`` and ``out_proj``, fused for CPUs: for each direction the
    depthwise convolution + SiLU + mask (one kernel for all directions), ``x_proj`` and ``dt_proj`` without its
    bias (matrix products), then one kernel for dt = softplus(. + bias), A = -exp(A_log), the scans, the D skip, the
    average of the directions and the gate. Direction 1, when given, is the backward scan: it walks time backwards
    (its convolution is anti-causal) instead of running on flipped copies. Same numbers as the unfused modules.

    Every parameter argument is a list with one tensor per direction (S of them: the modules' own parameters, no
    stacked copies); shapes (B batch, L tokens, D channels, K conv kernel, R time-step rank, N state size)::

        xz:             (B L 2D)    in_proj's output: x, then the gate z
        mask:           (B L)       1.0 for real tokens, 0.0 for padding; or None
        conv_weight:    (D K)       conv_bias: (D), or an empty list
        x_proj_weight:  (R+2N D)    dt_proj_weight: (D R), dt_proj_bias: (D)
        A_log:          (D N)       D: (D)
        returns:        (B L D)

    float32 CPU tensors; differentiable (hand-written backward kernels) and traceable by torch.compile.
    """
    dim = conv_weight[0].shape[0]
    rank = dt_proj_weight[0].shape[1]
    u = _kernel_conv(xz, mask, conv_weight, conv_bias, dim)  # (S B L D)
    proj = [F.linear(u[s], weight) for s, weight in enumerate(x_proj_weight)]  # (B L R+2N) each
    delta = [F.linear(p[..., :rank], weight) for p, weight in zip(proj, dt_proj_weight)]  # dt before bias, softplus
    return _kernel_scan(u, delta, proj, A_log, D, dt_proj_bias, xz, rank, dim, True, True)


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
    mamba_ssm imports, else ``"torch"`` (one logged warning); CPU tensors run ``"cpu_kernel"`` if numba imports
    (also under ``torch.compile``, which sees the kernels as custom ops), else ``"torch"`` (one logged warning);
    while JIT-tracing, for CUDA tensors while compiling, and for float64 CUDA tensors or other devices, ``"torch"``. An explicit backend that cannot run raises (ValueError for an unknown name,
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
    if u.device.type != "cpu" or _call_quietly(torch.jit.is_tracing):
        return "torch"
    # While torch.compile traces, the kernels run as custom ops (opaque to it, with fake implementations).
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
