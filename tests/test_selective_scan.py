"""Selective scan: every fast path against the reference loop (values and gradients), float64 accuracy at
L=5000, dtypes, dispatch, and ONNX export of the pure-PyTorch scan."""

import ast
import concurrent.futures
import functools
import importlib.util
import logging
import time
import types
from pathlib import Path

import pytest
import torch

from modeling_ecgmamba.selective_scan import (
    BACKENDS,
    available_backends,
    resolve_backend,
    selective_scan,
    selective_scan_ref,
)

# The package exports the function selective_scan under the submodule's name: fetch the module itself.
ss = importlib.import_module("modeling_ecgmamba.selective_scan")
FAST_BACKENDS = ("cpu_kernel", "torch")
INPUT_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(batch, dim, nstate, length, *, d=True, z=True, bias=True, seed=0, dtype=torch.float64):
    """Inputs of realistic scale: dt = softplus(delta + bias) mostly in [1e-3, 0.1], A = -(1..N)-ish."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    inputs = {
        "u": randn(batch, dim, length),
        "delta": randn(batch, dim, length) - 3.0,
        "A": -(
            torch.arange(1, nstate + 1, dtype=torch.float64).repeat(dim, 1)
            * (0.5 + torch.rand(dim, 1, generator=gen, dtype=torch.float64))
        ),
        "B": randn(batch, nstate, length),
        "C": randn(batch, nstate, length),
        "D": randn(dim) if d else None,
        "z": randn(batch, dim, length) if z else None,
        "delta_bias": 0.5 * randn(dim) if bias else None,
    }
    return {k: (v.to(dtype) if v is not None else None) for k, v in inputs.items()}


def run(fn, inputs, softplus, grad_out=None, **kwargs):
    """Output and gradients (for every given input) of fn on leaf copies of inputs."""
    leaves = {
        k: (v.detach().clone().requires_grad_(grad_out is not None) if v is not None else None)
        for k, v in inputs.items()
    }
    out = fn(**leaves, delta_softplus=softplus, **kwargs)
    grads = {}
    if grad_out is not None:
        names = [k for k, v in leaves.items() if v is not None]
        values = torch.autograd.grad(out, [leaves[k] for k in names], grad_out.to(out.dtype))
        grads = dict(zip(names, values))
    return out, grads


def rel_err(actual, expected):
    """Max abs error over the expected values' max magnitude, floored at 0.01: inputs are O(1), so a gradient that
    is exactly 0 (dA at L=1) may come back as float32 rounding noise of O(1e-8)."""
    expected = expected.double()
    return ((actual.double() - expected).abs().max() / expected.abs().max().clamp_min(0.01)).item()


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("length", [1, 7, 63, 65, 257])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("optional", ["all", "none"])
def test_matches_reference_values_and_grads(backend, length, batch, optional):
    full = optional == "all"
    softplus = full or length % 2 == 1  # softplus on and off both occur, with and without the optional inputs
    inputs = make_inputs(batch, 5, 4, length, d=full, z=full, bias=full, seed=length + batch)
    if not softplus:
        inputs["delta"] = torch.rand_like(inputs["delta"]) * 0.2  # positive dt without softplus
    grad_out = torch.randn(batch, 5, length, dtype=torch.float64)
    expected, expected_grads = run(selective_scan_ref, inputs, softplus, grad_out)  # float64 oracle
    inputs32 = {k: (v.float() if v is not None else None) for k, v in inputs.items()}
    out, grads = run(selective_scan, inputs32, softplus, grad_out, backend=backend)
    assert out.dtype == torch.float32 and out.shape == (batch, 5, length)
    assert rel_err(out, expected) < 1e-5
    assert set(grads) == set(expected_grads)
    for name, grad in grads.items():
        assert grad.shape == inputs[name].shape and grad.dtype == torch.float32, name
        assert rel_err(grad, expected_grads[name]) < 1e-4, name


def test_float32_reference_matches_float64():
    inputs = make_inputs(2, 3, 4, 50)
    expected, _ = run(selective_scan_ref, inputs, True)
    out, _ = run(selective_scan_ref, {k: (v.float() if v is not None else None) for k, v in inputs.items()}, True)
    assert out.dtype == torch.float32 and rel_err(out, expected) < 1e-5


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_float64_accuracy_at_length_5000(backend):
    """Realistic dt (softplus of values around -4: 1e-3..0.1) and A = -(1..16): relative error <= 1e-5."""
    gen = torch.Generator().manual_seed(5000)
    batch, dim, nstate, length = 1, 4, 16, 5000
    inputs = make_inputs(batch, dim, nstate, length, seed=7)
    inputs["delta"] = (torch.randn(batch, dim, length, generator=gen, dtype=torch.float64) * 0.8 - 4.0).clamp(
        -6.9, -2.2
    )
    inputs["A"] = -torch.arange(1, nstate + 1, dtype=torch.float64).repeat(dim, 1)
    inputs["delta_bias"] = None
    expected, _ = run(selective_scan_ref, inputs, True)
    out, _ = run(
        selective_scan, {k: (v.float() if v is not None else None) for k, v in inputs.items()}, True, backend=backend
    )
    assert rel_err(out, expected) <= 1e-5


@functools.cache
def float64_oracle(dt_range, length):
    """Inputs with time steps log-uniform in dt_range (given directly, no softplus), and the float64 reference's
    output and gradients (shared by the backends: autograd through the loop takes ~10 s at L=5000, one channel)."""
    gen = torch.Generator().manual_seed(length)
    inputs = make_inputs(1, 4 if length <= 400 else 1, 16, length, seed=length)
    low, high = torch.log(torch.tensor(dt_range, dtype=torch.float64))
    inputs["delta"] = torch.exp(low + (high - low) * torch.rand(inputs["u"].shape, generator=gen, dtype=torch.float64))
    inputs["delta_bias"] = None
    grad_out = torch.randn(inputs["u"].shape, generator=gen, dtype=torch.float64)
    return (inputs, grad_out, *run(selective_scan_ref, inputs, False, grad_out))


@pytest.mark.parametrize(
    "dt_range, length",
    [((1e-4, 100.0), 400), ((8.0, 12.0), 200), ((20.0, 30.0), 200), ((90.0, 110.0), 100), ((1e-4, 100.0), 5000)],
    ids=["1e-4..100", "about-10", "about-25", "about-100", "1e-4..100-L5000"],
)
@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_every_gradient_holds_at_any_time_step(backend, dt_range, length):
    """Against the float64 oracle, the output and every input's gradient stay within 1e-5 of that tensor's own
    largest magnitude (no floor), for time steps log-uniform in the range (dt * A down to about -2400 per step):
    decays that underflow, and gradients as small as exp(-25) ~ 1e-11 (dA when every dt is about 25)."""
    inputs, grad_out, expected, expected_grads = float64_oracle(dt_range, length)
    inputs32 = {k: (v.float() if v is not None else None) for k, v in inputs.items()}
    out, grads = run(selective_scan, inputs32, False, grad_out, backend=backend)

    def own_scale_error(actual, reference):
        return ((actual.double() - reference).abs().max() / reference.abs().max().clamp_min(1e-30)).item()

    assert own_scale_error(out, expected) < 1e-5
    for name, grad in grads.items():
        assert torch.isfinite(grad).all() and own_scale_error(grad, expected_grads[name]) < 1e-5, name


@pytest.mark.parametrize("backend", [*FAST_BACKENDS, "reference"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs(backend, dtype):
    inputs = make_inputs(2, 3, 4, 33, dtype=dtype)
    expected, _ = run(
        selective_scan_ref, {k: (v.double() if v is not None else None) for k, v in inputs.items()}, True
    )
    out, grads = run(selective_scan, inputs, True, torch.randn(2, 3, 33), backend=backend)
    assert out.dtype == dtype
    assert rel_err(out.float(), expected) < 1e-2  # only the final cast rounds: fp32 inside
    for name, grad in grads.items():
        assert grad.dtype == dtype and torch.isfinite(grad.float()).all(), name


def saved_bytes(fn):
    """Bytes autograd keeps for backward while fn() runs: distinct storages of the saved tensors (a saved view
    counts its whole storage; views sharing one storage count once)."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = fn()
    return sum(storages.values()), out


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_training_memory_has_no_state_tensor(backend):
    """Autograd keeps O(B D L) bytes, far below one (B D L N) float32 state tensor: the kernel saves its inputs
    and recomputes the states; the PyTorch scan keeps the state entering each block of 32 steps (N/32 B D L)."""
    batch, dim, nstate, length = 2, 32, 64, 256
    leaves = {k: v.requires_grad_() for k, v in make_inputs(batch, dim, nstate, length, dtype=torch.float32).items()}
    nbytes, out = saved_bytes(lambda: selective_scan(**leaves, delta_softplus=True, backend=backend))
    state_bytes = batch * dim * length * nstate * 4
    assert nbytes < state_bytes / 3, f"{backend}: autograd keeps {nbytes} bytes; one state tensor is {state_bytes}"
    out.sum().backward()
    assert all(torch.isfinite(v.grad).all() for v in leaves.values())


def test_shape_errors():
    inputs = make_inputs(2, 3, 4, 10, dtype=torch.float32)
    with pytest.raises(ValueError, match="B must have shape"):
        selective_scan(**{**inputs, "B": inputs["B"][:, :, :5]})
    with pytest.raises(ValueError, match=r"u must be \(batch, dim, L\)"):
        selective_scan(**{**inputs, "u": inputs["u"][0]})


# ---------------------------------------------------------------------------------------------------------------
# The fused CPU mixer's kernels
# ---------------------------------------------------------------------------------------------------------------


def kernel_op_inputs(seed=0):
    """Small inputs of the two custom ops: a bidirectional mixer (parameters one per direction, A as A_log), batch 2
    with one padded record."""
    gen = torch.Generator().manual_seed(seed)
    ndir, batch, length, dim, nstate, ksize, rank = 2, 2, 9, 16, 4, 4, 3

    def leaves(*shape, scale=1.0, shift=0.0):
        return [(torch.randn(*shape, generator=gen) * scale + shift).requires_grad_() for _ in range(ndir)]

    mask = torch.ones(batch, length)
    mask[1, 6:] = 0
    xz = leaves(batch, length, 2 * dim)[0]
    conv = (xz, mask, leaves(dim, ksize), leaves(dim), dim)
    u = torch.randn(ndir, batch, length, dim, generator=gen).requires_grad_()
    delta, bias = leaves(batch, length, dim, shift=-3.0), leaves(dim, scale=0.5)  # dt = softplus(delta + bias)
    proj, A_log = leaves(batch, length, rank + 2 * nstate), leaves(dim, nstate, scale=0.3)
    return conv, (u, delta, proj, A_log, leaves(dim), bias, xz, rank, dim, True, True, True)


def test_kernel_custom_ops_pass_opcheck():
    """Schema, fake (meta) implementations for torch.compile, and the registered autograd of both kernels."""
    ops = ss._custom_ops()
    conv_args, scan_args = kernel_op_inputs()
    for op, args in ((ops.conv, conv_args), (ops.scan, scan_args)):
        results = torch.library.opcheck(op, args)
        assert set(results.values()) == {"SUCCESS"}, results


def kernel_results(conv_args, scan_args):
    """The two kernels' outputs and the gradients of every input, through the custom ops."""
    u = ss._kernel_conv(*conv_args)
    out = ss._kernel_scan(u, *scan_args[1:-1])
    leaves = [conv_args[0], *conv_args[2], *scan_args[1], *scan_args[2], *scan_args[3], *scan_args[5]]
    return u, out, torch.autograd.grad(out.square().sum(), leaves)


def test_kernels_give_the_same_numbers_on_any_thread_count_and_pool(monkeypatch):
    """Tasks split over channel blocks and threads: the forward values are identical bit for bit with 1 thread, on
    torch's OpenMP team and on the fallback task threads (a channel's arithmetic does not depend on its block or
    thread), gradients agree to float32 rounding."""
    conv_args, scan_args = kernel_op_inputs(seed=1)
    results = {}
    for threads, team in ((1, "openmp"), (2, "openmp"), (2, "task threads")):
        monkeypatch.setattr(torch, "get_num_threads", lambda threads=threads: threads)
        if team == "task threads":
            monkeypatch.setattr(ss, "_openmp", (None,))
        results[threads, team] = kernel_results(conv_args, scan_args)
    one = results[1, "openmp"]
    for other in list(results.values())[1:]:
        assert torch.equal(one[0], other[0]) and torch.equal(one[1], other[1])
        for first, second in zip(one[2], other[2]):
            torch.testing.assert_close(first, second, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(
    "parallel backend: OpenMP" not in torch.__config__.parallel_info(), reason="torch's threads are not OpenMP"
)
def test_kernels_run_on_torchs_openmp_team_and_from_several_threads_at_once(monkeypatch):
    """Where torch's intra-op threads are an OpenMP team the kernels run on it (GOMP_parallel found through torch),
    and calls from several Python threads at once (each the master of its own team) give the same numbers."""
    assert ss._openmp_team() is not None
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    inputs = make_inputs(3, 64, 4, 40, dtype=torch.float32)
    expected = selective_scan(**inputs, delta_softplus=True, backend="cpu_kernel")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        outputs = list(
            pool.map(lambda _: selective_scan(**inputs, delta_softplus=True, backend="cpu_kernel"), range(16))
        )
    assert all(torch.equal(out, expected) for out in outputs)


def test_kernels_run_in_a_forked_child(monkeypatch):
    """Neither the OpenMP team nor the task threads survive a fork (a DataLoader worker): the child starts task
    threads of its own (GNU OpenMP would hang starting a team there)."""
    multiprocessing = pytest.importorskip("multiprocessing")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    inputs = make_inputs(2, 64, 4, 20, dtype=torch.float32)
    expected = selective_scan(**inputs, delta_softplus=True, backend="cpu_kernel")  # the parent's threads exist now
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        got = pool.apply_async(_scan_in_child, (inputs,)).get(timeout=120)
    assert torch.equal(got, expected)


def _scan_in_child(inputs):
    torch.set_num_threads(2)
    return selective_scan(**inputs, delta_softplus=True, backend="cpu_kernel")


# ---------------------------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def fresh_loader_state(monkeypatch):
    """Forget what the lazy loaders found and which warnings were logged (restored after the test)."""
    monkeypatch.setattr(ss, "_cpu_kernels", None)
    monkeypatch.setattr(ss, "_cpu_kernels_error", None)
    monkeypatch.setattr(ss, "_cuda_fn", None)
    monkeypatch.setattr(ss, "_cuda_error", None)
    monkeypatch.setattr(ss, "_warned", set())
    monkeypatch.delenv(ss.ENV_VAR, raising=False)


def test_cpu_default_is_the_kernel(monkeypatch):
    monkeypatch.delenv(ss.ENV_VAR, raising=False)
    u = torch.zeros(1, 2, 3)
    assert resolve_backend(u) == "cpu_kernel"
    assert resolve_backend(u, "auto") == "cpu_kernel"
    assert available_backends()[:3] == ["reference", "cpu_kernel", "torch"]


def test_export_uses_the_loop_free_scan_compile_the_kernel_and_jit_tracing_the_torch_scan(monkeypatch):
    monkeypatch.delenv(ss.ENV_VAR, raising=False)
    u = torch.zeros(1, 2, 3)
    with monkeypatch.context() as patch:
        patch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
        assert resolve_backend(u) == "parallel"
        assert resolve_backend(u, "cpu_kernel") == "parallel"  # a kernel cannot be exported: the dispatch decides
    with monkeypatch.context() as patch:
        patch.setattr(torch.compiler, "is_exporting", lambda: True)
        assert resolve_backend(u) == "parallel"
    with monkeypatch.context() as patch:
        patch.setattr(torch.compiler, "is_compiling", lambda: True)  # the kernels are custom ops torch.compile sees
        assert resolve_backend(u) == "cpu_kernel" and ss.is_tracing() and not ss.is_exporting()
    with monkeypatch.context() as patch:
        patch.setattr(torch.jit, "is_tracing", lambda: True)
        assert resolve_backend(u) == "torch"


@pytest.mark.parametrize("length", [1, 7, 8, 9, 125, 301])
def test_parallel_scan_matches_the_reference(length):
    generator = torch.Generator().manual_seed(length)
    batch, dim, state = 2, 6, 4

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    u, delta, z = randn(batch, dim, length), randn(batch, dim, length) - 1.0, randn(batch, dim, length)
    B, C = randn(batch, state, length), randn(batch, state, length)
    A = -torch.arange(1, state + 1, dtype=torch.float64).expand(dim, state).contiguous()
    D, bias = randn(dim), torch.rand(dim, generator=generator, dtype=torch.float64)
    expected = selective_scan_ref(u, delta, A, B, C, D, z, bias, True)
    got = selective_scan(u, delta, A, B, C, D, z, bias, True, backend="parallel")
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)
    # float32 as exported: within float32 rounding of the float64 reference.
    got32 = selective_scan(*(t.float() for t in (u, delta, A, B, C, D, z, bias)), True, backend="parallel")
    torch.testing.assert_close(got32.double(), expected, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("dt_range, length", [((1e-4, 100.0), 400), ((1e-4, 100.0), 5000)], ids=["L400", "L5000"])
def test_parallel_scan_holds_at_any_time_step_and_length(dt_range, length):
    """The export form in float32 (forward only: export runs inference) within 1e-5 of the float64 oracle for time
    steps log-uniform in [1e-4, 100]: the decay between chunks is a segment sum, never a difference of two long
    cumulative sums (which cost 2e-5 at L=5000)."""
    inputs, _, expected, _ = float64_oracle(dt_range, length)
    with torch.no_grad():
        got = selective_scan(
            **{k: (v.float() if v is not None else None) for k, v in inputs.items()}, backend="parallel"
        )
    assert ((got.double() - expected).abs().max() / expected.abs().max()).item() < 1e-5


def test_config_lists_every_backend():
    from modeling_ecgmamba.configuration_ecgmamba import SCAN_BACKENDS

    assert set(SCAN_BACKENDS) == {"auto", *BACKENDS}


def test_missing_numba_falls_back_with_one_warning(monkeypatch, caplog, fresh_loader_state):
    def broken():
        raise ImportError("No module named 'numba'")

    monkeypatch.setattr(ss, "_build_cpu_kernels", broken)
    u = torch.zeros(1, 2, 3)
    with caplog.at_level(logging.WARNING, logger=ss.logger.name):
        assert resolve_backend(u) == "torch"
        assert resolve_backend(u) == "torch"
        out = selective_scan(**make_inputs(1, 2, 4, 3, dtype=torch.float32))
    assert out.shape == (1, 2, 3)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "numba" in warnings[0].getMessage()
    assert "cpu_kernel" not in available_backends()
    with pytest.raises(RuntimeError, match="cpu_kernel"):
        resolve_backend(u, "cpu_kernel")


def test_cuda_without_mamba_ssm_falls_back_with_one_warning(monkeypatch, caplog, fresh_loader_state):
    monkeypatch.setattr(ss, "_load_cuda_kernel", lambda: None)
    fake_cuda = types.SimpleNamespace(is_cuda=True, device=torch.device("cuda", 0), dtype=torch.float32)
    with caplog.at_level(logging.WARNING, logger=ss.logger.name):
        assert resolve_backend(fake_cuda) == "torch"
        assert resolve_backend(fake_cuda) == "torch"
    assert len([r for r in caplog.records if "mamba_ssm" in r.getMessage()]) == 1
    with pytest.raises(RuntimeError, match="cuda"):
        resolve_backend(fake_cuda, "cuda")
    with pytest.raises(RuntimeError, match="CUDA tensors"):
        resolve_backend(torch.zeros(1, 2, 3), "cuda")
    monkeypatch.setattr(ss, "_load_cuda_kernel", lambda: print)  # "importable"
    assert resolve_backend(fake_cuda) == "cuda"
    assert resolve_backend(types.SimpleNamespace(**{**vars(fake_cuda), "dtype": torch.float64})) == "torch"


def test_environment_variable_overrides(monkeypatch):
    u = torch.zeros(1, 2, 3)
    monkeypatch.setenv(ss.ENV_VAR, "torch")
    assert resolve_backend(u) == "torch"
    monkeypatch.setenv(ss.ENV_VAR, "Reference")
    assert resolve_backend(u) == "reference"
    assert resolve_backend(u, "cpu_kernel") == "cpu_kernel"  # an explicit argument wins
    monkeypatch.setenv(ss.ENV_VAR, "auto")
    assert resolve_backend(u) == "cpu_kernel"
    monkeypatch.setenv(ss.ENV_VAR, "fastest")
    with pytest.raises(ValueError, match="ECGMAMBA_SCAN_BACKEND"):
        resolve_backend(u)


def test_unknown_backend_names_the_valid_ones():
    with pytest.raises(ValueError) as info:
        selective_scan(**make_inputs(1, 2, 4, 3, dtype=torch.float32), backend="triton")
    for name in ("auto", *BACKENDS):
        assert repr(name) in str(info.value)


def test_module_level_imports_are_light():
    """Hub remote code: at module level only the standard library, NumPy and PyTorch, nothing from the repository;
    numba and mamba_ssm only inside functions (imported lazily, guarded)."""
    tree = ast.parse(Path(ss.__file__).read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports"
            top.add(node.module.split(".")[0])
    assert top <= {"__future__", "logging", "os", "queue", "threading", "math", "numpy", "torch"}, top
    lazy = {
        alias.name if isinstance(node, ast.Import) else node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom) and node not in tree.body
        for alias in node.names
    }
    assert {"numba", "mamba_ssm.ops.selective_scan_interface"} <= lazy


@pytest.mark.cuda
@pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("mamba_ssm") is None,
    reason="needs a CUDA GPU and mamba_ssm",
)
def test_cuda_kernel_matches_reference():
    assert resolve_backend(torch.zeros(1, 1, 1, device="cuda")) == "cuda"
    inputs = make_inputs(2, 64, 16, 300, dtype=torch.float32)
    inputs = {k: (v.cuda() if v is not None else None) for k, v in inputs.items()}
    grad_out = torch.randn(2, 64, 300, device="cuda")
    expected, expected_grads = run(selective_scan_ref, inputs, True, grad_out)
    out, grads = run(selective_scan, inputs, True, grad_out, backend="cuda")
    assert rel_err(out, expected) < 1e-4
    for name, grad in grads.items():
        assert rel_err(grad, expected_grads[name]) < 1e-3, name


# ---------------------------------------------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------------------------------------------


class _TinyMixer(torch.nn.Module):
    """A selective scan with Mamba's parameterisation, calling selective_scan with the automatic backend."""

    def __init__(self, dim=6, nstate=4):
        super().__init__()
        self.nstate = nstate
        self.A_log = torch.nn.Parameter(torch.log(torch.arange(1, nstate + 1, dtype=torch.float32).repeat(dim, 1)))
        self.D = torch.nn.Parameter(torch.ones(dim))
        self.dt_bias = torch.nn.Parameter(torch.full((dim,), -3.0))
        self.proj = torch.nn.Linear(dim, 2 * nstate + 1)

    def forward(self, x):  # x: (batch, dim, L)
        b_c_dt = self.proj(x.transpose(1, 2)).transpose(1, 2)
        B, C, dt = b_c_dt.split([self.nstate, self.nstate, 1], dim=1)
        return selective_scan(
            x, dt.expand_as(x), -torch.exp(self.A_log), B, C, self.D, z=x, delta_bias=self.dt_bias, delta_softplus=True
        )


def test_torch_scan_exports_to_onnx(tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = _TinyMixer().eval()
    x = torch.randn(2, 6, 20)  # two full chunks and a partial one
    start = time.perf_counter()
    path = tmp_path / "scan.onnx"
    with torch.no_grad():
        expected = model(x)
        torch.onnx.export(model, (x,), str(path), dynamo=True, opset_version=18, verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert (torch.from_numpy(got) - expected).abs().max().item() < 1e-4
    assert time.perf_counter() - start < 60, "ONNX export took too long"
