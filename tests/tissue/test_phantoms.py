import math

import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.tissue import Phantom, gach_shepp_logan, spin_shepp_logan


def test_spin_phantom_reproducible_and_seeded():
    a = spin_shepp_logan(4, generator=torch.Generator().manual_seed(3))
    b = spin_shepp_logan(4, generator=torch.Generator().manual_seed(3))
    c = spin_shepp_logan(4, generator=torch.Generator().manual_seed(4))
    assert a.rho.shape == (4, 64, 64)
    assert torch.equal(a.t1, b.t1)
    assert not torch.equal(a.t1, c.t1)
    assert not torch.equal(a.t1[0], a.t1[1])  # phantoms of a batch differ


def test_spin_phantom_tissues_and_no_overlap():
    ph = spin_shepp_logan(16, generator=torch.Generator().manual_seed(0))
    scale = (64 / 2) ** 2 * math.pi  # pixels per unit ellipse area
    # all five tumours and the WM ellipse are drawn whole: overlap would lose area
    tumour_area = (0.08 * 0.08 * 3 + 0.08 * 0.05 * 2) * scale
    wm_area = 0.18 * 0.22 * scale
    tum = ((ph.t1 - 0.926).abs() < 1e-6).flatten(1).sum(1).float()
    wm = ((ph.t1 - 0.583).abs() < 1e-6).flatten(1).sum(1).float()
    assert torch.all((tum - tumour_area).abs() < 0.25 * tumour_area)
    assert torch.all((wm - wm_area).abs() < 0.2 * wm_area)
    # Table 1 values only, in SI units
    vals = {round(v, 4) for v in torch.unique(ph.t1).tolist()}
    assert vals == {0.0, 0.324, 0.533, 4.2, 0.857, 0.583, 0.926}
    assert float(ph.rho.max()) == pytest.approx(0.98)


def test_gach_field_dependence():
    p15 = gach_shepp_logan(64, field_t=1.5)
    p3 = gach_shepp_logan(64, field_t=3.0)
    # grey matter T1 = 0.857 * B0^0.376 s (Gach et al. 2008)
    gm15 = 0.857 * 1.5**0.376
    gm3 = 0.857 * 3.0**0.376
    assert torch.any((p15.t1 - gm15).abs() < 1e-5)
    assert torch.any((p3.t1 - gm3).abs() < 1e-5)
    assert float(p3.t1.max()) == pytest.approx(4.2)  # CSF is field independent
    assert gach_shepp_logan(37).matrix == (37, 37)


def test_phantom_validates_units_and_shapes():
    z = torch.zeros(4, 4)
    with pytest.raises(MrphysError, match="milliseconds"):
        Phantom(z, z + 900.0, z + 60.0)
    with pytest.raises(MrphysError, match="shape"):
        Phantom(z, torch.zeros(4, 5), z)
    with pytest.raises(MrphysError, match="metres"):
        Phantom(z, z, z, fov=(64.0, 64.0))
    with pytest.raises(MrphysError, match="NaN"):
        Phantom(z, z * float("nan"), z)


def test_phantom_promotes_mixed_dtypes():
    from mrphys.physics.signal import spin_echo_image

    rho = torch.full((4, 4), 0.8, dtype=torch.float32)
    t1 = torch.full((4, 4), 0.9, dtype=torch.float64)
    t2 = torch.full((4, 4), 0.06, dtype=torch.float32)
    ph = Phantom(rho, t1, t2, b1=torch.ones(4, 4, dtype=torch.float16))
    assert {m.dtype for m in (ph.rho, ph.t1, ph.t2, ph.b1)} == {torch.float64}
    assert ph.dtype == torch.float64 and ph.rho[0, 0] == rho[0, 0].double()
    img = spin_echo_image(ph, tr=10.0, te=0.04)  # worked only on one dtype before
    same = spin_echo_image(Phantom(rho.double(), t1, t2.double()), tr=10.0, te=0.04)
    assert torch.equal(img, same)


def test_phantom_on_two_devices_is_a_sentence():
    z = torch.zeros(2, 2)
    with pytest.raises(MrphysError, match="the phantom maps must be on one device; got cpu, meta"):
        Phantom(z, z, z, b1=torch.zeros(2, 2, device="meta"))
