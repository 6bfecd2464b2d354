"""The registry of dynamic reconstruction methods: the one list every caller reads."""

from __future__ import annotations

import inspect

import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.physics.radial import simulate_radial
from mrphys.recon.inr import InrConfig
from mrphys.recon.registry import METHODS, Reconstruction, get, names, reconstruct
from mrphys.tissue.dynamic import synthetic_cine

pytestmark = pytest.mark.usefixtures("one_thread")

#: options that keep each method's run tiny (a few iterations, a small INR network)
TINY_OPTIONS = {
    "gridding": {},
    "cg-sense": {"iterations": 2},
    "grasp": {"iterations": 2},
    "ls": {"iterations": 2},
    "inr": {
        "iterations": 3,
        "config": InrConfig(n_levels=2, log2_table_size=10, hidden_width=8, hidden_layers=1),
    },
}


@pytest.fixture(scope="module")
def tiny():
    return simulate_radial(synthetic_cine(3, 12, seed=0), spokes=4, coils=2, snr=30.0, seed=0)


def test_names_are_the_registry_in_order():
    assert names() == list(METHODS) == list(TINY_OPTIONS)
    assert all(get(n).name == n for n in names())


def test_unknown_method_is_refused():
    with pytest.raises(
        MrphysError, match="reconstruction method must be one of gridding, cg-sense"
    ):
        get("sense")
    with pytest.raises(MrphysError, match="got 'sense'"):
        reconstruct("sense", None)


def test_an_option_the_method_does_not_take_is_refused(tiny):
    with pytest.raises(MrphysError, match="method gridding does not take iterations"):
        reconstruct("gridding", tiny, iterations=3)
    with pytest.raises(MrphysError, match="method grasp does not take lam; it takes"):
        reconstruct("grasp", tiny, lam=0.1)


@pytest.mark.parametrize("name", list(METHODS))
def test_declared_options_are_the_function_keywords(name):
    """Each method's ``options`` are keywords of its function (so the registry cannot promise an
    option the function would reject)."""
    params = inspect.signature(get(name).fn).parameters
    assert set(get(name).options) <= set(params) - {"data"}
    assert ("iterations" in get(name).options) == get(name).iterative


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_runs_on_a_tiny_case(tiny, name):
    opts = TINY_OPTIONS[name]
    rec = reconstruct(name, tiny, backend=None, **opts)  # None-valued options are dropped
    assert isinstance(rec, Reconstruction)
    assert rec.method == name and rec.options == opts and rec.seconds > 0
    assert rec.image.shape == tiny.truth.shape and rec.image.dtype == torch.complex64
    assert bool(torch.isfinite(rec.image).all()) and float(rec.image.abs().max()) > 0
