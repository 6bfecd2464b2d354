"""The chunked ReLU MLP (``mrphys.nets.mlp.relu_mlp``) against ``nn.Sequential``."""

from __future__ import annotations

import torch
from torch import nn

from mrphys.nets.mlp import relu_mlp


def _stack(layers: int, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    mods: list[nn.Module] = []
    width = 6
    for _ in range(layers):
        mods += [nn.Linear(width, 16), nn.ReLU()]
        width = 16
    mods.append(nn.Linear(width, 2))
    return nn.Sequential(*mods)


def test_values_and_gradients_match_sequential_over_chunk_edges():
    for layers in (0, 1, 2):
        net = _stack(layers)
        x = torch.randn(103, 6, requires_grad=True)
        w = torch.randn(103, 2)
        ref = net(x)
        gref = torch.autograd.grad((ref * w).sum(), [x, *net.parameters()])
        out = relu_mlp(x, net, chunk=10)  # 11 chunks, the last one short
        torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
        got = torch.autograd.grad((out * w).sum(), [x, *net.parameters()])
        for a, b in zip(got, gref, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_other_stacks_fall_back_to_the_module():
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    x = torch.randn(5, 3)
    torch.testing.assert_close(relu_mlp(x, net), net(x))
    x64 = torch.randn(5, 6, dtype=torch.float64)
    net64 = _stack(1).double()
    torch.testing.assert_close(relu_mlp(x64, net64), net64(x64))


def test_fewer_inputs_than_the_first_layer_mean_trailing_zeros():
    net = _stack(2)
    x = torch.randn(37, 4, requires_grad=True)
    padded = torch.nn.functional.pad(x, (0, 2))  # the 2 missing inputs are zeros
    w = torch.randn(37, 2)
    ref = net(padded)
    gref = torch.autograd.grad((ref * w).sum(), [x, *net.parameters()])
    for fn in (lambda: relu_mlp(x, net, chunk=8), lambda: relu_mlp(x.double(), net.double())):
        out = fn()
        got = torch.autograd.grad((out * w.to(out.dtype)).sum(), [x, *net.parameters()])
        torch.testing.assert_close(out.float(), ref, atol=1e-5, rtol=1e-5)
        for a, b in zip(got, gref, strict=True):
            torch.testing.assert_close(a.float(), b.float(), atol=1e-5, rtol=1e-5)
        assert torch.all(got[1][:, 4:] == 0)  # no gradient for the unused columns
        net.float()


def test_kept_and_recomputed_activations_give_the_same_bits(monkeypatch):
    import mrphys.nets.mlp as mlp

    net = _stack(2)
    x = torch.randn(103, 6, requires_grad=True)
    w = torch.randn(103, 2)
    res = []
    for limit in (0, mlp.KEEP_BYTES):  # 0: recompute in the backward; default: keep
        monkeypatch.setattr(mlp, "KEEP_BYTES", limit)
        out = relu_mlp(x, net, chunk=10)
        res.append([out, *torch.autograd.grad((out * w).sum(), [x, *net.parameters()])])
    for a, b in zip(*res, strict=True):
        assert torch.equal(a, b)


def test_out_index_reorders_the_outputs_and_their_gradients():
    net = _stack(2)
    net[-1] = nn.Linear(16, 4)
    x = torch.randn(37, 6, requires_grad=True)
    idx = torch.tensor([0, 2, 1, 3])
    w = torch.randn(37, 4)
    ref = net(x)[:, idx]
    gref = torch.autograd.grad((ref * w).sum(), [x, *net.parameters()])
    for xx in (x, x.double()):  # the chunked path and the fallback
        net.to(xx.dtype)
        out = relu_mlp(xx, net, chunk=8, out_index=idx)
        got = torch.autograd.grad((out * w.to(out.dtype)).sum(), [x, *net.parameters()])
        torch.testing.assert_close(out.float(), ref, atol=1e-5, rtol=1e-5)
        for a, b in zip(got, gref, strict=True):
            torch.testing.assert_close(a.float(), b.float(), atol=1e-5, rtol=1e-5)
    net.float()
