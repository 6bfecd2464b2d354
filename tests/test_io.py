import numpy as np
import pytest
import scipy.io

from mrphys import io
from mrphys.errors import MrphysError


def test_output_dir_atomic_and_no_overwrite(tmp_path):
    out = tmp_path / "run"
    with io.output_dir(out) as d:
        (d / "a.txt").write_text("x")
    assert (out / "a.txt").read_text() == "x"
    with pytest.raises(MrphysError, match="--overwrite"):
        with io.output_dir(out):
            pass
    with pytest.raises(RuntimeError, match="boom"):
        with io.output_dir(out, overwrite=True) as d:
            (d / "b.txt").write_text("y")
            raise RuntimeError("boom")
    # failed run leaves the old output and no temporary folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert (out / "a.txt").exists() and not (out / "b.txt").exists()


def test_nifti_roundtrip_orientation(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)  # [Y, X]
    io.save_nifti(tmp_path / "x.nii.gz", x, voxel_mm=(2.0, 3.0, 1.0))
    data, aff = io.load_nifti(tmp_path / "x.nii.gz")
    assert data.shape == (4, 3)  # NIfTI order [X, Y]
    assert np.array_equal(data.T, x)
    assert aff[0, 0] == 2.0 and aff[1, 1] == 3.0


def test_load_mat_array(tmp_path):
    scipy.io.savemat(tmp_path / "one.mat", {"img": np.ones((4, 5, 2)), "s": 3.0})
    assert io.load_mat_array(tmp_path / "one.mat").shape == (4, 5, 2)
    scipy.io.savemat(tmp_path / "two.mat", {"a": np.ones((4, 4)), "b": np.ones((3, 3))})
    with pytest.raises(MrphysError, match="--variable"):
        io.load_mat_array(tmp_path / "two.mat")
    assert io.load_mat_array(tmp_path / "two.mat", variable="b").shape == (3, 3)
    with pytest.raises(MrphysError, match="does not exist"):
        io.load_mat_array(tmp_path / "none.mat")


def test_save_json_is_strict_json(tmp_path):
    import json
    import math

    import torch

    obj = {
        "a": [float("nan"), 1.5, math.inf],
        "b": torch.tensor([1.0, -math.inf]),
        "c": np.int64(3),
    }
    io.save_json(tmp_path / "m.json", obj)

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    back = json.loads((tmp_path / "m.json").read_text(), parse_constant=refuse)
    assert back == {"a": [None, 1.5, "inf"], "b": [1.0, "-inf"], "c": 3}


def test_claim_run_output_claims_out_and_protects_inputs(tmp_path) -> None:
    import contextlib

    from mrphys.errors import MrphysError
    from mrphys.io import LOCK_SUFFIX, claim_run_output

    assert isinstance(claim_run_output({"out": None}), contextlib.nullcontext)
    src = tmp_path / "in.npy"
    src.write_bytes(b"x")
    out = tmp_path / "out"
    with claim_run_output({"out": str(out), "input": str(src), "n": 3}, command="mrphys x"):
        assert (tmp_path / f"out{LOCK_SUFFIX}").exists()
    assert not (tmp_path / f"out{LOCK_SUFFIX}").exists()
    with (
        pytest.raises(MrphysError, match="holds the input .* which mrphys never deletes"),
        claim_run_output({"out": str(tmp_path), "input": str(src)}),
    ):
        pass  # an output holding an input is refused
