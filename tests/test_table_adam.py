"""Adam for hash tables that leaves untouched entries alone: kernel parity with the reference, the rule itself,
the optimiser's state through a checkpoint, and input checks."""

from __future__ import annotations

import io

import pytest
import torch

from simrecon.encoding.table_adam import bias_correction, table_adam_step, table_adam_step_reference
from simrecon.train.optim import Optimizers, TableAdam, adam

LR, B1, B2, EPS = 1e-2, 0.9, 0.99, 1e-15


def _backends() -> list[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def _state(shape, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    param = torch.randn(shape, generator=gen)
    return [t.to(device) for t in (param, torch.zeros(shape), torch.zeros(shape),
                                   torch.zeros(shape, dtype=torch.int32))]


def _sparse_grads(shape, steps, seed=0, share=0.4):
    """Gradients where whole rows (the last dim, a table row's features) are touched or not, as in training."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        rows = torch.rand(*shape[:-1], 1, generator=gen) < share
        out.append(torch.randn(shape, generator=gen) * rows)
    return out


@pytest.mark.parametrize("backend", _backends())
def test_kernel_matches_reference_over_steps(backend, request):
    if backend == "cpu":
        request.getfixturevalue("cpu_ext")
    device = torch.device(backend)
    shape = (3, 4096, 2)
    kern, ref = _state(shape, device), _state(shape, "cpu")
    corr = bias_correction(B1, B2)
    for g in _sparse_grads(shape, 12):
        table_adam_step(kern[0], g.to(device), *kern[1:], corr.to(device), LR, B1, B2, EPS, backend=backend)
        table_adam_step_reference(ref[0], g, *ref[1:], corr, LR, B1, B2, EPS)
    # Tolerance: the same float32 operations in the same order; the host compiler (and nvcc) may contract a
    # multiply-add into an FMA, one rounding fewer: a few ulps of values of order 1 (params) and 0.1-1 (moments).
    for k, r in zip(kern[:3], ref[:3]):
        torch.testing.assert_close(k.cpu(), r, rtol=1e-6, atol=1e-6)
    assert torch.equal(kern[3].cpu(), ref[3])  # update counts are integers


@pytest.mark.parametrize("backend", _backends() + ["torch"])
def test_untouched_entries_keep_value_moments_and_count(backend, request):
    if backend == "cpu":
        request.getfixturevalue("cpu_ext")
    device = torch.device("cuda" if backend == "cuda" else "cpu")
    shape = (2, 1024, 2)
    st = _state(shape, device)
    corr = bias_correction(B1, B2, device)
    grads = _sparse_grads(shape, 3)
    for g in grads:
        table_adam_step(st[0], g.to(device), *st[1:], corr, LR, B1, B2, EPS, backend=backend)
    before = [t.clone() for t in st]
    last = torch.zeros(shape)
    last[0, :10] = 1.0  # only ten rows touched now
    table_adam_step(st[0], last.to(device), *st[1:], corr, LR, B1, B2, EPS, backend=backend)
    untouched = (last == 0).to(device)
    for b, a in zip(before, st):
        assert torch.equal(a[untouched], b[untouched])  # bit for bit: no drift on old momentum
    touched_counts = sum((g != 0).int() for g in grads) + 1
    assert torch.equal(st[3][~untouched].cpu(), touched_counts[last != 0].int())


def test_one_touch_moves_an_entry_by_one_learning_rate_where_torch_adam_moves_it_about_ten():
    shape = (1, 8, 2)
    p0 = torch.zeros(shape)
    first = torch.zeros(shape)
    first[0, 0] = torch.tensor([0.3, -2.0])
    quiet = [torch.zeros(shape)] * 30
    st = [p0.clone(), torch.zeros(shape), torch.zeros(shape), torch.zeros(shape, dtype=torch.int32)]
    corr = bias_correction(B1, B2)
    for g in [first, *quiet]:
        table_adam_step_reference(st[0], g, *st[1:], corr, LR, B1, B2, EPS)
    # first step: corr[1] m / sqrt(v) = sign(g), so one learning rate, and nothing after
    torch.testing.assert_close(st[0][0, 0], -LR * first[0, 0].sign(), rtol=1e-6, atol=0)
    p = torch.nn.Parameter(p0.clone())
    opt = torch.optim.Adam([p], lr=LR, betas=(B1, B2), eps=EPS)
    # warm torch's global step up first, as in training (an entry first touched at step 200)
    for _ in range(200):
        p.grad = torch.zeros(shape)
        opt.step()
    for g in [first, *quiet]:
        p.grad = g.clone()
        opt.step()
    moved = (p.detach()[0, 0] / LR).abs()
    assert bool((moved > 8).all()), moved  # the momentum keeps moving it for ~10 quiet steps


def test_dense_gradients_match_torch_adam():
    """With every entry touched every step the rule is Adam (eps inside the corrected root differs: 1e-15)."""
    gen = torch.Generator().manual_seed(3)
    shape = (4, 64, 2)
    p = torch.nn.Parameter(torch.randn(shape, generator=gen))
    q = torch.nn.Parameter(p.detach().clone())
    ours, theirs = TableAdam([q], lr=LR, backend="torch"), torch.optim.Adam([p], lr=LR, betas=(B1, B2), eps=EPS)
    for _ in range(40):
        g = torch.randn(shape, generator=gen)
        g[g == 0] = 1.0
        p.grad, q.grad = g.clone(), g.clone()
        theirs.step()
        ours.step()
    # Tolerance: 40 steps of float32 updates of size 1e-2 rounded differently (bias correction tabulated in float64
    # then float32 here, computed in float32 by torch): differences of a few 1e-7.
    torch.testing.assert_close(q.detach(), p.detach(), rtol=0, atol=2e-6)


def test_bias_correction_table():
    corr = bias_correction(B1, B2)
    k = corr.shape[0] - 1
    assert B2**k < 1e-7 <= B2 ** (k - 1)  # the first count where the correction is 1 to float precision
    torch.testing.assert_close(corr[1], torch.tensor((1 - B2) ** 0.5 / (1 - B1)))
    assert corr[-1].item() == pytest.approx(1.0, abs=1e-6)
    assert bias_correction(0.0, 0.0).shape[0] == 2
    with pytest.raises(ValueError, match="betas"):
        bias_correction(1.0, 0.99)


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_counts_saturate_and_extremes_match(backend, request):
    if backend == "cpu":
        request.getfixturevalue("cpu_ext")
    corr = bias_correction(0.5, 0.5)  # a short table: counts saturate after a few steps
    k = corr.shape[0] - 1
    g = torch.tensor([[1e30, -1e-30, 3.0e-20, 0.0, float("inf"), 1.0]])
    st = [torch.zeros_like(g), torch.zeros_like(g), torch.zeros_like(g), torch.zeros_like(g, dtype=torch.int32)]
    ref = [t.clone() for t in st]
    for _ in range(k + 3):
        table_adam_step(st[0], g, *st[1:], corr, LR, 0.5, 0.5, EPS, backend=backend)
        table_adam_step_reference(ref[0], g, *ref[1:], corr, LR, 0.5, 0.5, EPS)
    assert st[3].tolist() == [[k, k, k, 0, k, k]]
    for a, b in zip(st, ref):
        assert torch.equal(a, b) or torch.allclose(a, b, rtol=1e-6, atol=0, equal_nan=True)
    assert st[0][0, 3].item() == 0.0  # never touched


def test_empty_table_is_a_no_op(cpu_ext):
    st = [torch.zeros(0, 2), torch.zeros(0, 2), torch.zeros(0, 2), torch.zeros(0, 2, dtype=torch.int32)]
    table_adam_step(st[0], torch.zeros(0, 2), *st[1:], bias_correction(B1, B2), LR, B1, B2, EPS, backend="cpu")
    assert st[0].shape == (0, 2)


def test_bad_inputs_name_the_tensor_and_shape():
    st = _state((2, 8, 2), "cpu")
    corr = bias_correction(B1, B2)
    with pytest.raises(ValueError, match=r"grad must have param's shape \[2, 8, 2\], got \[2, 8\]"):
        table_adam_step(st[0], torch.zeros(2, 8), *st[1:], corr, LR, B1, B2, EPS)
    with pytest.raises(TypeError, match="steps must be int32"):
        table_adam_step(st[0], torch.zeros(2, 8, 2), st[1], st[2], st[3].long(), corr, LR, B1, B2, EPS)
    with pytest.raises(TypeError, match="grad must be float32"):
        table_adam_step(st[0], torch.zeros(2, 8, 2, dtype=torch.float64), *st[1:], corr, LR, B1, B2, EPS)


def test_optimiser_state_survives_a_checkpoint(cpu_ext):
    """TableAdam with plain Adam beside it (as training uses them): a state dict saved and loaded with
    weights_only=True continues exactly like the optimiser that never stopped."""
    shape = (2, 256, 2)

    def build(seed=0):
        gen = torch.Generator().manual_seed(seed)
        table = torch.nn.Parameter(torch.randn(shape, generator=gen))
        weight = torch.nn.Parameter(torch.randn(4, 4, generator=gen))
        return table, weight, Optimizers(TableAdam([table], lr=LR), adam([weight], LR))

    grads = _sparse_grads(shape, 10, seed=5)
    t1, w1, o1 = build()
    t2, w2, o2 = build()
    for i, g in enumerate(grads):
        if i == 5:  # o2 goes through a checkpoint
            buf = io.BytesIO()
            torch.save(o2.state_dict(), buf)
            buf.seek(0)
            state = torch.load(buf, weights_only=True)
            t2, w2, o2 = t2, w2, Optimizers(TableAdam([t2], lr=LR), adam([w2], LR))
            o2.load_state_dict(state)
            assert o2.optimizers[0].state[t2]["steps"].dtype == torch.int32
        for t, w, o in ((t1, w1, o1), (t2, w2, o2)):
            t.grad, w.grad = g.clone(), torch.full((4, 4), 0.1 * (i + 1))
            o.step()
    assert torch.equal(t1.detach(), t2.detach()) and torch.equal(w1.detach(), w2.detach())
    with pytest.raises(ValueError, match="expected 2"):
        o1.load_state_dict({"optimizers": [o1.optimizers[0].state_dict()]})
