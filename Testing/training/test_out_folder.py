"""Training never writes over what it did not make: the checkpoint it trains from, another run's
results, or a folder holding someone else's checkpoints (issue: nothing lost, nothing silent)."""

from __future__ import annotations

import pytest
from lkseg.checkpoint.native import file_sha256
from lkseg.cli import main
from lkseg.errors import LkSegError
from lkseg.training.config import TrainConfig
from lkseg.training.ownership import claim_out_folder
from training_cases import make_dataset, threshold_checkpoint

ARGS = ["--steps", "2", "--val-every", "2", "--roi", "16", "16", "16", "--device", "cpu"]


def test_fine_tuning_from_a_checkpoint_inside_out_is_refused_and_the_file_kept(tmp_path, capsys):
    make_dataset(tmp_path / "ds")
    job = tmp_path / "job"
    assert main(["finetune", "--checkpoint", str(threshold_checkpoint(tmp_path / "p.safetensors")),
                 "--dataset", str(tmp_path / "ds"), "--out", str(job), *ARGS]) == 0
    best = job / "checkpoints" / "best.safetensors"
    before = file_sha256(best)
    capsys.readouterr()
    assert main(["finetune", "--checkpoint", str(best), "--dataset", str(tmp_path / "ds"), "--out", str(job),
                 *ARGS]) == 2
    assert "lies inside --out" in capsys.readouterr().err
    assert file_sha256(best) == before


def test_a_folder_with_results_it_did_not_make_is_refused(tmp_path):
    make_dataset(tmp_path / "ds")
    foreign = tmp_path / "someone_elses"
    (foreign / "checkpoints").mkdir(parents=True)
    (foreign / "checkpoints" / "best.safetensors").write_bytes(b"their model")
    cfg = TrainConfig(dataset=tmp_path / "ds", out=foreign, checkpoint=threshold_checkpoint(tmp_path / "p.safetensors"),
                      steps=2, device="cpu")
    with pytest.raises(LkSegError, match="did not make"):
        claim_out_folder(cfg)
    assert (foreign / "checkpoints" / "best.safetensors").read_bytes() == b"their model"


def test_a_rerun_resumes_only_its_own_run(tmp_path):
    make_dataset(tmp_path / "ds")
    make_dataset(tmp_path / "other_ds", n=2)
    parent = threshold_checkpoint(tmp_path / "p.safetensors")
    other_parent = threshold_checkpoint(tmp_path / "q.safetensors", scale=2.0)
    cfg = TrainConfig(dataset=tmp_path / "ds", out=tmp_path / "job", checkpoint=parent, steps=2, device="cpu")
    claim_out_folder(cfg)
    claim_out_folder(cfg)  # the same run again: allowed (it resumes)
    for changed in ({"checkpoint": other_parent}, {"dataset": tmp_path / "other_ds"}):
        other = TrainConfig(**{**cfg.__dict__, **changed})
        with pytest.raises(LkSegError, match="holds another run"):
            claim_out_folder(other)


def test_a_second_trainer_into_the_same_folder_is_refused(tmp_path):
    import json
    import subprocess
    import sys

    from lkseg.utils.processes import identity

    make_dataset(tmp_path / "ds")
    cfg = TrainConfig(dataset=tmp_path / "ds", out=tmp_path / "job", checkpoint=threshold_checkpoint(tmp_path / "p.safetensors"),
                      steps=2, device="cpu")
    claim_out_folder(cfg)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a trainer already at work
    try:
        (tmp_path / "job" / "trainer.json").write_text(json.dumps(identity(other.pid)))
        with pytest.raises(LkSegError, match="another trainer"):
            claim_out_folder(cfg)
    finally:
        other.kill()
        other.wait()
    claim_out_folder(cfg)  # once it is gone, the run may resume
