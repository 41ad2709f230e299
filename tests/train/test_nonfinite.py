"""A diverging run stops at the first non-finite loss (or non-finite weights) with an error
that names the epoch, the step and the term, exits 2, and leaves the last good
checkpoint as it was."""

import pytest
import torch

from edgedistill import api
from edgedistill.config import TrainExperiment
from edgedistill.models import create_model
from edgedistill.train import Trainer
from edgedistill.train.callbacks import Callback
from edgedistill.train.tasks import Supervised
from edgedistill.train.trainer import TrainingDiverged, epoch_checkpoint
from tests.conftest import run_cli, tiny_train_config

SYNTHETIC = {"num_train": 256, "num_test": 64, "image_size": 16, "channels": 3}


def test_a_real_divergent_run_exits_2_and_names_the_step(tmp_path, write_yaml):
    cfg = tiny_train_config(**{"train.optimizer.lr": 1e30, "data.limit_train": 256,
                               "data.limit_test": 128})
    out = tmp_path / "run"
    res = run_cli("train", str(write_yaml(cfg)), "--out", str(out))
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "training diverged at epoch 1/2, step 2/4: loss term(s) ce=nan" in res.stderr
    assert "train.optimizer.lr" in res.stderr and "final test accuracy" not in res.stdout
    assert not (out / "summary.json").exists() and not (out / "checkpoints" / "last.pt").exists()
    assert not (out / "metrics.jsonl").exists()


class PoisonAt(Supervised):
    """Supervised training plus a term ``bad`` that is NaN at one (epoch, step)."""

    def __init__(self, model, at):
        super().__init__(model)
        self.at = at

    def forward(self, batch):
        logits, losses = super().forward(batch)
        bad = torch.tensor(float("nan") if (batch.epoch, batch.step) == self.at else 0.0)
        return logits, {**losses, "bad": bad}


def trainer(tmp_path, task_cls=Supervised, callbacks=(), **over) -> Trainer:
    raw = tiny_train_config(**{"data.dataset": "synthetic", "data.options": SYNTHETIC,
                               "data.limit_train": None, "data.limit_test": None,
                               "train.keep_epoch_checkpoints": True, **over})
    cfg = TrainExperiment.model_validate(raw)
    train_data, test_data = api.build_data(cfg.data, cfg.seed)
    model = create_model("resnet8", num_classes=10, in_channels=3, width=0.5)
    train_pipe, test_pipe = api.build_pipelines(cfg.data, train_data, test_data, cfg.seed,
                                                torch.device("cpu"))
    task = task_cls(model)
    return Trainer(task, train_pipe, test_pipe, cfg, tmp_path / "run", list(callbacks),
                   torch.device("cpu"))


def test_an_injected_nan_term_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    t = trainer(tmp_path, lambda m: PoisonAt(m, (1, 2)))
    with pytest.raises(TrainingDiverged) as err:
        t.fit()
    msg = str(err.value)
    assert "epoch 2/2, step 3/4: loss term(s) bad=nan not finite" in msg
    assert "ce=" not in msg and "(end of epoch 1) is kept" in msg
    run = tmp_path / "run"
    assert (run / "checkpoints" / "last.pt").read_bytes() == \
        epoch_checkpoint(run, 0).read_bytes()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert not (run / "summary.json").exists()


class PoisonWeights(Callback):
    """Sets one weight to inf after ``step`` and records last.pt's bytes just before."""

    def __init__(self, step: int):
        self.step = step
        self.before = None

    def on_step_end(self, trainer, step_metrics):
        if trainer.global_step == self.step:
            self.before = trainer.ckpt_path.read_bytes()
            with torch.no_grad():
                next(trainer.task.parameters())[0, 0, 0, 0] = float("inf")


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    poison = PoisonWeights(step=4)
    t = trainer(tmp_path, callbacks=[poison], **{"train.checkpoint_every_steps": 2,
                                                 "data.batch_size": 32})
    with pytest.raises(TrainingDiverged) as err:
        t.fit()
    assert "epoch 1/2, step 4/8: model state model.conv1.weight not finite" in str(err.value)
    assert "(epoch 1, step 2) is kept" in str(err.value)
    assert t.ckpt_path.read_bytes() == poison.before


def test_a_finite_sum_of_terms_that_overflows_is_caught(tmp_path):
    class Overflow(Supervised):
        def forward(self, batch):
            logits, losses = super().forward(batch)
            big = torch.tensor(3e38)
            return logits, {**losses, "a": big, "b": big}

    with pytest.raises(TrainingDiverged, match=r"step 1/4: the loss terms \(ce=.*a=3e\+38"):
        trainer(tmp_path, Overflow).fit()
