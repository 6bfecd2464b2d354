"""Protocol learning (issue 19): gradients, the bound against Monte Carlo and an independent
computation, the learnable protocol, Pulseq round trip, networks and their checkpoints."""

from __future__ import annotations

import math

import pytest
import torch

from mrphys.errors import MrphysError
from mrphys.physics.crlb import jacobian
from mrphys.physics.noise import sigma_relax
from mrphys.physics.ssfp import pc_bssfp_signal
from mrphys.relax import protocol_design as pd
from mrphys.relax.data import Protocol

D = torch.float64
#: a protocol with four flips and unequal increments (deg)
FLIPS = (12.0, 35.0, 60.0, 20.0)
INCS = (10.0, 100.0, 170.0, 260.0)


def _protocol() -> Protocol:
    return Protocol.custom([math.radians(v) for v in INCS], [math.radians(v) for v in FLIPS])


def test_signal_gradcheck_in_flips_increments_and_tr():
    t1 = torch.tensor([0.85, 1.4], dtype=D)
    t2 = torch.tensor([0.06, 0.09], dtype=D)
    b1 = torch.tensor([0.9, 1.2], dtype=D)
    th = torch.tensor([0.3, -1.1], dtype=D)

    def f(flips, incs, tr):
        s = pc_bssfp_signal(t1, t2, b1, th, tr=tr, te=tr / 2, flip=flips, increments=incs)
        return torch.view_as_real(s)

    flips = torch.deg2rad(torch.tensor(FLIPS, dtype=D)).requires_grad_()
    incs = torch.deg2rad(torch.tensor(INCS, dtype=D)).requires_grad_()
    tr = torch.tensor(4.8e-3, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(f, (flips, incs, tr))


def test_learnable_protocol_passes_gradients_to_its_raw_parameters():
    lp = pd.LearnableProtocol.from_protocol(_protocol(), tr_min=2.3e-3, learn_tr=True)
    kw = lp.signal_kwargs()
    s = pc_bssfp_signal(0.9, 0.06, 1.0, 0.3, **kw)
    s.abs().sum().backward()
    for p in (lp.flip_logit, lp.increments, lp.tr_raw):
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()) and p.grad.abs().sum() > 0
    # the round trip to a Protocol keeps the values
    back = lp.protocol()
    assert back.flip_angles().tolist() == pytest.approx(_protocol().flip_angles().tolist())
    assert back.tr == pytest.approx(4.8e-3)


def test_crlb_objective_gradcheck_in_flips_and_increments():
    smp = pd.crlb_samples(3, 1)

    def f(flips, incs):
        r1, r2 = pd.crlb_terms(smp, snr=50, b1_map=False, tr=4.8e-3, flip=flips, increments=incs)
        return torch.stack([r1, r2])

    flips = torch.deg2rad(torch.tensor(FLIPS, dtype=D)).requires_grad_()
    incs = torch.deg2rad(torch.tensor(INCS, dtype=D)).requires_grad_()
    assert torch.autograd.gradcheck(f, (flips, incs), atol=1e-6, rtol=1e-4, fast_mode=True)


def test_bound_matches_monte_carlo_of_gauss_newton_fits_without_b1_map():
    # 6 unknowns (T1, T2, Re/Im M0, theta, B1), a high SNR: the fit is efficient and unbiased
    p = _protocol()
    kw = {"tr": p.tr, "te": p.te, "flip": p.flip_angles(), "increments": p.phases()}
    truth = torch.tensor([0.9, 0.065, 0.8, 0.3, 0.5, 1.1], dtype=D)

    def model(q):
        m0 = torch.complex(q[..., 2], q[..., 3])
        return pc_bssfp_signal(q[..., 0], q[..., 1], q[..., 5], q[..., 4], m0=m0, **kw)

    snr = 2000.0
    sigma = sigma_relax(snr, per_channel=True)
    n = 3000
    g = torch.Generator().manual_seed(3)
    noise = torch.complex(
        torch.randn(n, 4, generator=g, dtype=D), torch.randn(n, 4, generator=g, dtype=D)
    )
    y = model(truth) + sigma * noise
    q = truth.expand(n, 6).clone()
    for _ in range(6):
        j = jacobian(model, q)  # (n, 4, 6) complex
        jr = torch.cat([j.real, j.imag], dim=1)
        r = y - model(q)
        rr = torch.cat([r.real, r.imag], dim=1).unsqueeze(-1)
        q = q + torch.linalg.solve(jr.transpose(1, 2) @ jr, jr.transpose(1, 2) @ rr).squeeze(-1)
    from mrphys.physics.ssfp import pc_bssfp_cramer_rao

    cr = pc_bssfp_cramer_rao(
        truth[0],
        truth[1],
        truth[5],
        truth[4],
        sigma=sigma,
        m0=complex(0.8, 0.3),
        b1_known=False,
        **kw,
    )
    mc = q.var(0)
    order = [0, 1, 2, 3, 4, 5]
    assert torch.allclose(mc[order], cr.variance, rtol=0.12)


def test_independent_finite_difference_bound_agrees(load_benchmark):
    bench = load_benchmark("protocol")
    pts = [a[:200] for a in bench.evaluation_points(n_tissue=4)]
    p = _protocol()
    smp = {k: torch.tensor(v) for k, v in zip(("t1", "t2", "b1", "theta"), pts, strict=True)}
    for b1_map in (True, False):
        a1, a2 = bench.independent_crlb(p.record(), *pts, snr=40, b1_map=b1_map)
        b1_, b2 = pd.crlb_terms(
            smp, snr=40, b1_map=b1_map, tr=p.tr, flip=p.flip_angles(), increments=p.phases()
        )
        torch.testing.assert_close(torch.tensor(a1), b1_, rtol=1e-5, atol=0)
        torch.testing.assert_close(torch.tensor(a2), b2, rtol=1e-5, atol=0)


def test_one_flip_without_b1_map_is_not_identified_and_two_flips_are():
    smp = pd.crlb_samples(64, 2)
    fixed = pd.crlb_summary(pd.paper_protocol(4), snr=50, b1_map=False, samples=smp)
    assert math.isinf(fixed["crlb_t1"]) and fixed["identified"] == 0.0
    mixed = pd.crlb_summary(_protocol(), snr=50, b1_map=False, samples=smp)
    assert math.isfinite(mixed["crlb_t1"]) and mixed["identified"] == 1.0


def test_gradient_steps_lower_the_bound_and_respect_the_limits():
    smp = pd.crlb_samples(32, 4)
    lp = pd.LearnableProtocol.from_protocol(pd.paper_protocol(4), tr_min=4.0e-3, learn_tr=True)
    opt = torch.optim.Adam(lp.parameters(), lr=0.05)
    losses = []
    for _ in range(8):
        kw = lp.signal_kwargs()
        r1, r2 = pd.crlb_terms(
            smp, snr=50, b1_map=True, tr=kw["tr"], flip=kw["flip"], increments=kw["increments"]
        )
        loss = pd._objective(r1, r2)
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.97 * losses[0]
    assert float(lp.tr().detach()) >= 4.0e-3  # TR never below its bound
    lo, hi = (math.radians(v) for v in pd.FLIP_RANGE_DEG)
    assert bool(((lp.flips() > lo) & (lp.flips() < hi)).all())
    p = lp.protocol()
    assert p.te == pytest.approx(p.tr / 2)


def test_gradient_limited_min_tr():
    tr = pd.gradient_limited_min_tr()
    assert tr == pytest.approx(2.25e-3, abs=0.01e-3)
    assert pd.gradient_limited_min_tr(matrix=256) > tr  # a longer readout
    assert pd.gradient_limited_min_tr(slew=100.0) > tr  # slower ramps
    with pytest.raises(MrphysError, match="mT/m"):
        pd.gradient_limited_min_tr(dwell=1e-6, fov=0.1)
    with pytest.raises(MrphysError, match="tr must lie"):
        pd.DesignConfig(tr=1e-3)


def test_best_fixed_flip_is_at_least_as_good_as_15_degrees():
    smp = pd.crlb_samples(48, 5)
    best, curve = pd.best_fixed_flip(4, snr=50, b1_map=True, samples=smp, max_deg=30)
    ref = dict(curve)
    s15 = pd.crlb_summary(pd.paper_protocol(4), snr=50, b1_map=True, samples=smp)
    sb = pd.crlb_summary(best, snr=50, b1_map=True, samples=smp)
    scale = pd.reference_bounds(4, snr=50, samples=smp)
    assert pd._criterion(sb, scale) <= pd._criterion(s15, scale) + 1e-12
    assert best.is_standard and min(abs(math.degrees(best.flip) - f) for f in ref) < 1e-9


def test_sequence_has_dummy_repetitions_before_each_acquisition():
    from mrphys.physics.sequence import Loop

    seq = pd.protocol_sequence(_protocol())  # what design_protocol writes: 200 dummy TRs
    kinds = ["loop" if isinstance(it, Loop) else "block" for it in seq.items]
    loops = [it for it in seq.items if isinstance(it, Loop)]
    assert len(loops) == 4 and all(lp.count == 200 for lp in loops)
    assert kinds.index("loop") < next(
        i for i, it in enumerate(seq.items) if not isinstance(it, Loop) and it.adc is not None
    )
    incs = [math.degrees(float(lp.phase_increment)) % 360 for lp in loops]
    assert incs == pytest.approx(list(INCS), abs=1e-4)  # float32 phases


def test_sequence_round_trip_keeps_flips_and_increments(tmp_path):
    pytest.importorskip("pypulseq")
    from mrphys.physics.pulseq_io import read_seq, write_seq
    from mrphys.physics.sequence import Loop

    p = _protocol()
    path = tmp_path / "sequence.seq"
    write_seq(pd.protocol_sequence(p, n_dummy=5), path)
    back = read_seq(path)
    assert back.kspace_shape == (4,)
    adc = [b for b in back.blocks if b.adc is not None]
    flips = [math.degrees(float(b.rf.flip)) for b in adc]
    assert flips == pytest.approx(list(FLIPS), abs=1e-3)
    loops = [it for it in back.items if isinstance(it, Loop)]
    incs = [math.degrees(float(lp.phase_increment)) % 360 for lp in loops]
    assert incs == pytest.approx(list(INCS), abs=1e-3)
    assert float(adc[0].duration) == pytest.approx(p.tr)


def test_features_cancel_m0_and_need_b1_only_with_a_map():
    p = _protocol()
    s = pc_bssfp_signal(0.9, 0.06, 1.1, 0.4, **p.signal_kwargs())
    f1 = pd.protocol_features(pd.remove_common_phase(s))
    f2 = pd.protocol_features(pd.remove_common_phase(s * complex(0.3, -2.0)))
    torch.testing.assert_close(f1, f2)
    assert f1.shape == (8,)
    assert pd.protocol_features(s, torch.tensor(1.0, dtype=D)).shape == (9,)


def test_joint_training_moves_the_protocol_and_checkpoint_round_trip(tmp_path):
    cfg = pd.DesignConfig(
        objective="network", b1_map=False, snr=50, net_steps=100, hidden=16, net_batch=64
    )
    ck = tmp_path / "net.pt"
    res = pd.train_protocol_network(cfg, _protocol(), learn=True, checkpoint=ck)
    learned = res.model.protocol.protocol()
    assert learned.flip_angles().tolist() != pytest.approx(
        _protocol().flip_angles().tolist(), abs=1e-6
    )
    back = pd.load_protocol_network(ck)
    assert not back.b1_map
    sig = pc_bssfp_signal(
        torch.tensor([0.9, 1.2], dtype=D), 0.07, 1.0, 0.2, **learned.signal_kwargs()
    )
    torch.testing.assert_close(back.predict(sig), res.model.predict(sig))
    assert back.predict(sig).shape == (2, 4)  # T1, T2, theta, B1
    maps = pd.fit_with_protocol(back, learned, sig, None)
    assert set(maps) == {"t1", "t2", "db0", "b1"}
    with pytest.raises(MrphysError, match="flip angles differ"):
        pd.fit_with_protocol(back, _protocol(), sig, None)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(MrphysError):
        pd.load_protocol_network(bad)


def test_config_errors():
    with pytest.raises(MrphysError, match="acquisitions must be at least 3"):
        pd.DesignConfig(n_acq=2)
    with pytest.raises(MrphysError, match="snr"):
        pd.DesignConfig(snr=math.inf)
    with pytest.raises(MrphysError, match="objective"):
        pd.DesignConfig(objective="mse")
    with pytest.raises(MrphysError, match="net_loss"):
        pd.DesignConfig(net_loss="l1")
    with pytest.raises(MrphysError, match="lr_schedule"):
        pd.DesignConfig(lr_schedule="step")
    with pytest.raises(MrphysError, match="b1_range"):
        pd.DesignConfig(b1_range=(1.2, 0.8))
    with pytest.raises(MrphysError, match="flip_max_deg"):
        pd.DesignConfig(flip_max_deg=180.0)


def test_b1_range_readings_of_the_objective():
    full = pd.crlb_samples(64, 7)
    assert full is not None and bool(((full["b1"] >= 0.7) & (full["b1"] <= 1.3)).all())
    one = pd.crlb_samples(64, 7, b1_range=(1.0, 1.0))
    torch.testing.assert_close(one["b1"], torch.ones(64, dtype=D))
    torch.testing.assert_close(one["t1"], full["t1"])  # same tissues, same theta
    narrow = pd.crlb_samples(64, 7, b1_range=(0.9, 1.1))
    assert bool(((narrow["b1"] >= 0.9) & (narrow["b1"] <= 1.1)).all())
    # without a B1 map, B1 stays an unknown at B1 = 1: a flip-varied protocol identifies it
    p = _protocol()
    r1, r2 = pd.crlb_terms(
        one, snr=50, b1_map=False, tr=4.8e-3, flip=p.flip_angles(), increments=p.phases()
    )
    assert bool(torch.isfinite(r1).all() and torch.isfinite(r2).all())


def test_flips_above_90_only_when_allowed_and_their_rf_power():
    cfg = pd.DesignConfig(flip_max_deg=150.0)
    g = torch.Generator().manual_seed(0)
    tops = [float(pd._random_start(cfg, g).flips().detach().max()) for _ in range(20)]
    assert max(tops) > math.radians(90) and max(tops) < math.radians(150)
    lp = pd.LearnableProtocol.from_protocol(_protocol(), tr_min=2.3e-3)
    assert float(lp.flips().max()) <= math.radians(90)
    assert pd.relative_sar(pd.paper_protocol(4)) == pytest.approx(1.0)
    assert pd.relative_sar(pd.paper_protocol(4, flip_deg=30.0)) == pytest.approx(4.0)
    assert pd.relative_sar(pd.paper_protocol(4, tr=2.4e-3)) == pytest.approx(2.0)
    big = Protocol.custom([0.1, 1.0, 2.0, 3.0], [math.radians(v) for v in (20, 40, 120, 10)])
    lp = pd.LearnableProtocol.from_protocol(big, tr_min=2.3e-3)  # its range reaches 121 deg
    torch.testing.assert_close(lp.flips(), big.flip_angles().double())


def test_relative_loss_and_cosine_schedule():
    cfg = pd.DesignConfig(objective="network", b1_map=True, snr=50, net_steps=300, hidden=16,
                          net_batch=64, net_loss="relative", lr_schedule="cosine",
                          net_patience=0)  # fmt: skip
    res = pd.train_protocol_network(cfg, pd.paper_protocol(4), learn=False)
    lrs = [h["lr"] for h in res.history]
    assert len(lrs) == 3 and lrs[0] == pytest.approx(cfg.lr_net)
    assert lrs[0] > lrs[1] > lrs[2] >= 0.01 * cfg.lr_net
    assert all(math.isfinite(h["val_loss"]) for h in res.history)
    feats = torch.zeros(5, 9)
    target = torch.tensor([[1.0, 0.1, 0.2]] * 5)
    model = res.model
    rel = pd._relative_loss(model, feats, target)
    pred = model.net(feats)
    want = torch.cat([(pred[:, :2] - target[:, :2]) / target[:, :2],
                      (model.net.unit_output(feats)[:, 2:] - (target[:, 2:] - model.net.lo[2])
                       / (model.net.hi[2] - model.net.lo[2]))], dim=1).pow(2).mean()  # fmt: skip
    torch.testing.assert_close(rel, want)


def test_batched_bound_equals_the_bound_of_each_protocol():
    smp = pd.crlb_samples(6, 11)
    flips = torch.deg2rad(torch.tensor([FLIPS, (15.0,) * 4, (80.0, 5.0, 30.0, 45.0)], dtype=D))
    incs = torch.deg2rad(
        torch.tensor([INCS, (45.0, 135.0, 225.0, 315.0), (0, 90, 180, 270)], dtype=D)
    )
    for b1_map in (True, False):
        m1, m2 = pd.crlb_terms(
            smp, snr=50, b1_map=b1_map, tr=4.8e-3, flip=flips[:, None], increments=incs[:, None]
        )
        assert m1.shape == (3, 6)
        for c in range(3):
            r1, r2 = pd.crlb_terms(
                smp, snr=50, b1_map=b1_map, tr=4.8e-3, flip=flips[c], increments=incs[c]
            )
            # one function serves both: protocol c of the batch is that protocol alone, bit for
            # bit (one flip for all without a map: T1 not identified, inf, in both)
            assert torch.equal(m1[c], r1) and torch.equal(m2[c], r2)
            assert bool(torch.isinf(m1[1]).all()) != b1_map
    with pytest.raises(MrphysError, match="4 angles but the protocol has 3 acquisitions"):
        pd.crlb_terms(
            smp, snr=50, b1_map=True, tr=4.8e-3, flip=flips[:, None], increments=incs[:, None, :3]
        )


def test_global_search_is_seeded_respects_the_limits_and_reports_the_landscape():
    cfg = pd.DesignConfig(
        b1_map=False, candidates=64, refine=4, crlb_steps=6, crlb_batch=16, eval_samples=64,
        flip_max_deg=60.0,
    )  # fmt: skip
    p, rec = pd.global_search_crlb(cfg)
    p2, _ = pd.global_search_crlb(cfg)
    assert p.record() == p2.record()
    flips = p.record()["flip_deg"]
    assert all(1.0 <= f <= 60.0 for f in flips) and len(flips) == 4
    vals = [r["val_objective"] for r in rec["refined"]]
    assert len(vals) == 4 and vals == sorted(vals)
    assert rec["within_10pct"] >= 1 and rec["refine"] == 4 and rec["candidates"] == 64
    # the best refined protocol is the one returned, and it is no worse than the paper's
    # 15 deg protocol, which without a B1 map cannot identify T1 at all
    assert rec["refined"][0]["flip_deg"] == pytest.approx(flips)
    assert math.isfinite(vals[0])
    # the designer takes the global search when candidates are given
    q, starts = pd.learn_protocol_crlb(cfg)
    assert q.record() == p.record() and len(starts) == 4
    with pytest.raises(MrphysError, match="candidates"):
        pd.DesignConfig(candidates=-1)
