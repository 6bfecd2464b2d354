"""SPIN design: data, exact vs finite-difference flip gradient, training, optimisation loops."""

import math

import pytest
import torch

from mrphys.design.data import (
    Acquisition,
    Normalisation,
    acquire,
    fit_normalisation,
    make_data,
    settings_key,
)
from mrphys.design.optimize import (
    AutogradConfig,
    AutogradHistory,
    FDConfig,
    FDHistory,
    JointConfig,
    JointHistory,
    autograd_flip,
    finite_difference,
    hard_mask,
    joint,
    loss_at,
)
from mrphys.design.train import EpochRecord, TrainConfig, build_model, load_checkpoint, train
from mrphys.errors import MrphysError
from mrphys.nets.unet import FFTUNet
from mrphys.physics.fourier import ifft2c

ACQ = Acquisition(matrix=16)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    """24 training and 8 test phantoms of 16 x 16 (Bloch-simulated)."""
    return make_data(24, 0, ACQ), make_data(8, 1, ACQ)


def _double(d):
    from dataclasses import replace

    return replace(
        d,
        rho=d.rho.double(),
        t1=d.t1.double(),
        t2=d.t2.double(),
        sigma=d.sigma.double(),
        z=d.z.to(torch.complex128),
        target=d.target.double(),
    )


def test_data_shapes_noise_and_target(tiny):
    tr, _ = tiny
    assert tr.kspace.shape == (24, 16, 16) and tr.kspace.dtype == torch.complex64
    # noise: 2.5 % of max |k| of the reference acquisition, per phantom
    clean = acquire(tr, math.pi / 2, idx=slice(0, 4)) - tr.sigma[:4, None, None] * tr.z[:4]
    torch.testing.assert_close(
        tr.sigma[:4], 0.025 * clean.abs().flatten(1).amax(1), rtol=1e-4, atol=0
    )
    # the stored k-space is the re-acquisition at the reference (common random numbers)
    torch.testing.assert_close(acquire(tr, math.pi / 2, idx=slice(0, 4)), tr.kspace[:4])
    # the normalised inverse FFT is the Eq. 13 target up to noise and Gibbs ringing
    norm = fit_normalisation(tr)
    k = norm.apply(tr.kspace)
    img = ifft2c(k, norm="backward")
    rel = (img.real - tr.target).norm() / tr.target.norm()
    assert rel < 0.5
    assert img.imag.abs().mean() < 0.3 * img.real.abs().mean()


def test_data_is_seeded_and_cached(tmp_path):
    a = make_data(3, 5, ACQ, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("spin-*.pt"))) == 1
    b = make_data(3, 5, ACQ, cache_dir=tmp_path)  # from the cache
    torch.testing.assert_close(a.kspace, b.kspace)
    c = make_data(3, 6, ACQ)
    assert not torch.allclose(a.rho, c.rho)
    assert settings_key({"n": 3, "seed": 5}) != settings_key({"n": 3, "seed": 6})
    with pytest.raises(MrphysError, match="number of phantoms must be >= 1"):
        make_data(0, 0, ACQ)


def test_flip_gradient_matches_finite_difference(tiny):
    """d(test MSE)/d(flip1) through Bloch simulator and network = central difference (float64)."""
    _, te = tiny
    te64 = _double(te.subset(4))
    torch.manual_seed(0)
    model = FFTUNet(16, 2, zero_last=False).double()
    norm = Normalisation(scale=50.0)
    a = torch.tensor(math.radians(50.0), dtype=torch.float64, requires_grad=True)
    loss = loss_at(model, norm, te64, a)
    (g,) = torch.autograd.grad(loss, a)
    h = 1e-5
    with torch.no_grad():
        lp = loss_at(model, norm, te64, torch.tensor(float(a) + h, dtype=torch.float64))
        lm = loss_at(model, norm, te64, torch.tensor(float(a) - h, dtype=torch.float64))
    fd = (lp - lm) / (2 * h)
    assert abs(float(g)) > 1e-4  # not trivially zero (about -0.0099 per rad here)
    assert abs(float(g) - float(fd)) < 1e-6 * abs(float(fd))  # measured 3e-10


def test_gradcheck_flips_and_te(tiny):
    """gradcheck of the loss w.r.t. both flip angles and TE (float64, 2 phantoms, 16 x 16)."""
    _, te = tiny
    te64 = _double(te.subset(2))
    torch.manual_seed(1)
    model = FFTUNet(16, 2, zero_last=False).double()
    norm = Normalisation(scale=50.0)

    def f(a1, a2, t):
        return loss_at(model, norm, te64, a1, a2, t)

    x = tuple(
        torch.tensor(v, dtype=torch.float64, requires_grad=True)
        for v in (math.radians(70), math.radians(160), 0.045)
    )
    assert torch.autograd.gradcheck(f, x, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_tiny_training_lowers_loss_and_resumes_exactly(tiny, tmp_path):
    tr, te = tiny
    norm = fit_normalisation(tr)
    cfg = TrainConfig(net="unet", matrix=16, width=4, epochs=3, batch_size=8, lr=1e-3)
    model, hist = train(cfg, tr, te, norm, out=tmp_path, progress=False)
    assert len(hist) == 3 and all(isinstance(h, EpochRecord) for h in hist)
    assert hist[-1].train_loss < hist[0].train_loss
    assert hist[-1].psnr > hist[0].psnr
    # resume one more epoch from the checkpoint: the history continues, and the weights are
    # bitwise those of 4 epochs in one go
    cfg4 = TrainConfig(**{**cfg.__dict__, "epochs": 4})
    resumed, hist4 = train(cfg4, tr, te, norm, resume=tmp_path / "checkpoint.pt", progress=False)
    assert [h.epoch for h in hist4] == [1, 2, 3, 4] and hist4[:3] == hist
    straight, hist_s = train(cfg4, tr, te, norm, progress=False)
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [h.train_loss for h in hist_s] == [h.train_loss for h in hist4]
    loaded, lcfg, lnorm, _ = load_checkpoint(tmp_path / "checkpoint.pt")
    assert lcfg.net == "unet" and lnorm.scale == pytest.approx(norm.scale)
    with pytest.raises(MrphysError, match=r"other settings \(batch_size, lr, width\)"):
        train(
            TrainConfig(net="unet", matrix=16, width=8, epochs=4),
            tr,
            te,
            norm,
            resume=tmp_path / "checkpoint.pt",
            progress=False,
        )


def test_checkpoint_of_the_earlier_format_resumes(tiny, tmp_path):
    """The dict SPIN training wrote before the one trainer (history under ``extra``)."""
    tr, te = tiny
    norm = fit_normalisation(tr)
    cfg = TrainConfig(net="unet", matrix=16, width=2, epochs=2, batch_size=8)
    model = build_model(cfg)
    old = {
        "model": model.state_dict(),
        "optimizer": torch.optim.RMSprop(model.parameters()).state_dict(),
        "config": cfg.__dict__,
        "epoch": 1,
        "normalisation": norm.as_dict(),
        "version": "0.1.0",
        "extra": {"history": [{"epoch": 1, "lr": 5e-4, "train_loss": 0.5, "seconds": 0.1}]},
    }
    torch.save(old, tmp_path / "old.pt")
    _, cfg_l, norm_l, _ = load_checkpoint(tmp_path / "old.pt")
    assert cfg_l == cfg and norm_l == norm
    _, hist = train(cfg, tr, None, norm, resume=tmp_path / "old.pt", progress=False)
    assert [h.epoch for h in hist] == [1, 2] and hist[0].train_loss == 0.5
    assert hist[1].psnr is None and "psnr" not in hist[1].to_dict()  # no test set


def test_finite_difference_moves_flip_towards_90(tiny):
    """With the inverse FFT as 'network' the test loss falls from 30 deg towards 90 deg."""
    _, te = tiny
    norm = fit_normalisation(te)
    model = build_model(TrainConfig(net="unet", matrix=16, width=2))  # = inverse FFT
    h = finite_difference(model, norm, te, FDConfig(iterations=2, step=800.0), progress=False)
    assert isinstance(h, FDHistory)
    f = h.flip_angle_deg
    assert len(f) == len(h.mse) == len(h.ssim) == len(h.psnr) == len(h.grad) == 3
    assert f[0] == 30.0 and f[1] > 30.0 and f[2] > f[1]
    assert h.mse[-1] < h.mse[0]
    assert h.grad[0] < 0 and math.isnan(h.grad[-1])  # the loss falls as the flip rises
    assert h.images.shape == h.fft_images.shape == (3, 4, 16, 16)
    # metrics.json keeps the keys of the former dict (tensors left out)
    assert list(h.to_dict()) == [
        "flip_angle_deg",
        "mse",
        "ssim",
        "psnr",
        "fft_mse",
        "fft_ssim",
        "fft_psnr",
        "simulated",
        "seconds",
        "grad",
    ]


def test_autograd_flip_moves_towards_90(tiny):
    tr, _ = tiny
    norm = fit_normalisation(tr)
    model = build_model(TrainConfig(net="unet", matrix=16, width=2))
    h = autograd_flip(model, norm, tr, AutogradConfig(steps=3, batch=4, tolerance_deg=0))
    assert isinstance(h, AutogradHistory) and h.simulated == [0, 4, 8, 12]
    assert h.flip_angle_deg[-1] > 40.0
    assert all(p.requires_grad for p in model.parameters())


def test_joint_learns_sequence_and_network(tiny):
    tr, te = tiny
    norm = fit_normalisation(tr)
    cfg = JointConfig(
        start_flip1_deg=40.0,
        start_flip2_deg=150.0,
        start_te_ms=50.0,
        budget=0.5,
        iterations=1,
        steps_per_iteration=2,
        batch=4,
        lr_seq=0.1,
        train=TrainConfig(net="unet", matrix=16, width=2),
    )
    model, seq, h = joint(cfg, tr, te, norm, progress=False)
    assert isinstance(h, JointHistory)
    assert len(h.flip_angle_deg) == len(h.psnr) == len(h.train_loss) == 2
    assert h.flip_angle_deg[1] != pytest.approx(40.0)
    assert h.lines_kept == [8, 8] and h.line_weights.shape == (2, 16)
    assert h.te_ms[0] == pytest.approx(50.0, rel=1e-4)
    assert h.simulated == [0, 8] and math.isnan(h.train_loss[0])


def test_joint_resumes_bitwise(tiny, tmp_path):
    """Joint learning stopped after one iteration and resumed equals two in one go (the
    minibatch generator travels in the checkpoint)."""
    tr, te = tiny
    norm = fit_normalisation(tr)
    kw = dict(budget=0.5, steps_per_iteration=2, batch=4, seed=5)
    kw["train"] = TrainConfig(net="unet", matrix=16, width=2)
    m2, s2, h2 = joint(JointConfig(iterations=2, **kw), tr, te, norm, progress=False)
    ck = tmp_path / "joint.pt"
    joint(JointConfig(iterations=1, **kw), tr, te, norm, progress=False, checkpoint=ck)
    m, s, h = joint(
        JointConfig(iterations=2, **kw), tr, te, norm, progress=False, checkpoint=ck, resume=True
    )
    straight, resumed = [*m2.parameters(), *s2.parameters()], [*m.parameters(), *s.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(straight, resumed, strict=True))
    assert h.flip_angle_deg == h2.flip_angle_deg and h.train_loss[1:] == h2.train_loss[1:]
    assert torch.equal(h.line_weights, h2.line_weights) and h.simulated == h2.simulated
    with pytest.raises(MrphysError, match=r"other settings \(batch\)"):
        joint(
            JointConfig(iterations=3, **{**kw, "batch": 3}),
            tr,
            te,
            norm,
            progress=False,
            checkpoint=ck,
            resume=True,
        )


def test_hard_mask_budget():
    w = torch.tensor([0.1, 0.9, 0.5, 0.7])
    assert hard_mask(w, 0.5).tolist() == [0.0, 1.0, 0.0, 1.0]
    assert hard_mask(w, 0.5, centre=True).tolist() == [0.0, 1.0, 1.0, 0.0]


def test_model_init_is_seeded():
    a = build_model(TrainConfig(net="automap", matrix=16, channels=2, seed=3))
    b = build_model(TrainConfig(net="automap", matrix=16, channels=2, seed=3))
    c = build_model(TrainConfig(net="automap", matrix=16, channels=2, seed=4))
    torch.testing.assert_close(a.fc1.weight, b.fc1.weight)
    assert not torch.equal(a.fc1.weight, c.fc1.weight)


def test_gradient_wrt_tr_and_joint_with_tr(tiny):
    """TR is differentiable (float64 central difference) and learnable in the joint loop."""
    tr, te = tiny
    te64 = _double(te.subset(2))
    torch.manual_seed(2)
    model = FFTUNet(16, 2, zero_last=False).double()
    norm = Normalisation(scale=50.0)
    t = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    a = math.radians(90.0)
    (g,) = torch.autograd.grad(loss_at(model, norm, te64, a, tr=t), t)
    h = 1e-4
    with torch.no_grad():
        lp = loss_at(model, norm, te64, a, tr=torch.tensor(2.0 + h, dtype=torch.float64))
        lm = loss_at(model, norm, te64, a, tr=torch.tensor(2.0 - h, dtype=torch.float64))
    fd = (lp - lm) / (2 * h)
    assert abs(float(g)) > 0 and abs(float(g) - float(fd)) < 1e-5 * abs(float(fd))
    cfg = JointConfig(
        learn=("tr",),
        start_tr_ms=3000.0,
        start_flip1_deg=90.0,
        start_flip2_deg=179.0,
        start_te_ms=40.0,
        iterations=1,
        steps_per_iteration=1,
        batch=2,
        target="t1",
        train=TrainConfig(net="unet", matrix=16, width=2),
    )
    _, seq, h = joint(cfg, tr, te, fit_normalisation(tr), progress=False)
    assert h.tr_ms[0] == pytest.approx(3000.0, rel=1e-3) and h.tr_ms[1] != h.tr_ms[0]


def test_the_largest_seed_trains_and_a_larger_one_is_one_sentence(tiny):
    """Seed 2^63 - 1 used to overflow in the shuffling seeds (seed * 100003 + epoch) and the test
    data seed (seed + 1); now both are derived modulo 2^64."""
    from mrphys.design.run import DataConfig

    top = 2**63 - 1
    tr, te = DataConfig(n_train=2, n_test=2, matrix=16, seed=top).make(progress=False)
    assert te.seed == 2**63 and not torch.equal(tr.rho, te.rho)
    train_set, test_set = tiny
    cfg = TrainConfig(net="unet", matrix=16, width=2, epochs=2, batch_size=8, seed=top)
    norm = fit_normalisation(train_set)
    _, hist = train(cfg, train_set, test_set, norm, progress=False)
    assert len(hist) == 2 and math.isfinite(hist[-1].train_loss)
    for bad in (TrainConfig(seed=2**63), JointConfig(seed=-1)):
        with pytest.raises(MrphysError, match=r"seed must lie in 0 \.\. 2\^63 - 1"):
            bad.check()
