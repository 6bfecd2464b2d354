"""Volume fitting, the simulated volume, and the Monte Carlo evaluation."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mrphys.relax.data import Protocol
from mrphys.relax.evaluate import evaluate_method, monte_carlo, offresonance_sweep
from mrphys.relax.train import TrainConfig, train
from mrphys.relax.volume import RelaxMaps, fit_volume, simulate_volume


def test_noise_free_volume_recovered_by_miracle() -> None:
    pr = Protocol(12)
    vol = simulate_volume(pr, matrix=32, n_slices=2, snr=math.inf, seed=0)
    assert vol["signals"].shape == (32, 32, 2, 12) and vol["signals"].dtype == torch.complex64
    assert 0.7 <= float(vol["b1"].min()) and float(vol["b1"].max()) <= 1.3
    maps = fit_volume(vol["signals"], vol["b1"], "miracle", pr, mask=vol["mask"])
    assert isinstance(maps, RelaxMaps) and maps.db0 is None  # magnitude methods: no dB0
    assert maps.t1.shape == maps.t2.shape == (32, 32, 2)
    region = vol["mask"] & (vol["t1"] <= 2.08)
    for k, fitted in maps.as_dict().items():
        rel = ((fitted - vol[k]) / vol[k])[region].abs()
        assert float(rel.median()) < 0.01, k
    assert bool((maps.t1[~vol["mask"]] == 0).all())


def test_complex_network_returns_db0_with_sign_convention() -> None:
    pr = Protocol(6)
    res = train(TrainConfig(method="svnn-complex", n_cycles=6, n_samples=3000, max_epochs=2))
    vol = simulate_volume(pr, matrix=16, n_slices=1, snr=math.inf)
    maps = fit_volume(vol["signals"], vol["b1"], "svnn-complex", pr, res.model, vol["mask"])
    assert set(maps.as_dict()) == {"t1", "t2", "db0"}
    assert maps.db0.shape == (16, 16, 1)
    m = vol["mask"]
    # even a barely trained network gets the sign and rough size of dB0
    c = torch.corrcoef(torch.stack([maps.db0[m], vol["db0"][m]]))[0, 1]
    assert float(c) > 0.5


def test_miracle_mc_and_sweep() -> None:
    pr = Protocol(12)
    p = {
        "t1": torch.tensor([0.939, 1.5], dtype=torch.float64),
        "t2": torch.tensor([0.062, 0.1], dtype=torch.float64),
    }
    p["b1"] = torch.ones(2, dtype=torch.float64)
    p["theta"] = torch.zeros(2, dtype=torch.float64)
    mc = monte_carlo(p, "miracle", pr, None, 25.0, 64, seed=1)
    assert bool((mc["t1_std"] > 0).all())
    assert float(((mc["t1_mean"] - p["t1"]) / p["t1"]).abs().max()) < 0.1
    clean = monte_carlo(p, "miracle", pr, None, math.inf, 64)
    assert bool((clean["t1_std"] == 0).all())
    sw = offresonance_sweep("miracle", Protocol(4), None)
    assert len(sw["theta_over_pi"]) == 180
    assert math.isclose(sw["theta_over_pi"][0], -0.9) and math.isclose(
        sw["theta_over_pi"][-1], 0.89
    )
    # MIRACLE at 4 cycles and theta 0 is biased by about -20 % in T1 (METHODS 3)
    assert -22 < sw["t1_rel_err_pct"][90] < -18


def test_evaluate_writes_figures_and_json(tmp_path) -> None:
    res = evaluate_method(
        "miracle", Protocol(12), None, tmp_path, grid=6, n_mc=4, snrs=[math.inf, 25.0], n_invivo=30
    )
    names = {p.name for p in tmp_path.iterdir()}
    assert {
        "metrics.json",
        "cod_vs_snr.png",
        "offres_sweep.png",
        "relerr_snrinf.png",
        "relerr_snr25.png",
    } <= names
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["snr_rows"][0]["snr"] == "inf"
    assert res["summary"]["cod_t1_snrinf"] > 0.99


def test_simulated_volume_beyond_memory_is_refused_before_any_work(monkeypatch) -> None:
    import pytest

    from mrphys.errors import MrphysError

    monkeypatch.setenv("MRPHYS_MEMORY_LIMIT_GB", "16")
    # the case of the issue (killed at 21 GB): 67 M voxels x (12 cycles x 96 B + 128 B)
    with pytest.raises(MrphysError, match=r"needs about 85.9 GB of memory but 16 GB.*--slices"):
        simulate_volume(Protocol(12), matrix=512, n_slices=256)
    monkeypatch.setenv("MRPHYS_MEMORY_LIMIT_GB", "0.01")
    small = simulate_volume(Protocol(4), matrix=16, n_slices=2, seed=3)  # 2 k voxels fit in 10 MB
    assert small["signals"].shape == (16, 16, 2, 4)


def test_simulated_volume_on_the_cpu_device_is_the_default_volume() -> None:
    a = simulate_volume(Protocol(4), matrix=16, n_slices=2, seed=3)
    b = simulate_volume(Protocol(4), matrix=16, n_slices=2, seed=3, device="cpu")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(v.device.type == "cpu" for v in b.values())


def test_fit_volume_refuses_a_mask_of_another_shape() -> None:
    import pytest

    from mrphys.errors import MrphysError

    pr = Protocol(6)
    vol = simulate_volume(pr, matrix=16, n_slices=2, snr=math.inf)
    for mask in (vol["mask"][:8], vol["mask"].reshape(-1), vol["mask"][..., :1]):
        with pytest.raises(
            MrphysError, match=r"mask has shape .* but the signals have \(16, 16, 2\)"
        ):
            fit_volume(vol["signals"], vol["b1"], "miracle", pr, mask=mask)


def test_voxels_without_signal_are_warned_about_marked_and_not_fitted(caplog) -> None:
    pr = Protocol(6)
    vol = simulate_volume(pr, matrix=16, n_slices=2, snr=50.0)  # noise everywhere: no zeros
    sig = vol["signals"].clone()
    sig[:4] = 0  # an empty band, as zero padding leaves
    with caplog.at_level("WARNING", logger="mrphys.relax.volume"):
        maps = fit_volume(sig, vol["b1"], "miracle", pr)
    assert "128 of 512 voxels to fit have no signal" in caplog.text
    assert maps.no_signal.shape == (16, 16, 2) and int(maps.no_signal.sum()) == 128
    assert bool(maps.no_signal[:4].all()) and not bool(maps.no_signal[4:].any())
    assert bool((maps.t1[:4] == 0).all()) and bool((maps.t2[:4] == 0).all())
    # the other voxels are fitted exactly as without the empty band
    ref = fit_volume(vol["signals"], vol["b1"], "miracle", pr)
    assert torch.equal(maps.t1[4:], ref.t1[4:]) and not bool(ref.no_signal.any())
    caplog.clear()
    with caplog.at_level("WARNING", logger="mrphys.relax.volume"):
        empty = fit_volume(torch.zeros_like(sig), vol["b1"], "miracle", pr, mask=vol["mask"])
    n = int(vol["mask"].sum())
    assert f"{n} of {n} voxels to fit have no signal" in caplog.text
    assert torch.equal(empty.no_signal, vol["mask"]) and not bool(empty.t1.any())


def test_evaluation_beyond_memory_is_refused_before_writing(tmp_path, monkeypatch) -> None:
    import pytest

    from mrphys.errors import MrphysError

    monkeypatch.setenv("MRPHYS_MEMORY_LIMIT_GB", "4")
    with pytest.raises(MrphysError, match=r"evaluation with 100000 phase cycles .*--phase-cycles"):
        evaluate_method("miracle", Protocol(100_000), None, tmp_path / "ev", grid=4, n_mc=2)
    assert not (tmp_path / "ev").exists()


def test_parse_snrs() -> None:
    from mrphys.errors import MrphysError
    from mrphys.relax.evaluate import parse_snrs

    assert parse_snrs("inf, 50,25,") == [math.inf, 50.0, 25.0]
    for bad in ("", "0,x", "50,-1", "nan"):
        with pytest.raises(MrphysError, match="^snrs must be comma-separated positive numbers"):
            parse_snrs(bad)
