"""Linear operators with ``forward`` and ``adjoint`` that compose (the sigpy ``Linop`` idea).

Every encoding (Cartesian FFT, radial NUFFT, coil sensitivities) is a :class:`Linop`, so that a
reconstruction written against :class:`Linop` works with any of them. A subclass implements
:meth:`Linop.forward` and :meth:`Linop.adjoint`; everything else comes from the algebra:

======================  ======================================================================
expression              operator
======================  ======================================================================
``A @ B``               composition, ``(A @ B) x = A (B x)``
``A + B``, ``A - B``    sum and difference (same input and output shapes)
``c * A``, ``A * c``    scaled by a Python number ``c`` (``(c A)^H = conj(c) A^H``)
``t * A``, ``A * t``    ``Multiply(t) @ A`` and ``A @ Multiply(t)`` for a tensor ``t``
``-A``                  ``(-1) * A``
``A.H``                 the adjoint, ``A.H.forward = A.adjoint``
``A.H @ A``             the normal operator
======================  ======================================================================

:class:`Identity`, :class:`Multiply` (a diagonal operator: elementwise product with a tensor that
broadcasts), :class:`Repeat` (``n`` stacked copies; its adjoint sums them),
:class:`FiniteDifference` and :class:`AxisFFT` (along one axis, e.g. time) are the building blocks
the solvers of :mod:`mrphys.recon.solvers` use besides the encodings.
:func:`power_iteration` and :func:`operator_norm` estimate the largest eigenvalue of a Hermitian
operator and the largest singular value ``||A||`` of any operator. All operators are
differentiable through torch autograd; device and dtype follow the input.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from mrphys.errors import check

__all__ = [
    "AxisFFT",
    "FiniteDifference",
    "Identity",
    "Linop",
    "Multiply",
    "PowerIteration",
    "Repeat",
    "adjoint_error",
    "as_complex",
    "inner",
    "operator_norm",
    "power_iteration",
]


def _is_scalar(c: object) -> bool:
    return isinstance(c, numbers.Number) and not isinstance(c, bool)


class Linop:
    """A linear map ``A`` with ``forward(x) = A x`` and ``adjoint(y) = A^H y``.

    Subclasses implement :meth:`forward` and :meth:`adjoint`; ``ishape`` and ``oshape`` give the
    trailing input and output shapes (``()`` where any shape is taken; leading batch dimensions
    pass through where a subclass allows it). Composition checks that trailing shapes agree where
    both operators state them.
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
        """The adjoint operator ``A^H``."""
        return _Adjoint(self)

    def __matmul__(self, other: object) -> Linop:
        if not isinstance(other, Linop):
            return NotImplemented
        return _Compose(self, other)

    def __add__(self, other: object) -> Linop:
        if not isinstance(other, Linop):
            return NotImplemented
        return _Sum(self, other)

    def __sub__(self, other: object) -> Linop:
        if not isinstance(other, Linop):
            return NotImplemented
        return _Sum(self, _Scaled(other, -1))

    def __neg__(self) -> Linop:
        return _Scaled(self, -1)

    def __mul__(self, other: object) -> Linop:
        if _is_scalar(other):
            return _Scaled(self, other)
        if isinstance(other, torch.Tensor):
            return _Compose(self, Multiply(other))
        return NotImplemented

    def __rmul__(self, other: object) -> Linop:
        if _is_scalar(other):
            return _Scaled(self, other)
        if isinstance(other, torch.Tensor):
            return _Compose(Multiply(other), self)
        return NotImplemented

    def __repr__(self) -> str:
        return f"{type(self).__name__}(ishape={self.ishape}, oshape={self.oshape})"


def _shapes_agree(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Trailing shapes ``a`` and ``b`` agree where both are stated (size 1 broadcasts)."""
    n = min(len(a), len(b))
    if n == 0:
        return True
    return all(p == q or p == 1 or q == 1 for p, q in zip(a[-n:], b[-n:], strict=True))


class _Adjoint(Linop):
    def __init__(self, op: Linop):
        self.op = op
        self.ishape, self.oshape = op.oshape, op.ishape

    def forward(self, x):
        return self.op.adjoint(x)

    def adjoint(self, y):
        return self.op.forward(y)

    @property
    def H(self) -> Linop:  # noqa: N802
        return self.op

    def __repr__(self) -> str:
        return f"{self.op!r}.H"


class _Pair(Linop):
    """An operator built from two: ``a`` and ``b`` with the trailing shapes given."""

    symbol = ""

    def __init__(self, a: Linop, b: Linop, ishape: tuple[int, ...], oshape: tuple[int, ...]):
        self.a, self.b = a, b
        self.ishape, self.oshape = ishape, oshape

    def __repr__(self) -> str:
        return f"({self.a!r} {self.symbol} {self.b!r})"


class _Compose(_Pair):
    """``(A @ B) x = A(B(x))``."""

    symbol = "@"

    def __init__(self, a: Linop, b: Linop):
        check(
            _shapes_agree(a.ishape, b.oshape),
            f"cannot compose operators: the left one takes shape {a.ishape} but the right one "
            f"gives {b.oshape}.",
        )
        super().__init__(a, b, b.ishape or a.ishape, a.oshape or b.oshape)

    def forward(self, x):
        return self.a.forward(self.b.forward(x))

    def adjoint(self, y):
        return self.b.adjoint(self.a.adjoint(y))


class _Sum(_Pair):
    """``(A + B) x = A x + B x``."""

    symbol = "+"

    def __init__(self, a: Linop, b: Linop):
        check(
            _shapes_agree(a.ishape, b.ishape) and _shapes_agree(a.oshape, b.oshape),
            f"cannot add operators of shapes {a.ishape} -> {a.oshape} and {b.ishape} -> "
            f"{b.oshape}; expected the same input and output shapes.",
        )
        super().__init__(a, b, a.ishape or b.ishape, a.oshape or b.oshape)

    def forward(self, x):
        return self.a.forward(x) + self.b.forward(x)

    def adjoint(self, y):
        return self.a.adjoint(y) + self.b.adjoint(y)


class _Scaled(Linop):
    """``(c A) x = c (A x)`` for a Python number ``c``."""

    def __init__(self, op: Linop, c: numbers.Number):
        check(
            math.isfinite(abs(complex(c))),  # type: ignore[arg-type]
            f"an operator can only be scaled by a finite number; got {c}.",
        )
        self.op, self.c = op, c
        self.ishape, self.oshape = op.ishape, op.oshape

    def forward(self, x):
        return self.c * self.op.forward(x)

    def adjoint(self, y):
        c = self.c.conjugate() if isinstance(self.c, complex) else self.c
        return c * self.op.adjoint(y)

    def __repr__(self) -> str:
        return f"({self.c} * {self.op!r})"


class Identity(Linop):
    """``I x = x`` (any shape; ``shape`` only documents the trailing shape for composition)."""

    def __init__(self, shape: tuple[int, ...] = ()):
        self.ishape = self.oshape = tuple(int(s) for s in shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y


class Multiply(Linop):
    """The diagonal operator ``x -> t * x`` (elementwise, ``t`` broadcasts against ``x``).

    Args:
        t: real or complex tensor, e.g. density weights ``(T, 1, K)`` beside a coil axis, or coil
            maps ``(C, Y, X)`` applied to images ``(T, 1, Y, X)``. The adjoint multiplies by
            ``conj(t)``. ``t`` is moved to the input's device when they differ (its dtype is left
            to torch's type promotion).
    """

    def __init__(self, t: torch.Tensor):
        check(
            isinstance(t, torch.Tensor),
            f"Multiply takes a tensor; got {type(t).__name__}.",
        )
        self.t = t  # shapes stay () (any): t broadcasts against the input

    def _on(self, x: torch.Tensor) -> torch.Tensor:
        return self.t if self.t.device == x.device else self.t.to(x.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._on(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y * self._on(y).conj()


class Repeat(Linop):
    """``n`` stacked copies: ``x (...) -> (n, ...)``; the adjoint sums over the leading axis.

    ``Repeat(n).H`` sums ``n`` stacked variables, e.g. the image ``L + S`` of the low-rank plus
    sparse model as ``(A @ Repeat(2).H)(stack([L, S]))``.
    """

    def __init__(self, n: int):
        check(int(n) >= 1, f"Repeat needs n >= 1 copies; got {n}.")
        self.n = int(n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x] * self.n)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        check(
            y.ndim >= 1 and y.shape[0] == self.n,
            f"Repeat adjoint input must have {self.n} as its leading size; got {tuple(y.shape)}.",
        )
        out = y[0]
        for i in range(1, self.n):
            out = out + y[i]
        return out


class FiniteDifference(Linop):
    """Forward difference along one axis: ``x (..., N, ...) -> x[1:] - x[:-1]`` ``(..., N-1, ...)``.

    The temporal finite difference of total-variation penalties (``dim=0`` on ``(T, Y, X)``).
    The adjoint is ``q -> [0, q] - [q, 0]`` (concatenated along ``dim``), so ``D^H D`` is the
    1-D Laplacian with Neumann ends; ``||D||^2 <= 4``.
    """

    def __init__(self, dim: int = 0):
        self.dim = int(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[self.dim]
        check(n >= 1, f"FiniteDifference needs a non-empty axis {self.dim}; got {tuple(x.shape)}.")
        return x.narrow(self.dim, 1, n - 1) - x.narrow(self.dim, 0, n - 1)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        shape = list(y.shape)
        shape[self.dim] = 1
        z = torch.zeros(shape, dtype=y.dtype, device=y.device)
        return torch.cat([z, y], dim=self.dim) - torch.cat([y, z], dim=self.dim)


class AxisFFT(Linop):
    """The orthonormal (unitary) 1-D DFT along one axis, uncentred: ``torch.fft.fft(x, dim=dim,
    norm="ortho")``; the adjoint is the inverse. The temporal Fourier transform of L+S (``dim=0``
    on ``(T, Y, X)``). Real input is promoted by :func:`as_complex`."""

    def __init__(self, dim: int = 0):
        self.dim = int(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fft(as_complex(x), dim=self.dim, norm="ortho")

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return torch.fft.ifft(as_complex(y), dim=self.dim, norm="ortho")


# --------------------------------------------------------------------------------------------
# power iteration and the operator norm
# --------------------------------------------------------------------------------------------


@dataclass
class PowerIteration:
    """Result of :func:`power_iteration`.

    Attributes:
        value: the largest eigenvalue of the Hermitian PSD operator (the norm of its last image
            of a unit vector), in the operator's units.
        vector: the last unit-norm iterate, the shape of the start vector.
        iterations: the number of operator applications run.
        converged: whether the relative change of ``value`` fell below ``tol`` (False where no
            ``tol`` was given).
    """

    value: float
    vector: torch.Tensor
    iterations: int
    converged: bool


def _start_vector(
    x: tuple[int, ...] | torch.Size | torch.Tensor,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device | str | None,
) -> torch.Tensor:
    """A unit-norm start vector: ``x`` itself (normalised) or a complex Gaussian of shape ``x``.

    The draw is on the CPU (``generator``, seed 0 when None) so the start does not depend on the
    device: ``randn(shape + (2,))`` viewed as complex, moved to ``device``.
    """
    if isinstance(x, torch.Tensor):
        check(x.numel() > 0, "the start vector of the power iteration must not be empty.")
        v = as_complex(x)
    else:
        shape = tuple(int(s) for s in x)
        check(
            len(shape) >= 1 and all(s >= 1 for s in shape),
            f"the power iteration needs a shape of positive sizes; got {shape}.",
        )
        check(dtype.is_complex, f"the power iteration's dtype must be complex; got {dtype}.")
        g = generator if generator is not None else torch.Generator(device="cpu").manual_seed(0)
        real = torch.float64 if dtype == torch.complex128 else torch.float32
        v = torch.view_as_complex(torch.randn(shape + (2,), generator=g, dtype=real)).to(device)
    norm = v.norm()
    check(float(norm) > 0, "the start vector of the power iteration must not be zero.")
    return v / norm


@torch.no_grad()
def power_iteration(
    op: Linop,
    x: tuple[int, ...] | torch.Size | torch.Tensor,
    iterations: int = 30,
    tol: float | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.complex64,
    device: torch.device | str | None = None,
) -> PowerIteration:
    """Largest eigenvalue of a Hermitian positive semi-definite operator by power iteration.

    Repeats ``z = op(v)``, ``value = ||z||``, ``v = z / value`` from a unit start vector.

    Args:
        op: a Hermitian PSD :class:`Linop` (e.g. ``A.H @ A``) or a callable ``x -> op(x)``.
        x: the start vector, or the shape of a random complex Gaussian start (drawn on the CPU
            from ``generator``; seed 0 when None, so the result is reproducible).
        iterations: the most operator applications (>= 1).
        tol: stop once ``|value_k - value_(k-1)| <= tol * value_k``; None runs all iterations.
        generator: CPU generator of the random start.
        dtype: complex dtype of a random start (complex64 or complex128).
        device: device of a random start.

    Returns:
        :class:`PowerIteration` (``value`` is ``||op||``, i.e. ``||A||^2`` for ``op = A^H A``).
    """
    check(int(iterations) >= 1, f"iterations must be a positive integer; got {iterations}.")
    check(tol is None or tol >= 0, f"tol must be None or a number >= 0; got {tol}.")
    apply = op.forward if isinstance(op, Linop) else op
    v = _start_vector(x, generator, dtype, device)
    value, done, converged = 1.0, 0, False
    for _ in range(int(iterations)):
        z = apply(v)
        previous, value = value, float(z.norm())
        v = z / max(value, 1e-30)
        done += 1
        if tol is not None and done > 1 and abs(value - previous) <= tol * value:
            converged = True
            break
    return PowerIteration(value, v, done, converged)


def operator_norm(
    op: Linop,
    x: tuple[int, ...] | torch.Size | torch.Tensor,
    iterations: int = 50,
    tol: float | None = 1e-6,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.complex64,
    device: torch.device | str | None = None,
) -> float:
    """The largest singular value ``||A||`` (spectral norm) of ``op`` by power iteration on
    ``A^H A``.

    Args:
        op: any :class:`Linop` ``A``.
        x: a start vector in ``A``'s input space, or its shape (complex64 Gaussian start drawn
            from ``generator``, seed 0 when None).
        iterations: the most applications of ``A^H A``.
        tol: relative change of the estimate at which to stop (None: run all iterations).
        generator: CPU generator of the random start.
        dtype: complex dtype of a random start.
        device: device of a random start (a start vector keeps its own).

    Returns:
        ``||A|| = sqrt(largest eigenvalue of A^H A)``, a float (a lower bound that tightens with
        iterations). For the step size ``1/L`` of a gradient method on ``1/2 ||A x - y||^2`` use
        ``L = operator_norm(A, ...) ** 2``.
    """
    check(isinstance(op, Linop), f"operator_norm takes a Linop; got {type(op).__name__}.")
    res = power_iteration(op.normal, x, iterations, tol, generator, dtype, device)
    return math.sqrt(res.value)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


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
