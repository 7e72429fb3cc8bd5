"""ckpt.CheckpointManager with PyTorch training state."""

import random

import numpy as np
import pytest
import torch

import ckpt


def make_model():
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                               torch.nn.Linear(16, 1))


def make_data(n=64):
    generator = torch.Generator().manual_seed(1234)
    x = torch.randn(n, 8, generator=generator)
    y = x.sum(dim=1, keepdim=True) + 0.1 * torch.randn(n, 1,
                                                       generator=generator)
    return x, y


class Trainer:
    """A small MLP trained with Adam, a step LR schedule and dropout-like
    randomness drawn from torch's RNG (so the RNG state matters)."""

    def __init__(self):
        self.model = make_model()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=0.01)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=3, gamma=0.5)
        self.x, self.y = make_data()
        self.step = 0

    def train_step(self):
        batch = torch.randint(0, self.x.shape[0], (16,))
        noise = torch.randn(16, 1) * 0.01
        loss = torch.nn.functional.mse_loss(self.model(self.x[batch]),
                                            self.y[batch] + noise)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return loss.item()

    def state(self):
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "rng": {"torch": torch.get_rng_state(),
                    "numpy": np.random.get_state(),
                    "python": random.getstate()},
        }

    def load(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = state["step"]
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])


def assert_same(a, b, path="state"):
    """a and b hold equal values of equal types, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), path
        assert a.dtype == b.dtype and a.shape == b.shape, path
        if a.is_quantized:
            a, b = a.int_repr(), b.int_repr()
        assert torch.equal(a, b), path
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), path
        assert a.dtype == b.dtype and a.shape == b.shape, path
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(a, dict):
        assert type(a) is type(b) and list(a) == list(b), path
        for key in a:
            assert_same(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}/{i}")
    else:
        assert type(a) is type(b) and a == b, path


def test_round_trip_of_training_state(server):
    torch.manual_seed(0)
    trainer = Trainer()
    for _ in range(5):
        trainer.train_step()
    state = trainer.state()
    state["extra"] = {"epoch": 3, "lr": 0.25, "name": "run-a",
                      "loader": {"position": 128, "order": [3, 1, 2]},
                      "none": None, "half": torch.ones(2, dtype=torch.half),
                      "bf16": torch.arange(4, dtype=torch.bfloat16),
                      "flags": torch.tensor([True, False]),
                      "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3),
                      "view": torch.arange(12.0).reshape(3, 4).t(),
                      # Stored as int32, viewed back as uint32.
                      "uint32": np.arange(3, dtype=np.uint32)}
    with ckpt.CheckpointManager(server, "t/round") as manager:
        assert manager.latest_step is None
        assert manager.restore_or_initialize(lambda: "fresh") == "fresh"
        assert manager.save(state, 5, metrics={"loss": 0.1})
        assert manager.latest_step == 5 and manager.all_steps() == [5]
        restored = manager.restore()
        assert manager.restore_or_initialize(lambda: "fresh") is not None
    assert_same(state, restored)

    other = Trainer()
    other.load(restored)
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, other.model.state_dict()[name])
    assert other.scheduler.get_last_lr() == trainer.scheduler.get_last_lr()


def test_tied_tensors_are_stored_once_and_restore_tied(server):
    shared = torch.arange(6.0)
    with ckpt.CheckpointManager(server, "t/tied") as manager:
        manager.save({"a": shared, "b": shared}, 1)
        restored = manager.restore(1)
        [entry_count] = [len(manager.client.restore_shard("t/tied", 1))]
    assert restored["a"] is restored["b"]
    assert entry_count == 2  # the tensor once, plus the state tree


def test_restore_into_existing_tensors(server):
    torch.manual_seed(1)
    model = make_model()
    with ckpt.CheckpointManager(server, "t/into") as manager:
        manager.save({"model": model.state_dict()}, 1)
        fresh = make_model()
        target = {"model": fresh.state_dict()}
        restored = manager.restore(into=target)
    for name, value in model.state_dict().items():
        assert restored["model"][name] is target["model"][name]
        assert torch.equal(fresh.state_dict()[name], value)


def train_run(manager, steps, interrupt_at=None, save_every=2):
    """Trains from the latest checkpoint (or from scratch) to `steps`,
    checkpointing every `save_every` steps; stops after `interrupt_at`
    steps as if the process died (no save at that point)."""
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    trainer = Trainer()
    state = manager.restore_or_initialize(lambda: None)
    if state is not None:
        trainer.load(state)
    while trainer.step < steps:
        trainer.train_step()
        if interrupt_at is not None and trainer.step == interrupt_at:
            return trainer
        if trainer.step % save_every == 0:
            manager.save(trainer.state(), trainer.step)
    return trainer


def test_interrupted_run_resumes_bit_identical(server):
    with ckpt.CheckpointManager(server, "t/full") as manager:
        uninterrupted = train_run(manager, steps=12)
    with ckpt.CheckpointManager(server, "t/crash") as manager:
        train_run(manager, steps=12, interrupt_at=7)  # last save: step 6
        assert manager.latest_step == 6
    with ckpt.CheckpointManager(server, "t/crash") as manager:
        resumed = train_run(manager, steps=12)
    assert resumed.step == uninterrupted.step == 12
    for name, value in uninterrupted.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert_same(uninterrupted.optimizer.state_dict(),
                resumed.optimizer.state_dict())


def test_max_to_keep_keeps_the_last_two(server):
    with ckpt.CheckpointManager(server, "t/keep", max_to_keep=2) as manager:
        for step in range(1, 6):
            assert manager.save({"w": torch.full((3,), float(step))}, step)
        assert manager.all_steps() == [4, 5]
        assert manager.client.get_retention_policy("t/keep")[
            "max_to_keep"] == 2
        assert torch.equal(manager.restore(4)["w"], torch.full((3,), 4.0))


def test_keep_best_by_metric(server):
    with ckpt.CheckpointManager(server, "t/best",
                                keep_best=(1, "val_loss", "min"),
                                max_to_keep=1) as manager:
        for step, loss in [(1, 0.5), (2, 0.1), (3, 0.7), (4, 0.9)]:
            manager.save({"w": torch.zeros(1)}, step,
                         metrics={"val_loss": loss})
        assert manager.all_steps() == [2, 4]
        assert manager.checkpoints()[0]["metrics"] == {"val_loss": 0.1}


def test_checkpoint_interval_skips_steps(server):
    with ckpt.CheckpointManager(server, "t/interval",
                                checkpoint_interval=3) as manager:
        taken = [step for step in range(0, 10)
                 if manager.save({"step": step}, step)]
        assert taken == [0, 3, 6, 9]
        assert manager.all_steps() == [0, 3, 6, 9]
    # A new manager counts from the latest checkpoint on the server.
    with ckpt.CheckpointManager(server, "t/interval",
                                checkpoint_interval=3) as manager:
        assert not manager.save({"step": 10}, 10)
        assert manager.save({"step": 12}, 12)


@pytest.mark.parametrize("async_save", [False, True])
def test_failed_save_does_not_count_for_checkpoint_interval(server,
                                                           async_save):
    job = f"t/interval-fail-{async_save}"
    with ckpt.CheckpointManager(server, job, checkpoint_interval=3,
                                async_save=async_save) as manager:
        assert manager.save({"step": 0}, 0)
        manager.client.save_shard(job, 5, [("x", "uint8", [1], [0], [1],
                                            b"x")])
        with pytest.raises(ckpt.Error):  # ALREADY_EXISTS
            manager.save({"step": 5}, 5)
            manager.wait()
        assert manager.save({"step": 4}, 4)  # 4 >= 0 + 3


def test_rank_and_world_size(server):
    with ckpt.CheckpointManager(server, "t/ranks") as manager:
        assert (manager.rank, manager.world_size) == (0, 1)
    rank0 = ckpt.CheckpointManager(server, "t/ranks", rank=0, world_size=2)
    rank1 = ckpt.CheckpointManager(server, "t/ranks", rank=1, world_size=2)
    rank0.save({"mine": torch.zeros(2)}, 1)
    assert rank0.latest_step is None  # rank 1 has not saved yet
    rank1.save({"mine": torch.ones(3)}, 1)
    assert rank0.latest_step == 1
    assert torch.equal(rank0.restore()["mine"], torch.zeros(2))
    assert torch.equal(rank1.restore()["mine"], torch.ones(3))


def test_manager_errors(server):
    with pytest.raises(ValueError):
        ckpt.CheckpointManager(server, "t/err", max_to_keep=0).save({}, 1)
    with ckpt.CheckpointManager(server, "t/err") as manager:
        with pytest.raises(KeyError):
            manager.restore()
        manager.save({"a": 1}, 1)
        with pytest.raises(KeyError) as error:
            manager.restore(2)
        assert error.value.code == "NOT_FOUND"
        with pytest.raises(ckpt.Error) as error:
            manager.save({"a": 2}, 1)
        assert error.value.code == "ALREADY_EXISTS"
    with pytest.raises(ValueError, match="closed"):
        manager.save({}, 4)


def test_async_save_copies_state_and_surfaces_errors(server):
    with ckpt.CheckpointManager(server, "t/async",
                                async_save=True) as manager:
        weights = torch.zeros(1000)
        assert manager.save({"w": weights}, 1)
        weights += 1  # after save returns, the saved copy is unaffected
        manager.wait()
        assert torch.equal(manager.restore(1)["w"], torch.zeros(1000))
        assert manager.save({"w": weights}, 2)
        assert torch.equal(manager.restore(2)["w"], torch.ones(1000))

        manager.save({"w": weights}, 2)  # ALREADY_EXISTS, in the background
        with pytest.raises(ckpt.Error) as error:
            manager.wait()
        assert error.value.code == "ALREADY_EXISTS"
        manager.wait()  # reported once

        manager.save({"w": weights}, 2)
        with pytest.raises(ckpt.Error):  # surfaces on the next save
            manager.save({"w": weights}, 3)
        assert manager.save({"w": weights}, 3)
    # ... and on close.
    assert manager.all_steps() == [1, 2, 3]
    failing = ckpt.CheckpointManager(server, "t/async", async_save=True)
    failing.save({"w": weights}, 3)
    with pytest.raises(ckpt.Error):
        failing.close()


def test_async_save_reuses_host_copies_only_when_they_fit(server):
    with ckpt.CheckpointManager(server, "t/reuse",
                                async_save=True) as manager:
        states = [{"w": torch.full((100,), 1.0), "n": np.arange(4)},
                  {"w": torch.full((100,), 2.0), "n": np.arange(4) * 2},
                  {"w": torch.full((7,), 3.0), "n": np.arange(5)},
                  {"w": torch.full((7,), 4, dtype=torch.int64),
                   "n": np.arange(5, dtype=np.int8)}]
        for step, state in enumerate(states):
            manager.save(state, step)
        manager.wait()
        for step, state in enumerate(states):
            assert_same(state, manager.restore(step))
