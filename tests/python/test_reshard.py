"""Sharded saves (ckpt.Shard, ckpt.Replicated) and restores with another
world size, in one process: several CheckpointManagers with rank= and
world_size= stand for the ranks of a job, against a real server."""

import numpy as np
import pytest
import torch

import ckpt
from ckpt.state_layout import STATE_TENSOR

CHUNK = 4 << 20  # the manager's chunk size (client/types.h)


def managers(client, job, world_size, **kwargs):
    return [ckpt.CheckpointManager(client, job, rank=rank,
                                   world_size=world_size, **kwargs)
            for rank in range(world_size)]


def splits(size, parts):
    """(start, length) of `parts` uneven contiguous pieces of `size`."""
    bounds = [size * part // parts for part in range(parts + 1)]
    return [(bounds[i], bounds[i + 1] - bounds[i]) for i in range(parts)]


def save_sharded(client, job, step, full, world_size, dim, extra=None):
    """Each of `world_size` ranks saves its slice of `full` along `dim`
    as ckpt.Shard, plus extra(rank) merged into its state."""
    for manager, (start, length) in zip(
            managers(client, job, world_size),
            splits(full.shape[dim], world_size)):
        offsets = [0] * full.dim()
        offsets[dim] = start
        local = full.narrow(dim, start, length).clone()
        state = {"table": ckpt.Shard(local, full.shape, offsets)}
        state.update(extra(manager.rank) if extra else {})
        assert manager.save(state, step)


def global_tensor(*shape, dtype=torch.float32):
    count = int(np.prod(shape))
    return torch.arange(count, dtype=torch.float64).reshape(shape).to(dtype)


@pytest.mark.parametrize("saved,restored", [(2, 1), (2, 3), (3, 2), (4, 3),
                                            (1, 4), (3, 3)])
@pytest.mark.parametrize("dim", [0, 1])
def test_any_n_to_m_restores_each_ranks_region(client, saved, restored, dim):
    job = f"shard/n{saved}m{restored}d{dim}"
    full = global_tensor(10, 7)
    save_sharded(client, job, 1, full, saved, dim)
    for manager, (start, length) in zip(managers(client, job, restored),
                                        splits(full.shape[dim], restored)):
        shape = list(full.shape)
        shape[dim] = length
        offsets = [0, 0]
        offsets[dim] = start
        local = torch.full(shape, -1.0)
        state = manager.restore(
            into={"table": ckpt.Shard(local, full.shape, offsets)})
        assert state["table"] is local
        assert torch.equal(local, full.narrow(dim, start, length))
        assert manager.last_restore["world_size"] == saved
        # No target: the whole global tensor, assembled from every box.
        whole = manager.restore()["table"]
        assert whole.dtype == torch.float32 and torch.equal(whole, full)


def test_two_dimensional_boxes_restore_any_region(client):
    job = "shard/grid"
    full = global_tensor(6, 8, dtype=torch.int64)
    boxes = [((0, 0), (4, 5)), ((0, 5), (4, 3)), ((4, 0), (2, 8))]
    for manager, (offsets, lengths) in zip(managers(client, job, 3), boxes):
        local = full[offsets[0]:offsets[0] + lengths[0],
                     offsets[1]:offsets[1] + lengths[1]].clone()
        manager.save({"grid": ckpt.Shard(local, (6, 8), offsets)}, 1)
    [reader] = managers(client, job, 1)
    for offsets, lengths in [((1, 2), (4, 5)), ((3, 4), (3, 4)),
                             ((0, 0), (6, 8)), ((5, 7), (1, 1))]:
        local = torch.zeros(lengths, dtype=torch.int64)
        reader.restore(into={"grid": ckpt.Shard(local, (6, 8), offsets)})
        assert torch.equal(local, full[offsets[0]:offsets[0] + lengths[0],
                                       offsets[1]:offsets[1] + lengths[1]])
    assert torch.equal(reader.restore()["grid"], full)


def plain_per_rank_state(rank):
    return {"loader": {"position": 1000 + rank, "seed": 7},
            "rng": torch.full((4,), float(rank)),
            "config": {"lr": 0.1, "name": "run"},
            "same": torch.arange(3)}


def per_rank_state(rank):
    return dict(plain_per_rank_state(rank),
                bias=ckpt.Replicated(torch.linspace(0, 1, 5)))


def test_same_world_size_gives_each_rank_its_own_state(client):
    job = "shard/own"
    save_sharded(client, job, 1, global_tensor(4, 2), 2, 0, per_rank_state)
    for manager in managers(client, job, 2):
        state = manager.restore()
        assert state["loader"]["position"] == 1000 + manager.rank
        assert torch.equal(state["rng"], torch.full((4,), float(manager.rank)))
        assert torch.equal(state["bias"], torch.linspace(0, 1, 5))
        assert manager.last_restore["unmapped"] == []


def test_fewer_ranks_refuse_to_drop_per_rank_state(client):
    """Defect of issue 14: a 1-rank job restoring a checkpoint of 2 ranks
    silently got rank 0's state only. (Plain tensors and values only, so
    that the test runs on the code before ckpt.Shard too.)"""
    job = "shard/shrink"
    for manager in managers(client, job, 2):
        manager.save(plain_per_rank_state(manager.rank), 1)
    [single] = managers(client, job, 1)
    with pytest.raises(ValueError) as error:
        single.restore()
    message = str(error.value)
    assert "(1, 'loader/position')" in message and "(1, 'rng')" in message
    assert "allow_partial_ranks=True" in message
    # Values every rank saved alike are not per-rank.
    for key in ("config", "same", "loader/seed"):
        assert f"'{key}'" not in message


def test_allow_partial_ranks_restores_what_maps_and_lists_the_rest(client):
    job = "shard/partial"
    full = global_tensor(6, 3)
    save_sharded(client, job, 1, full, 2, 0, per_rank_state)
    [single] = managers(client, job, 1)
    state = single.restore(allow_partial_ranks=True)
    assert single.last_restore["unmapped"] == [(1, "loader/position"),
                                               (1, "rng")]
    assert state["loader"] == {"position": 1000, "seed": 7}
    assert torch.equal(state["rng"], torch.zeros(4))
    assert torch.equal(state["table"], full)
    # Growing: the new rank gets what every rank saved alike, and none of
    # the per-rank values; the old ranks get theirs.
    grown = managers(client, job, 3)
    with pytest.raises(ckpt.PartialRestoreError) as error:
        grown[2].restore()
    assert error.value.unmapped == [(2, "loader/position"), (2, "rng")]
    new = grown[2].restore(allow_partial_ranks=True)
    assert new["loader"] == {"seed": 7} and "rng" not in new
    assert new["config"] == {"lr": 0.1, "name": "run"}
    assert torch.equal(new["bias"], torch.linspace(0, 1, 5))
    assert torch.equal(new["same"], torch.arange(3))
    assert torch.equal(new["table"], full)
    # Rank 1 loses nothing, yet refuses too: every rank of the job gets the
    # same verdict, so none goes on into a collective without the others.
    with pytest.raises(ckpt.PartialRestoreError) as error:
        grown[1].restore()
    assert error.value.unmapped == [(2, "loader/position"), (2, "rng")]
    old = grown[1].restore(allow_partial_ranks=True)
    assert old["loader"]["position"] == 1001
    assert grown[1].last_restore["unmapped"] == [(2, "loader/position"),
                                                 (2, "rng")]


def test_replicated_copies_that_differ_are_refused(client):
    job = "shard/replicated-differ"
    for manager in managers(client, job, 2):
        manager.save({"w": ckpt.Replicated(torch.full((3,),
                                                      float(manager.rank)))},
                     1)
    for restorer in managers(client, job, 2) + managers(client, job, 1):
        with pytest.raises(ckpt.StateFormatError,
                           match="replicated tensor 'w' differs between "
                           "ranks"):
            restorer.restore()


def test_equal_deltas_on_different_bases_are_not_one_replicated_tensor(
        client):
    """Two ranks hold a ckpt.Replicated table that differs in one row, so
    step 1 is refused. At step 2 both change another row alike: their row
    deltas are the same chunks on the same base step, but the bases differ,
    so the tensors do too. Every restore of step 2 is refused as well, with
    StateFormatError, whether the world size is the same (each rank would
    read its own copy), smaller (rank 0's copy for all) or larger (the new
    rank's read would be refused by the region planner, as a ValueError)."""
    job = "shard/replicated-delta-bases"
    tables = [torch.zeros(512, 16) for _ in range(2)]
    tables[1][5] += 1.0
    savers = managers(client, job, 2, incremental=True)
    for step in (1, 2):
        if step == 2:
            for table in tables:
                table[0] += 2.0
        for manager, table in zip(savers, tables):
            manager.save({"w": ckpt.Replicated(table)}, step)
            kind = {name: kind for name, kind, *_ in manager.last_plan}["w"]
            assert kind == ("delta" if step == 2 else "full"), (step, kind)
    # The deltas themselves are equal: only their bases tell them apart.
    entries = client.get_manifest(job, 2).entries_named("w")
    assert [rank for rank, _ in entries] == [0, 1]
    assert entries[0][1] == entries[1][1]
    for world_size in (2, 1, 3):
        for restorer in managers(client, job, world_size):
            with pytest.raises(
                    ckpt.StateFormatError,
                    match=r"the replicated tensor 'w' differs between ranks "
                    r"(0 and 1|1 and 0) \(its chunks, delta chain or "
                    r"quantization\)"):
                restorer.restore(2)
    for manager in savers:
        manager.close()


def test_shard_save_checks_the_box_and_names_the_key(client):
    [manager] = managers(client, "shard/bad-box", 1)
    for shard, words in [
            (ckpt.Shard(torch.zeros(3, 2), (4, 2), (2, 0)),
             "does not fit in the global shape [4, 2] (dimension 0)"),
            (ckpt.Shard(torch.zeros(3, 2), (4,), (0,)),
             "has 2 dimensions"),
            (ckpt.Shard(torch.zeros(3), (4,), (-1,)),
             "does not fit"),
            (ckpt.Shard("text", (4,), (0,)), "holds a str")]:
        with pytest.raises(ValueError, match="state\\['model'\\]\\['w'\\]"
                           ) as error:
            manager.save({"model": {"w": shard}}, 1)
        assert words in str(error.value)
    with pytest.raises(TypeError, match="global_shape"):
        ckpt.Shard(torch.zeros(2), 4, (0,))
    assert manager.latest_step is None


def test_shards_that_leave_a_gap_are_refused_at_commit(client):
    """Ranks that do not tile the global shape (rank 1 saved nothing of it:
    a job that forgot a shard) cannot commit: no restore could give the
    rows nobody saved."""
    job = "shard/gap"
    full = global_tensor(4, 2)
    [rank0, rank1] = managers(client, job, 2)
    rank0.save({"t": ckpt.Shard(full[:2].clone(), (4, 2), (0, 0))}, 1)
    with pytest.raises(ValueError, match="tensor 't' .* uncovered"):
        rank1.save({}, 1)
    assert rank0.latest_step is None


def test_a_rank_fetches_only_the_chunks_of_its_region(client):
    """4 ranks save 8 MiB of rows each (two 4 MiB chunks); each of 3 ranks
    restoring its region fetches exactly the chunks overlapping it, plus
    the state trees."""
    job = "shard/bytes"
    rows, cols = 4 * 2048, 1024  # float32: 32 MiB, 4 KiB a row
    full = torch.randn(rows, cols, generator=torch.Generator().manual_seed(3))
    save_sharded(client, job, 1, full, 4, 0)
    manifest = client.get_manifest(job)
    trees = {entry[5] for rank in manifest.ranks
             for entry in manifest.entries(rank) if entry[0] == STATE_TENSOR}
    tree_bytes = sum(entry[4][0] for rank in manifest.ranks
                     for entry in manifest.entries(rank)
                     if entry[0] == STATE_TENSOR)
    row_bytes = cols * 4
    chunk_starts = [box * 8 * (1 << 20) + chunk * CHUNK
                    for box in range(4) for chunk in range(2)]
    for manager, (start, length) in zip(managers(client, job, 3),
                                        splits(rows, 3)):
        local = torch.empty(length, cols)
        manager.restore(into={"table": ckpt.Shard(local, (rows, cols),
                                                  (start, 0))})
        assert torch.equal(local, full[start:start + length])
        first, end = start * row_bytes, (start + length) * row_bytes
        overlapping = [c for c in chunk_starts
                       if c < end and c + CHUNK > first]
        report = manager.last_restore
        assert report["chunks_fetched"] == len(trees) + len(overlapping)
        assert report["bytes_used"] == length * row_bytes + tree_bytes
        assert report["bytes_fetched"] <= len(overlapping) * CHUNK + \
            tree_bytes
        assert report["bytes_fetched"] >= length * row_bytes


def test_keys_read_only_the_entries_asked_for(client):
    job = "shard/keys"
    big = torch.randn(1024, 1024)  # 4 MiB
    state = {"model": {"w": torch.ones(4), "b": torch.zeros(2)},
             "optimizer": {"state": {"m": big}, "lr": 0.5,
                           "groups": [{"lr": 0.1}]}, "step": 3}
    [manager] = managers(client, job, 1)
    manager.save(state, 1)
    restored = manager.restore(keys=["model"])
    assert list(restored) == ["model"]
    assert torch.equal(restored["model"]["w"], torch.ones(4))
    assert manager.last_restore["bytes_fetched"] < 64 << 10
    restored = manager.restore(keys=["optimizer/lr", "step"])
    assert restored == {"optimizer": {"lr": 0.5}, "step": 3}
    # A key reaching into a list selects the whole list.
    assert manager.restore(keys=["optimizer/groups/0/lr"]) == {
        "optimizer": {"groups": [{"lr": 0.1}]}}
    restored = manager.restore(keys="optimizer/state/m")
    assert torch.equal(restored["optimizer"]["state"]["m"], big)
    assert manager.last_restore["bytes_fetched"] >= big.numel() * 4
    with pytest.raises(KeyError, match="'modle'"):
        manager.restore(keys=["modle"])
    # An index the list does not have names nothing, as a mistyped key.
    for missing in ("optimizer/groups/1/lr", "optimizer/groups/x"):
        with pytest.raises(KeyError, match=missing):
            manager.restore(keys=[missing])
    with pytest.raises(TypeError, match="keys must be strings"):
        manager.restore(keys=[1])


def test_row_sharded_table_with_deltas_and_quantized_shards(client):
    """An embedding table row-sharded over 2 ranks, saved incrementally
    (row deltas of each rank's box) and a quantized sharded tensor, both
    restored by 3 ranks."""
    job = "shard/deltas"
    generator = torch.Generator().manual_seed(5)
    table = torch.randn(300, 16, generator=generator)
    quantized = torch.randn(64, 32, generator=generator)
    savers = managers(client, job, 2, incremental=True)
    snapshots = {}
    for step in range(1, 4):
        touched = torch.randint(0, 300, (5,), generator=generator)
        table[touched] += 1.0
        snapshots[step] = table.clone()
        for manager, (start, length) in zip(savers, splits(300, 2)):
            q_start, q_length = splits(64, 2)[manager.rank]
            manager.save({
                "emb": ckpt.Shard(table[start:start + length].clone(),
                                  table.shape, (start, 0)),
                "q": ckpt.Shard(ckpt.Quantized(
                    quantized[q_start:q_start + q_length].clone(), bits=8),
                    quantized.shape, (q_start, 0))}, step)
        if step > 1:
            assert dict((name, kind) for name, kind, *_ in
                        savers[0].last_plan)["emb"] == "delta"
    for step, expected in snapshots.items():
        for manager, (start, length) in zip(managers(client, job, 3),
                                            splits(300, 3)):
            local = torch.empty(length, 16)
            q_local = torch.empty(20, 32)
            state = manager.restore(step, into={
                "emb": ckpt.Shard(local, (300, 16), (start, 0)),
                "q": ckpt.Shard(q_local, (64, 32), (10 * manager.rank, 0))})
            assert torch.equal(local, expected[start:start + length])
            original = quantized[10 * manager.rank:10 * manager.rank + 20]
            assert (q_local - original).abs().max() < 0.05
            assert state["q"] is q_local


def test_parameters_that_require_grad_are_restored_in_place(client):
    [manager] = managers(client, "shard/params", 1)
    source = torch.nn.Linear(4, 3)
    manager.save({"w": source.weight, "b": source.bias}, 1)
    target = torch.nn.Linear(4, 3)
    # The bias through a host buffer: a non-contiguous view of a parameter.
    wide = torch.nn.Parameter(torch.zeros(3, 2))
    state = manager.restore(into={"w": target.weight, "b": wide[:, 0]})
    assert state["w"] is target.weight and target.weight.requires_grad
    assert torch.equal(target.weight, source.weight)
    assert torch.equal(wide[:, 0], source.bias)


def test_allow_partial_ranks_with_into_leaves_unmapped_targets_alone(client):
    """Before: a new rank restoring into a state that holds its own
    per-rank tensor was refused for that 'missing key', although
    allow_partial_ranks had accepted it as unmapped."""
    job = "shard/partial-into"
    full = global_tensor(6, 3)
    save_sharded(client, job, 1, full, 2, 0, per_rank_state)
    new_rank = managers(client, job, 3)[2]
    rng, table = torch.full((4,), 9.0), torch.zeros(2, 3)
    state = new_rank.restore(allow_partial_ranks=True, into={
        "rng": rng, "table": ckpt.Shard(table, (6, 3), (4, 0)),
        "bias": torch.zeros(5), "same": torch.zeros(3, dtype=torch.int64)})
    assert torch.equal(table, full[4:6]) and state["table"] is table
    assert torch.equal(rng, torch.full((4,), 9.0)) and "rng" not in state
    assert new_rank.last_restore["missing_keys"] == []
    assert (2, "rng") in new_rank.last_restore["unmapped"]
    # A target the checkpoint lacks altogether is still a missing key.
    with pytest.raises(ckpt.StateMismatchError) as error:
        new_rank.restore(allow_partial_ranks=True, into={
            "rng": rng, "table": ckpt.Shard(table, (6, 3), (4, 0)),
            "bias": torch.zeros(5), "same": torch.zeros(3, dtype=torch.int64),
            "extra": torch.zeros(1)})
    assert "missing keys" in str(error.value) and "'extra'" in str(
        error.value) and "'rng'" not in str(error.value)
