"""Hash-grid encoding: reference correctness, kernel parity, input checks, backend selection.

Sizes are tiny so that the file runs in seconds once the CPU kernel is in the JIT cache (the first build in a
fresh cache takes about a minute; it happens once per session through the ``cpu_ext`` fixture).
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import pytest
import torch

from simrecon.encoding import (
    BackendUnavailableError,
    HashGridConfig,
    HashGridEncoding,
    _build,
    build_kernels,
    hash_grid_encode,
    hash_grid_encode_reference,
    resolve_backend,
)
from simrecon.encoding.functional import ENV_VAR

# 4 levels, resolutions 2, 5, 12, 32 and T = 1024: two dense levels (27 and 216 vertices) and two hashed
# levels (2197 and 35937 vertices), so both indexing paths are exercised.
SMALL = HashGridConfig(num_levels=4, features_per_level=2, log2_hashmap_size=10, base_resolution=2, max_resolution=32)


def _table(config: HashGridConfig, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    # Values of order 1 (not the 1e-4 init) so that absolute tolerances below are meaningful.
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(config.table_shape, generator=gen, dtype=torch.float64) * 2 - 1).to(dtype)  # [L, T, F]


def _random_points(n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, generator=gen)  # [N, 3]


def _adversarial_points(config: HashGridConfig) -> torch.Tensor:
    """Exact grid vertices of every level, the corners 0 and 1, and points outside [0, 1] (clamped)."""
    pts = []
    for res in config.resolutions:
        ticks = torch.arange(res + 1, dtype=torch.float32) / res  # vertices k / res (rounded to float32)
        grid = torch.stack(torch.meshgrid(ticks, ticks.flip(0), ticks.roll(1), indexing="ij"), -1).reshape(-1, 3)
        pts.append(grid[:: max(1, grid.shape[0] // 64)])
    pts.append(torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.5], [1.0, 0.0, 1.0]]))
    pts.append(torch.tensor([[-0.5, 0.3, 1.5], [2.0, -1.0, 0.5], [1.0 + 1e-7, -1e-7, 0.25], [-1e9, 1e9, 0.7]]))
    return torch.cat(pts)  # [N, 3]


def _kernel_backends() -> list[str]:
    names = ["cpu"]
    if torch.cuda.is_available():
        names.append("cuda")
    return names


def _device(backend: str) -> torch.device:
    return torch.device("cuda" if backend == "cuda" else "cpu")


def _parity_points(backend: str, points: str, request, n: int, seed: int) -> tuple[torch.device, torch.Tensor]:
    """The device of ``backend`` (building the CPU kernel first) and ``n`` random or the adversarial points."""
    if backend == "cpu":
        request.getfixturevalue("cpu_ext")
    device = _device(backend)
    return device, (_random_points(n, seed=seed) if points == "random" else _adversarial_points(SMALL)).to(device)


def _encode_with_grads(positions, table, config, backend, grad_out):
    positions = positions.clone().requires_grad_(True)
    table = table.clone().requires_grad_(True)
    if backend == "reference":
        out = hash_grid_encode_reference(positions, table, config)
    else:
        out = hash_grid_encode(positions, table, config, backend=backend)
    out.backward(grad_out.to(out.dtype))
    return out.detach(), table.grad, positions.grad


# --------------------------------------------------------------------------------------------- config


def test_config_levels_follow_documented_convention():
    config = HashGridConfig()
    b = math.exp((math.log(2048) - math.log(16)) / 15)
    assert config.per_level_scale == pytest.approx(b, rel=1e-12)
    assert config.resolutions[0] == 16 and config.resolutions[-1] == 2048
    assert config.resolutions == tuple(math.floor(16 * b**level + 1e-6) for level in range(16))
    # (res + 1)^3 <= 2^19 <=> res <= 79: dense exactly for the levels up to 58
    assert config.dense_levels == tuple(r <= 79 for r in config.resolutions)
    assert config.table_shape == (16, 2**19, 2) and config.output_dim == 32
    assert SMALL.resolutions == (2, 5, 12, 32) and SMALL.dense_levels == (True, True, False, False)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="num_levels"):
        HashGridConfig(num_levels=0)
    with pytest.raises(ValueError, match="max_resolution"):
        HashGridConfig(base_resolution=64, max_resolution=32)


# ------------------------------------------------------------------------------------------ reference


def test_reference_gradcheck_float64():
    config = HashGridConfig(num_levels=3, features_per_level=2, log2_hashmap_size=6, base_resolution=2, max_resolution=8)
    gen = torch.Generator().manual_seed(1)
    # points strictly inside (0, 1): finite differences must not cross the clamp, where the documented
    # straight-through gradient differs from the numerical one on purpose
    positions = (torch.rand(6, 3, generator=gen, dtype=torch.float64) * 0.9 + 0.05).requires_grad_(True)
    table = torch.randn(config.table_shape, generator=gen, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p, t: hash_grid_encode_reference(p, t, config), (positions, table))


def test_reference_matches_manual_trilinear_on_dense_level():
    config = HashGridConfig(num_levels=1, features_per_level=1, log2_hashmap_size=6, base_resolution=2, max_resolution=2)
    table = torch.arange(27, dtype=torch.float64).reshape(1, 27, 1)  # value of vertex (i, j, k) = i + 3j + 9k
    positions = torch.tensor([[0.25, 0.5, 0.75], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    out = hash_grid_encode_reference(positions, table, config)
    # the dense index is linear in (i, j, k), so trilinear interpolation reproduces 2x + 6y + 18z exactly
    expected = (2 * positions[:, 0] + 6 * positions[:, 1] + 18 * positions[:, 2])[:, None]
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)  # float64 rounding only


def test_clamped_positions_use_boundary_value_and_inner_derivative():
    table = _table(SMALL, seed=3)
    inside = torch.tensor([[1.0, 0.0, 0.3]], requires_grad=True)
    outside = torch.tensor([[1.5, -2.0, 0.3]], requires_grad=True)
    a = hash_grid_encode_reference(inside, table, SMALL)
    b = hash_grid_encode_reference(outside, table, SMALL)
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # same clamped point, same arithmetic
    a.sum().backward()
    b.sum().backward()
    torch.testing.assert_close(inside.grad, outside.grad, rtol=0, atol=0)
    assert inside.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------- kernel parity


@pytest.mark.parametrize("backend", _kernel_backends())
@pytest.mark.parametrize("points", ["random", "adversarial"])
def test_kernel_matches_reference(backend, points, request):
    device, positions = _parity_points(backend, points, request, 500, seed=4)
    table = _table(SMALL, seed=5).to(device)
    grad_out = torch.randn(positions.shape[0], SMALL.output_dim, generator=torch.Generator().manual_seed(6)).to(device)
    ref = _encode_with_grads(positions, table, SMALL, "reference", grad_out)
    got = _encode_with_grads(positions, table, SMALL, backend, grad_out)
    # Same indices and weights; only the float32 summation order differs: outputs are sums of 8 terms of
    # magnitude <= 1 (a few ulp), table gradients sums of a few hundred w * g terms.
    torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[1], ref[1], rtol=1e-5, atol=1e-4)
    # Positional gradients carry the factor res (up to 32 here) times differences of table values.
    torch.testing.assert_close(got[2], ref[2], rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("features", [1, 2, 4, 8])
def test_cpu_kernel_feature_counts(features, cpu_ext):
    config = HashGridConfig(num_levels=3, features_per_level=features, log2_hashmap_size=8, base_resolution=3,
                            max_resolution=20)
    n = 103  # not a multiple of the kernel's block (32) nor of its SIMD width (4): exercises the tails
    positions = _random_points(n, seed=7)
    table = _table(config, seed=8)
    grad_out = torch.randn(n, config.output_dim, generator=torch.Generator().manual_seed(9))
    ref = _encode_with_grads(positions, table, config, "reference", grad_out)
    got = _encode_with_grads(positions, table, config, "cpu", grad_out)
    # float32 summation order only (see test_kernel_matches_reference)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)


def test_cpu_kernel_large_batch_parity(cpu_ext):
    # 70 000 points x 16 outputs x 4 bytes > 4 MB: the kernel's output and its level-major copy of the upstream
    # gradient live in huge-page mappings instead of the heap (the path real training batches take).
    config = HashGridConfig(num_levels=2, features_per_level=8, log2_hashmap_size=12, base_resolution=4,
                            max_resolution=64)
    n = 70_001
    positions = _random_points(n, seed=12)
    table = _table(config, seed=13)
    grad_out = torch.randn(n, config.output_dim, generator=torch.Generator().manual_seed(14))
    ref = _encode_with_grads(positions, table, config, "reference", grad_out)
    got = _encode_with_grads(positions, table, config, "cpu", grad_out)
    torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=1e-5)  # sums of 8 terms (a few ulp)
    # table gradients sum ~n * 8 / T = 140 w * g terms per row on the hashed level: float32 order only
    torch.testing.assert_close(got[1], ref[1], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(got[2], ref[2], rtol=1e-4, atol=1e-3)  # factor res <= 64 (see above)


@pytest.mark.parametrize("backend", _kernel_backends())
def test_kernel_half_table(backend, request):
    if backend == "cpu":
        request.getfixturevalue("cpu_ext")
    device = _device(backend)
    positions = _random_points(300, seed=10).to(device)
    table16 = _table(SMALL, seed=11, dtype=torch.float16).to(device)
    got = hash_grid_encode(positions, table16, SMALL, backend=backend)
    ref = hash_grid_encode_reference(positions, table16.float(), SMALL)  # exact fp16 values, fp32 arithmetic
    assert got.dtype == torch.float16
    # Both accumulate in float32 from the same fp16 table values; the only extra error is rounding the output
    # (|value| <= 1) to fp16: half an ulp, 2^-11 relative, i.e. <= 4.9e-4 absolute.
    torch.testing.assert_close(got.float(), ref, rtol=0, atol=1e-3)


@pytest.mark.parametrize("backend", ["torch", *_kernel_backends()])
def test_empty_batch(backend, request):
    if backend == "cpu":
        request.getfixturevalue("cpu_ext")
    device = _device(backend)
    positions = torch.zeros(0, 3, device=device, requires_grad=True)
    table = _table(SMALL).to(device).requires_grad_(True)
    out = hash_grid_encode(positions, table, SMALL, backend=backend)
    assert out.shape == (0, SMALL.output_dim)
    out.sum().backward()
    assert positions.grad.shape == (0, 3)
    assert table.grad is None or not table.grad.any()


@pytest.mark.parametrize("backend", ["torch", *_kernel_backends()])
def test_forward_is_deterministic(backend, request):
    if backend == "cpu":
        request.getfixturevalue("cpu_ext")
    device = _device(backend)
    positions = _random_points(2000, seed=12).to(device)
    table = _table(SMALL, seed=13).to(device)
    a = hash_grid_encode(positions, table, SMALL, backend=backend)
    b = hash_grid_encode(positions, table, SMALL, backend=backend)
    assert torch.equal(a, b)  # bitwise: no atomics or thread-dependent order in the forward


def test_cpu_kernel_thread_count_does_not_change_results(cpu_ext):
    positions = _random_points(3000, seed=14)
    table = _table(SMALL, seed=15)
    grad_out = torch.randn(3000, SMALL.output_dim, generator=torch.Generator().manual_seed(16))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _encode_with_grads(positions, table, SMALL, "cpu", grad_out)
        torch.set_num_threads(2)
        two = _encode_with_grads(positions, table, SMALL, "cpu", grad_out)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])  # per-level order is fixed
    # positional gradients are summed over per-thread partial sums: float32 reassociation only
    torch.testing.assert_close(one[2], two[2], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------- input checks


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_nan_positions_refused(backend):
    positions = _random_points(5)
    positions[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        hash_grid_encode(positions, _table(SMALL), SMALL, backend=backend)


def test_bad_shapes_are_reported():
    with pytest.raises(ValueError, match=r"positions must be \[N, 3\], got \[5, 2\]"):
        hash_grid_encode(torch.zeros(5, 2), _table(SMALL), SMALL, backend="torch")
    with pytest.raises(ValueError, match=r"table must be \[L, T, F\] = \[4, 1024, 2\] for this config, got \[4, 512, 2\]"):
        hash_grid_encode(torch.zeros(5, 3), torch.zeros(4, 512, 2), SMALL, backend="torch")
    with pytest.raises(TypeError, match="floating point"):
        hash_grid_encode(torch.zeros(5, 3, dtype=torch.int64), _table(SMALL), SMALL, backend="torch")
    with pytest.raises(ValueError, match="backend must be one of"):
        hash_grid_encode(torch.zeros(5, 3), _table(SMALL), SMALL, backend="fast")


# ----------------------------------------------------------------------------------- backend selection


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_requested_without_cuda_is_a_clear_error():
    with pytest.raises(BackendUnavailableError, match="backend 'cuda' requested but .* no CUDA device"):
        hash_grid_encode(_random_points(4), _table(SMALL), SMALL, backend="cuda")


def test_tcnn_not_available_without_cuda_or_package():
    if _build.tcnn_module() is not None:
        pytest.skip("tinycudann is importable here")
    with pytest.raises(BackendUnavailableError, match="tcnn"):
        HashGridEncoding(num_levels=2, log2_hashmap_size=8, max_resolution=32, backend="tcnn")


def test_auto_picks_cpu_kernel_when_it_builds(cpu_ext, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_backend("auto", "cpu", SMALL) == "cpu"
    module = HashGridEncoding(num_levels=4, log2_hashmap_size=10, base_resolution=2, max_resolution=32)
    assert module.backend == "cpu"


def test_auto_falls_back_to_reference_without_compiler(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(_build, "_HANDLES", {})
    monkeypatch.setattr(_build, "_FAILURES", {})
    monkeypatch.setattr(_build, "compiler_available", lambda kind: False)
    with pytest.warns(RuntimeWarning, match="could not build the cpu hash-grid kernel"):
        assert resolve_backend("auto", "cpu", SMALL) == "torch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the failure is remembered: no second warning
        assert resolve_backend("auto", "cpu", SMALL) == "torch"
        out = hash_grid_encode(_random_points(10), _table(SMALL), SMALL)
    assert out.shape == (10, SMALL.output_dim)
    with pytest.raises(BackendUnavailableError, match="no C\\+\\+ compiler"):
        resolve_backend("cpu", "cpu", SMALL)


def test_env_var_selects_backend(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "torch")
    module = HashGridEncoding(num_levels=4, log2_hashmap_size=10, base_resolution=2, max_resolution=32)
    assert module.backend == "torch"
    monkeypatch.setenv(ENV_VAR, "bogus")
    with pytest.raises(ValueError, match=ENV_VAR):
        resolve_backend("auto", "cpu", SMALL)
    # an explicit argument wins over the variable
    assert resolve_backend("torch", "cpu", SMALL) == "torch"


def test_unsupported_feature_count_falls_back_in_auto(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    config = HashGridConfig(num_levels=2, features_per_level=3, log2_hashmap_size=8, base_resolution=2,
                            max_resolution=8)
    assert resolve_backend("auto", "cpu", config) == "torch"
    with pytest.raises(BackendUnavailableError, match="features_per_level"):
        resolve_backend("cpu", "cpu", config)


def test_import_does_not_compile():
    code = (
        "import simrecon.encoding as e, simrecon.encoding._build as b, sys; "
        "assert not b._HANDLES and not b._FAILURES; "
        "e.HashGridEncoding(num_levels=2, log2_hashmap_size=8, max_resolution=32); "
        "assert not b._HANDLES, 'construction must not build'; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


# ---------------------------------------------------------------------------------------------- module


def test_module_shapes_init_and_gradients(cpu_ext):
    module = HashGridEncoding(num_levels=4, features_per_level=2, log2_hashmap_size=10, base_resolution=2,
                              max_resolution=32)
    assert module.table.shape == (4, 1024, 2) and module.table.is_contiguous()
    assert module.table.abs().max() <= 1e-4  # Instant-NGP init uniform(-1e-4, 1e-4)
    positions = _random_points(64, seed=17).requires_grad_(True)
    out = module(positions)
    assert out.shape == (64, module.output_dim) == (64, 8)
    out.square().sum().backward()
    assert module.table.grad is not None and module.table.grad.shape == module.table.shape
    assert positions.grad is not None and positions.grad.shape == (64, 3)


def test_build_kernels_reports_every_backend(cpu_ext):
    report = build_kernels(verbose=False)
    assert set(report) == {"cpu", "cuda", "tcnn", "torch"}
    assert report["cpu"]["built"] and report["torch"]["available"]
    assert report["cuda"]["available"] == (_build.load_extension("cuda") is not None)


def test_build_kernels_command_prints_table(cpu_ext, capsys):
    from simrecon.cli.kernels_cmd import build_kernels_command

    build_kernels_command(verbose=False)
    printed = capsys.readouterr().out
    assert "cpu" in printed and "torch" in printed
