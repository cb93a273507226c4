"""Many tables in one call (``hash_grid_encode_many``: a field per tracked actor): kernels vs the reference,
which is defined as one ``hash_grid_encode_reference`` call per table."""

from __future__ import annotations

import pytest
import torch

from simrecon.encoding import hash_grid_encode_many, hash_grid_encode_many_reference, hash_grid_encode_reference
from tests.test_encoding import (
    SMALL,
    _device,
    _kernel_backends,
    _parity_points,
    _random_points,
    _table,
)


def _many_with_grads(positions, index, tables, backend, grad_out):
    positions = positions.clone().requires_grad_(True)
    tables = [t.clone().requires_grad_(True) for t in tables]
    if backend == "reference":
        out = hash_grid_encode_many_reference(positions, index, tables, SMALL)
    else:
        out = hash_grid_encode_many(positions, index, tables, SMALL, backend=backend)
    grads = torch.autograd.grad(out, [positions, *tables], grad_out, materialize_grads=True)
    return out.detach(), grads


def _index(n: int, num_tables: int, seed: int) -> torch.Tensor:
    idx = torch.randint(0, num_tables, (n,), generator=torch.Generator().manual_seed(seed))
    idx[idx == 2] = 0  # table 2 is given but used by no point: its gradient must be zero
    return idx


def test_reference_is_one_call_per_table():
    positions = _random_points(300, seed=1)
    tables = [_table(SMALL, seed=s) for s in range(3)]
    index = _index(300, 3, seed=2)
    out = hash_grid_encode_many_reference(positions, index, tables, SMALL)
    for a, table in enumerate(tables):
        rows = index == a
        torch.testing.assert_close(out[rows], hash_grid_encode_reference(positions[rows], table, SMALL), rtol=0, atol=0)


@pytest.mark.parametrize("backend", _kernel_backends())
@pytest.mark.parametrize("points", ["random", "adversarial"])
def test_many_kernel_matches_reference(backend, points, request):
    device, positions = _parity_points(backend, points, request, 700, seed=3)
    n = positions.shape[0]
    tables = [_table(SMALL, seed=10 + s).to(device) for s in range(4)]
    index = _index(n, 4, seed=4).to(device)
    grad_out = torch.randn(n, SMALL.output_dim, generator=torch.Generator().manual_seed(5)).to(device)
    ref_out, ref_grads = _many_with_grads(positions, index, tables, "reference", grad_out)
    out, grads = _many_with_grads(positions, index, tables, backend, grad_out)
    # Same tolerances and reasons as test_encoding.test_kernel_matches_reference: the same indices and weights,
    # float32 summation order only; positional gradients carry the factor res (<= 32).
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[0], ref_grads[0], rtol=1e-4, atol=1e-3)
    for got, ref in zip(grads[1:], ref_grads[1:]):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4)
    assert not grads[3].any() and grads[1].any()  # the unused table got nothing, the others did


@pytest.mark.parametrize("backend", ["torch", *_kernel_backends()])
def test_many_empty_batch_and_one_table(backend, request):
    if backend == "cpu":
        request.getfixturevalue("cpu_ext")
    device = _device(backend)
    table = _table(SMALL).to(device).requires_grad_(True)
    empty = torch.zeros(0, 3, device=device, requires_grad=True)
    out = hash_grid_encode_many(empty, torch.zeros(0, dtype=torch.long, device=device), [table], SMALL, backend=backend)
    assert out.shape == (0, SMALL.output_dim)
    out.sum().backward()
    assert empty.grad.shape == (0, 3) and (table.grad is None or not table.grad.any())
    # one table for every point: exactly the single-table encoding
    positions = _random_points(100, seed=6).to(device)
    many = hash_grid_encode_many(positions, torch.zeros(100, dtype=torch.long, device=device), [table], SMALL,
                                 backend=backend)
    torch.testing.assert_close(many, hash_grid_encode_reference(positions, table, SMALL), rtol=1e-5, atol=1e-5)


def test_many_same_table_twice_sums_its_gradients(cpu_ext):
    # The composer may place one actor's field twice (an inserted copy): both entries are the same tensor.
    table = _table(SMALL, seed=7).requires_grad_(True)
    positions = _random_points(200, seed=8)
    index = _index(200, 2, seed=9)
    hash_grid_encode_many(positions, index, [table, table], SMALL, backend="cpu").sum().backward()
    ref = table.detach().clone().requires_grad_(True)
    hash_grid_encode_reference(positions, ref, SMALL).sum().backward()
    torch.testing.assert_close(table.grad, ref.grad, rtol=1e-5, atol=1e-4)  # float32 summation order


def test_many_bad_inputs_are_reported():
    table = _table(SMALL)
    positions = _random_points(10)
    with pytest.raises(ValueError, match=r"table_index must be in \[0, 2\), got values in \[0, 2\]"):
        hash_grid_encode_many(positions, torch.tensor([0] * 9 + [2]), [table, table], SMALL, backend="torch")
    with pytest.raises(ValueError, match=r"table_index must be \[N\] = \[10\], got \[9\]"):
        hash_grid_encode_many(positions, torch.zeros(9, dtype=torch.long), [table], SMALL, backend="torch")
    with pytest.raises(TypeError, match="integer tensor"):
        hash_grid_encode_many(positions, torch.zeros(10), [table], SMALL, backend="torch")
    with pytest.raises(ValueError, match="non-empty list"):
        hash_grid_encode_many(positions, torch.zeros(10, dtype=torch.long), [], SMALL, backend="torch")
    with pytest.raises(ValueError, match=r"table must be \[L, T, F\]"):
        hash_grid_encode_many(positions, torch.zeros(10, dtype=torch.long), [table, table[:2]], SMALL, backend="torch")
