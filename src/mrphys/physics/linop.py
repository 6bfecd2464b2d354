"""Linear operators with ``forward`` and ``adjoint`` (the sigpy ``Linop`` idea).

Every encoding (Cartesian FFT, radial NUFFT, coil sensitivities) is a :class:`Linop`, so that a
reconstruction written against :class:`Linop` works with any of them. Operators compose with ``@``
and their adjoint is ``op.H``. All are differentiable through torch autograd.
"""

from __future__ import annotations

import torch


class Linop:
    """A linear map ``A`` with ``forward(x) = A x`` and ``adjoint(y) = A^H y``.

    Subclasses implement :meth:`forward` and :meth:`adjoint`; ``ishape`` and ``oshape`` give the
    trailing shapes (leading batch dimensions pass through where a subclass allows it).
    """

    ishape: tuple[int, ...] = ()
    oshape: tuple[int, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x``."""
        return self.adjoint(self.forward(x))

    @property
    def H(self) -> Linop:  # noqa: N802 - the usual notation
        return _Adjoint(self)

    def __matmul__(self, other: Linop) -> Linop:
        return _Compose(self, other)


class _Adjoint(Linop):
    def __init__(self, op: Linop):
        self.op = op
        self.ishape, self.oshape = op.oshape, op.ishape

    def forward(self, x):
        return self.op.adjoint(x)

    def adjoint(self, y):
        return self.op.forward(y)


class _Compose(Linop):
    """``(A @ B) x = A(B(x))``."""

    def __init__(self, a: Linop, b: Linop):
        self.a, self.b = a, b
        self.ishape, self.oshape = b.ishape, a.oshape

    def forward(self, x):
        return self.a.forward(self.b.forward(x))

    def adjoint(self, y):
        return self.b.adjoint(self.a.adjoint(y))


def as_complex(x: torch.Tensor) -> torch.Tensor:
    """``x`` as a complex tensor: float64 -> complex128, other real dtypes -> complex64; complex
    input is returned unchanged (the one float-to-complex promotion of the project)."""
    if x.is_complex():
        return x
    return x.to(torch.complex128 if x.dtype == torch.float64 else torch.complex64)


def inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Complex inner product ``<a, b> = sum(conj(a) * b)`` over all elements."""
    return torch.sum(torch.conj(a) * b)


def adjoint_error(
    op: Linop,
    x: torch.Tensor,
    y: torch.Tensor,
) -> float:
    """Relative mismatch ``|<A x, y> - <x, A^H y>| / (|<A x, y>|)`` (0 for an exact adjoint)."""
    lhs = inner(op.forward(x), y)
    rhs = inner(x, op.adjoint(y))
    return float(torch.abs(lhs - rhs) / torch.abs(lhs).clamp_min(1e-30))
