"""CheckpointManager(incremental=True): row deltas of embedding tables."""

import numpy as np
import pytest
import torch

import ckpt

ROWS, DIM = 5000, 32


class Recommender:
    """An embedding table trained on a few rows per step, with a dense
    Adam (every touched row's state keeps changing) or SparseAdam (only the
    rows of the step's batch change)."""

    def __init__(self, sparse, seed=0):
        torch.manual_seed(seed)
        self.embedding = torch.nn.Embedding(ROWS, DIM, sparse=sparse)
        self.head = torch.nn.Linear(DIM, 1)
        params = list(self.embedding.parameters())
        if sparse:
            self.optimizer = torch.optim.SparseAdam(params, lr=0.01)
            self.head_optimizer = torch.optim.Adam(self.head.parameters())
        else:
            self.optimizer = torch.optim.Adam(
                params + list(self.head.parameters()), lr=0.01)
            self.head_optimizer = None
        self.generator = torch.Generator().manual_seed(seed + 1)

    def train_step(self, batch=40):
        """One step; returns the embedding rows it changed."""
        rows = torch.randint(0, ROWS, (batch,), generator=self.generator)
        loss = self.head(self.embedding(rows)).pow(2).mean()
        self.optimizer.zero_grad()
        if self.head_optimizer is not None:
            self.head_optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if self.head_optimizer is not None:
            self.head_optimizer.step()
        return rows.unique()

    def state(self):
        state = {"model": {"embedding.weight": self.embedding.weight,
                           "head.weight": self.head.weight,
                           "head.bias": self.head.bias},
                 "optimizer": self.optimizer.state_dict()}
        if self.head_optimizer is not None:
            state["head_optimizer"] = self.head_optimizer.state_dict()
        return state


def snapshot(state):
    """Every tensor of a nested state, cloned, by path."""
    out = {}

    def walk(node, path):
        if isinstance(node, torch.Tensor):
            out[path] = node.detach().clone()
        elif isinstance(node, dict):
            for key, item in node.items():
                walk(item, f"{path}/{key}")
        elif isinstance(node, (list, tuple)):
            for i, item in enumerate(node):
                walk(item, f"{path}/{i}")

    walk(state, "")
    return out


def assert_identical(restored, expected):
    got = snapshot(restored)
    assert got.keys() == expected.keys()
    for path, tensor in expected.items():
        assert got[path].dtype == tensor.dtype, path
        assert torch.equal(got[path], tensor), path


def kinds(plan):
    return {name: kind for name, kind, _, _, _ in plan}


def test_embedding_and_adam_restore_bit_identical_at_every_step(server):
    model = Recommender(sparse=False)
    snapshots = {}
    with ckpt.CheckpointManager(server, "py/incremental",
                                incremental=True) as manager:
        for step in range(1, 7):
            model.train_step()
            manager.save(model.state(), step)
            snapshots[step] = snapshot(model.state())
            plan = kinds(manager.last_plan)
            if step == 1:
                assert set(plan.values()) == {"full"}
            else:
                # 40 of 5000 rows a step: the table is a delta; 1-D tensors
                # and the state tree are always full.
                assert plan["model/embedding.weight"] == "delta"
                assert plan["model/head.bias"] == "full"
        for step in snapshots:
            assert_identical(manager.restore(step), snapshots[step])
    # Restoring into live objects works through deltas too (the fresh
    # optimizer has no state yet: only the model is restored into).
    fresh = Recommender(sparse=False, seed=99)
    with ckpt.CheckpointManager(server, "py/incremental") as reader:
        reader.restore(into={"model": fresh.state()["model"]},
                       keys=["model"])
    assert torch.equal(fresh.embedding.weight, model.embedding.weight)


def test_dirty_rows_restore_the_same_as_fingerprints(server):
    dirty_model = Recommender(sparse=True)
    hashed_model = Recommender(sparse=True)
    snapshots = {}
    with ckpt.CheckpointManager(server, "py/dirty", incremental=True) as a, \
            ckpt.CheckpointManager(server, "py/hashed",
                                   incremental=True) as b:
        for step in range(1, 6):
            rows = dirty_model.train_step()
            assert torch.equal(hashed_model.train_step(), rows)
            # Both the dotted state path and the manager's own name work.
            a.save(dirty_model.state(), step, dirty_rows={
                "model.embedding.weight": rows,
                "optimizer/state/0/exp_avg": rows.numpy(),
                "optimizer/state/0/exp_avg_sq": rows.tolist()})
            b.save(hashed_model.state(), step)
            snapshots[step] = snapshot(dirty_model.state())
            if step > 1:
                for manager in (a, b):
                    plan = kinds(manager.last_plan)
                    assert plan["model/embedding.weight"] == "delta"
                    assert plan["optimizer/state/0/exp_avg"] == "delta"
        for step, expected in snapshots.items():
            assert_identical(a.restore(step), expected)
            assert_identical(b.restore(step), expected)


def test_dirty_rows_need_incremental_and_known_names(server):
    model = Recommender(sparse=False)
    with ckpt.CheckpointManager(server, "py/plain") as manager:
        with pytest.raises(ValueError, match="incremental=True"):
            manager.save(model.state(), 1,
                         dirty_rows={"model/embedding.weight": [0]})
    with ckpt.CheckpointManager(server, "py/names",
                                incremental=True) as manager:
        with pytest.raises(ValueError, match="no tensor"):
            manager.save(model.state(), 1, dirty_rows={"nope": [0]})
        with pytest.raises(ValueError, match="1-D"):
            manager.save(model.state(), 1,
                         dirty_rows={"model/embedding.weight": [[0]]})
        with pytest.raises(ValueError):
            manager.save(model.state(), 1,
                         dirty_rows={"model/embedding.weight": [ROWS]})
        with pytest.raises(ValueError, match="negative row index -1"):
            manager.save(model.state(), 1,
                         dirty_rows={"model/embedding.weight": [3, -1]})
        # A refused save leaves the manager usable.
        assert manager.save(model.state(), 1)
    with pytest.raises(ValueError, match="delta_mode"):
        ckpt.CheckpointManager(server, "py/names", incremental=True,
                               delta_mode="sideways")


def test_async_incremental_saves_restore_bit_identical(server):
    model = Recommender(sparse=True)
    snapshots = {}
    with ckpt.CheckpointManager(server, "py/async", incremental=True,
                                async_save=True, delta_mode="consecutive",
                                max_chain_length=3) as manager:
        for step in range(1, 9):
            rows = model.train_step()
            dirty = {"model/embedding.weight": rows} if step % 2 else None
            manager.save(model.state(), step, dirty_rows=dirty)
            # The host copy was taken: training on does not change it.
            snapshots[step] = snapshot(model.state())
            if step > 1:
                # The previous save finished (save() joined it). Saves from
                # dirty rows (odd steps) keep the fingerprints up to date
                # too, so every save after the first is a delta, with or
                # without dirty rows, until the chain is max_chain_length
                # (3) long: steps 1 and 5 are baselines.
                previous = kinds(manager.last_plan)
                expected = "full" if step - 1 in (1, 5) else "delta"
                assert previous["model/embedding.weight"] == expected, step
        manager.wait()
        for step, expected in snapshots.items():
            assert_identical(manager.restore(step), expected)
        plan = kinds(manager.last_plan)
        assert plan["model/head.bias"] == "full"
    checkpoints = ckpt.Client(server).list_checkpoints("py/async")
    assert [record["step"] for record in checkpoints] == list(range(1, 9))


def test_a_restore_seeds_the_next_save_unless_only_some_keys_came_back(server):
    model = Recommender(sparse=False)
    with ckpt.CheckpointManager(server, "py/seed-keys",
                                incremental=True) as manager:
        model.train_step()
        manager.save(model.state(), 1)
    # A new manager (a restarted job): a whole restore seeds the saver, so
    # the next save is a delta on step 1.
    with ckpt.CheckpointManager(server, "py/seed-keys",
                                incremental=True) as manager:
        manager.restore()
        seeded = {name: (ok, how) for name, ok, how
                  in manager.last_restore["incremental_seed"]["tensors"]}
        assert seeded["model/embedding.weight"] == (True,
                                                    "stored fingerprints")
        model.train_step()
        manager.save(model.state(), 2)
        assert kinds(manager.last_plan)["model/embedding.weight"] == "delta"
    # restore(keys=...) brings back part of the state: nothing is assumed,
    # the report says why, and the next save is full.
    with ckpt.CheckpointManager(server, "py/seed-keys",
                                incremental=True) as manager:
        manager.restore(keys=["model"])
        seed = manager.last_restore["incremental_seed"]
        assert seed["tensors"] == [] and "keys" in seed["error"]
        model.train_step()
        manager.save(model.state(), 3)
        assert kinds(manager.last_plan)["model/embedding.weight"] == "full"
    with ckpt.CheckpointManager(server, "py/seed-keys") as reader:
        assert_identical(reader.restore(3), snapshot(model.state()))
