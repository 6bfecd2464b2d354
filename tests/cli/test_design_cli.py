"""`mrphys design protocol`: bad input (exit 2, nothing written), a tiny CRLB run, and a tiny
network run whose protocol and network `mrphys relax fit --protocol` then uses."""

from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")

P = ["design", "protocol"]
TINY = ["--starts", "1", "--screen", "2", "--steps", "3", "--eval-samples", "64"]
BAD = [  # (arguments, what the error names)
    (["--objective", "crlb", "--snr", "-1"], "--snr"),
    (["--objective", "crlb", "--snr", "inf"], "--snr"),
    (["--objective", "crlb", "--snr", "50", "--acquisitions", "2"], "acquisitions"),
    (["--objective", "crlb", "--snr", "50", "--acquisitions", "0"], "--acquisitions"),
    (["--objective", "mse", "--snr", "50"], "--objective"),
    (["--snr", "50"], "--objective"),
    (["--objective", "crlb"], "--snr"),
    (["--objective", "crlb", "--snr", "50", "--tr-ms", "1.5"], "minimum"),
    (["--objective", "crlb", "--snr", "50", "--min-tr-ms", "-2"], "--min-tr-ms"),
    (["--objective", "network", "--snr", "50", "--method", "miracle"], "--method"),
    (["--objective", "crlb", "--snr", "50", "--b1-range", "1.2", "0.8"], "--b1-range"),
    (["--objective", "crlb", "--snr", "50", "--flip-max-deg", "200"], "--flip-max-deg"),
    (["--objective", "network", "--snr", "50", "--net-loss", "l1"], "--net-loss"),
    (["--objective", "crlb", "--snr", "50", "--device", "tpu"], "--device"),
]
if not torch.cuda.is_available():
    BAD.append((["--objective", "crlb", "--snr", "50", "--device", "cuda"], "CUDA"))


@pytest.mark.parametrize("argv, says", BAD, ids=[" ".join(a[:4]) for a, _ in BAD])
def test_bad_input_exit_2_nothing_written(argv, says, tmp_path, cli):
    out = tmp_path / "run"
    cli.fails(*P, *argv, "--out", out, out=out, says=says)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # 15-18 s on the shared 2 cores (first bound, figures, Pulseq)
def test_crlb_run_writes_protocol_sequence_metrics(tmp_path, cli):
    out = tmp_path / "crlb"
    cli.ok(*P, "--objective", "crlb", "--no-b1-map", "--snr", "50", *TINY,
           "--b1-range", "1", "1", "--flip-max-deg", "120", "--out", out)  # fmt: skip
    names = {p.name for p in out.iterdir()}
    assert {"protocol.json", "sequence.seq", "metrics.json", "protocol.png"} <= names
    assert "network.pt" not in names
    rec = json.loads((out / "protocol.json").read_text())
    assert rec["b1_map"] is False and rec["n_cycles"] == 4
    assert len(rec["flip_deg"]) == len(rec["phase_increment_deg"]) == 4
    assert rec["te_ms"] == pytest.approx(rec["tr_ms"] / 2) and rec["tr_ms"] == pytest.approx(4.8)
    assert rec["scan_time_s"] == pytest.approx(4 * 4.8e-3)
    m = json.loads((out / "metrics.json").read_text())
    assert float(m["crlb"]["paper-4"]["without_b1_map"]["crlb_t1"]) == math.inf  # not identified
    assert math.isfinite(m["crlb"]["learned"]["without_b1_map"]["crlb_t1"])
    assert len(m["starts"]) == 1
    assert m["config"]["b1_range"] == [1.0, 1.0] and "B1 1-1" in m["crlb_note"]
    assert max(rec["flip_deg"]) <= 120.0
    assert m["crlb"]["paper-4"]["relative_sar"] == pytest.approx(1.0)
    # the same command again refuses to overwrite
    cli.fails(*P, "--objective", "crlb", "--snr", "50", *TINY, "--out", out, out=out)


@pytest.mark.slow
def test_network_run_then_relax_fit_with_the_protocol(tmp_path, cli):
    import torch

    from mrphys.relax.data import Protocol
    from mrphys.relax.inputs import write_volume
    from mrphys.relax.volume import simulate_volume

    out = tmp_path / "net"
    cli.ok(*P, "--objective", "network", "--no-b1-map", "--snr", "50", *TINY,
           "--net-steps", "100", "--out", out)  # fmt: skip
    assert (out / "network.pt").is_file() and (out / "error_offresonance.png").is_file()
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["networks"]) == {"learned", "paper-4", "paper-12"}
    proto = Protocol.from_record(json.loads((out / "protocol.json").read_text()))
    vol = simulate_volume(proto, matrix=16, n_slices=1, snr=50, seed=1)
    data = tmp_path / "data"
    data.mkdir()
    write_volume(data, vol)
    fit = tmp_path / "fit"
    cli.ok("relax", "fit", "--input", data / "pc_bssfp.nii.gz", "--protocol",
           out / "protocol.json", "--model", out / "network.pt", "--out", fit)  # fmt: skip
    t1 = np.asarray(nib.load(str(fit / "t1.nii.gz")).dataobj)
    assert t1.shape == (16, 16, 1) and (fit / "b1.nii.gz").is_file()
    inside = vol["mask"].numpy()
    assert np.isfinite(t1).all() and (t1[inside] > 0).all()
    # a protocol that does not match the network is refused
    other = tmp_path / "other.json"
    rec = json.loads((out / "protocol.json").read_text())
    rec["flip_deg"] = [v + 5 for v in rec["flip_deg"]]
    other.write_text(json.dumps(rec))
    cli.fails("relax", "fit", "--input", data / "pc_bssfp.nii.gz", "--protocol", other,
              "--model", out / "network.pt", "--out", tmp_path / "f2", out=tmp_path / "f2",
              says="flip angles")  # fmt: skip
    assert torch.isfinite(vol["t1"]).all()


def test_relax_fit_protocol_needs_model_and_b1_without_protocol(tmp_path, cli):
    out = tmp_path / "fit"
    pj = tmp_path / "protocol.json"
    pj.write_text(json.dumps({"tr_ms": 4.8, "flip_deg": [10, 20, 30, 40]}))
    inp = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((2, 2, 1, 4), np.complex64), np.eye(4)), str(inp))
    cli.fails("relax", "fit", "--input", inp, "--protocol", pj, "--out", out, out=out,
              says="--model")  # fmt: skip
    cli.fails("relax", "fit", "--input", inp, "--method", "miracle", "--out", out, out=out,
              says="--b1")  # fmt: skip
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"x")
    cli.fails("relax", "fit", "--input", inp, "--protocol", pj, "--model", bad, "--out", out,
              out=out, says="checkpoint")  # fmt: skip
