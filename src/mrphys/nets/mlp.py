"""Box-bounded MLP for voxel-wise parameter regression (the relaxometry SVNN/PINN networks).

Linear -> ReLU -> Linear -> ReLU -> Linear -> Sigmoid, the output mapped to a parameter box
``lo + (hi - lo) * sigmoid``. Inputs are z-scored with statistics stored as buffers, so they
travel with the ``state_dict`` and the checkpoint. No physics here: :mod:`mrphys.relax.networks`
builds the paper's networks (sizes, boxes, features) from it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["RelaxNet"]


class RelaxNet(nn.Module):
    """MLP from configuration features to (T1 s, T2 s[, theta rad]).

    Args:
        n_in: number of input features (4 or 6).
        n_hidden: width of the two hidden layers.
        lo, hi: ``(n_out,)`` parameter box in SI units.
    """

    def __init__(self, n_in: int, n_hidden: int, lo: torch.Tensor, hi: torch.Tensor) -> None:
        super().__init__()
        n_out = int(lo.numel())
        self.body = nn.Sequential(
            nn.Linear(n_in, n_hidden),
            nn.ReLU(),
            nn.Linear(n_hidden, n_hidden),
            nn.ReLU(),
            nn.Linear(n_hidden, n_out),
        )
        self.register_buffer("lo", lo.clone().float())
        self.register_buffer("hi", hi.clone().float())
        self.register_buffer("feat_mean", torch.zeros(n_in))
        self.register_buffer("feat_std", torch.ones(n_in))

    def set_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store the training-set z-score statistics ``(n_in,)``."""
        self.feat_mean.copy_(mean.detach().to(self.feat_mean))
        self.feat_std.copy_(std.detach().clamp_min(1e-8).to(self.feat_std))

    def normalise(self, feats: torch.Tensor) -> torch.Tensor:
        """Z-scores of raw features ``(B, n_in)`` with the stored training-set statistics."""
        return (feats - self.feat_mean) / self.feat_std

    def unit_output(self, feats: torch.Tensor) -> torch.Tensor:
        """Sigmoid outputs in [0, 1] ``(B, n_out)`` for raw features ``(B, n_in)``."""
        return torch.sigmoid(self.body(self.normalise(feats)))

    def scale(self, unit: torch.Tensor) -> torch.Tensor:
        return self.lo + (self.hi - self.lo) * unit

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Parameters ``(B, n_out)`` (T1 s, T2 s[, theta rad]) for raw features ``(B, n_in)``."""
        return self.scale(self.unit_output(feats))

    @torch.no_grad()
    def predict(self, feats: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` for inference on large inputs (equal to float rounding, 2e-7).

        On a CPU the hidden layers and their activations run as fused oneDNN operations (the
        kernel that ``torch.compile`` uses) and the output layer as a short, wide product; about
        1.5x faster than :meth:`forward` on large volumes. Falls back to :meth:`forward` where
        the fused operation is not available.
        """
        if feats.device.type != "cpu" or feats.dtype != torch.float32 or not _fused_linear_ok():
            return self(feats)
        l1, _, l2, _, l3 = self.body
        fused = torch.ops.mkldnn._linear_pointwise
        h = fused(self.normalise(feats), l1.weight, l1.bias, "relu", [], "")
        h = fused(h, l2.weight, l2.bias, "relu", [], "")
        # the narrow output layer as a short, wide product (2-3x faster than (N, H) @ (H, 2))
        return self.scale(torch.addmm(l3.bias[:, None], l3.weight, h.t()).sigmoid_().t())


_FUSED_OK: bool | None = None


def _fused_linear_ok() -> bool:
    """Whether oneDNN's fused linear + activation runs here (checked once, against ``addmm``)."""
    global _FUSED_OK
    if _FUSED_OK is None:
        try:
            x, w, b = torch.randn(8, 5), torch.randn(3, 5), torch.randn(3)
            y = torch.ops.mkldnn._linear_pointwise(x, w, b, "relu", [], "")
            _FUSED_OK = bool(torch.allclose(y, torch.addmm(b, x, w.t()).relu(), atol=1e-5))
        except (AttributeError, RuntimeError):
            _FUSED_OK = False
    return _FUSED_OK


class _ChunkedReluMlp(torch.autograd.Function):
    """ReLU MLP evaluated in row chunks that stay in cache. With ``keep`` the forward keeps each
    chunk's hidden activations for the backward; without it the backward recomputes them
    (no ``(N, width)`` tensors held in memory). Both give the same values bit for bit."""

    @staticmethod
    def forward(ctx, x, chunk, keep, *params):  # type: ignore[override]
        ctx.chunk = chunk
        ws, bs = params[0::2], params[1::2]
        out = x.new_empty(x.shape[0], ws[-1].shape[0])
        kept: list[torch.Tensor] = []
        for s in range(0, x.shape[0], chunk):
            h = x[s : s + chunk]
            for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
                if i == len(ws) - 1:
                    torch.addmm(b, h, w.t(), out=out[s : s + chunk])
                else:
                    h = torch.addmm(b, h, w.t()).relu_()
                    if keep:
                        kept.append(h)
        ctx.n_kept = len(kept)
        ctx.save_for_backward(x, *params, *kept)
        return out

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        x, *rest = ctx.saved_tensors
        n_params = len(rest) - ctx.n_kept
        params, kept = rest[:n_params], rest[n_params:]
        ws, bs = params[0::2], params[1::2]
        n_hidden = len(ws) - 1
        chunk = ctx.chunk
        gws = [torch.zeros_like(w) for w in ws]
        gbs = [torch.zeros_like(b) for b in bs]
        gx = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        g = g.contiguous()
        for c, s in enumerate(range(0, x.shape[0], chunk)):
            acts = [x[s : s + chunk]]  # the input of every layer (post-ReLU)
            if kept:
                acts += kept[c * n_hidden : (c + 1) * n_hidden]
            else:
                for w, b in zip(ws[:-1], bs[:-1], strict=True):
                    acts.append(torch.addmm(b, acts[-1], w.t()).relu_())
            gh = g[s : s + chunk]
            for i in range(len(ws) - 1, -1, -1):
                gws[i].addmm_(gh.t(), acts[i])
                gbs[i].add_(gh.sum(0))
                if i > 0:
                    gh = torch.ops.aten.threshold_backward(gh @ ws[i], acts[i], 0)
                elif gx is not None:
                    torch.mm(gh, ws[0], out=gx[s : s + chunk])
        grads: list[torch.Tensor | None] = []
        for gw, gb in zip(gws, gbs, strict=True):
            grads += [gw, gb]
        return (gx, None, None, *grads)


#: hidden activations up to this many bytes are kept for the backward instead of recomputed
KEEP_BYTES = 64 * 2**20


def relu_mlp(
    x: torch.Tensor,
    layers: nn.Sequential,
    chunk: int = 4096,
    out_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """``layers(x)`` for a ``Linear, ReLU, ..., Linear`` stack, faster on a CPU for many rows.

    The rows ``(N, n_in)`` are processed in chunks of ``chunk`` so that the hidden activations
    stay in cache. When the hidden activations of all rows fit in :data:`KEEP_BYTES` (64 MiB;
    e.g. the pixels of one image) they are kept for the backward pass; otherwise the backward
    recomputes them chunk by chunk (no ``(N, width)`` activations are stored), about 1.3x the
    backward's time. Same values as ``layers(x)`` to float rounding, and the same bits either
    way; other stacks, non-float32 or non-CPU tensors fall back to ``layers(x)``.

    ``x`` may have fewer columns than the first layer has inputs: the missing trailing inputs
    are zeros (only the first ``n_in`` columns of the first weight are used; the rest get a
    zero gradient). A coarse-to-fine encoding with its finer levels switched off passes only
    the active levels' features this way.

    ``out_index`` (long ``(n_out,)``): the output columns in this order, ``layers(x)[:,
    out_index]``, computed by the reordered output layer (no copy of the output); e.g. real and
    imaginary parts interleaved so that the output views as complex for free.
    """
    mods = list(layers)
    linear = mods[0::2]
    n_in = int(x.shape[-1])
    first = linear[0] if linear else None
    if isinstance(first, nn.Linear) and n_in < first.in_features:
        params0 = [first.weight[:, :n_in], first.bias]
    else:
        params0 = None
    ok = (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.dim() == 2
        and all(isinstance(m, nn.Linear) and m.bias is not None for m in linear)
        and all(isinstance(m, nn.ReLU) for m in mods[1::2])
        and len(mods) % 2 == 1
    )
    if not ok:
        if params0 is None:
            out = layers(x)
        else:
            out = nn.functional.linear(x, *params0)
            out = nn.Sequential(*mods[1:])(out) if len(mods) > 1 else out
        return out if out_index is None else out[:, out_index]
    params: list[torch.Tensor] = []
    for m in linear:
        params += [m.weight, m.bias]
    if params0 is not None:
        params[:2] = params0
    if out_index is not None:
        params[-2:] = [params[-2].index_select(0, out_index), params[-1].index_select(0, out_index)]
    hidden = sum(int(m.out_features) for m in linear[:-1])
    keep = torch.is_grad_enabled() and x.shape[0] * hidden * x.element_size() <= KEEP_BYTES
    return _ChunkedReluMlp.apply(x, int(chunk), keep, *params)


def relu_sequential(
    in_features: int,
    hidden_width: int,
    hidden_layers: int,
    out_features: int,
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """``hidden_layers`` x (Linear + ReLU) of ``hidden_width``, then a linear output layer.

    With ``generator``, weights and biases are drawn from it (torch's default scheme, uniform in
    ``+-1/sqrt(fan_in)``, layer by layer), so the same seed gives the same network; without it,
    torch's global generator. The layout :func:`relu_mlp` evaluates.
    """
    layers: list[nn.Module] = []
    width = in_features
    for _ in range(hidden_layers):
        layers += [nn.Linear(width, hidden_width), nn.ReLU()]
        width = hidden_width
    layers.append(nn.Linear(width, out_features))
    mlp = nn.Sequential(*layers)
    if generator is not None:
        for m in mlp:
            if isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.in_features)
                with torch.no_grad():
                    m.weight.uniform_(-bound, bound, generator=generator)
                    m.bias.uniform_(-bound, bound, generator=generator)
    return mlp
