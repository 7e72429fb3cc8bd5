"""restore(into=...) never writes silently wrong values through the
targets' memory: a meta tensor (no storage), a target whose elements
overlap (expand()), and targets that share memory (tied weights, views of
one buffer) but would receive different tensors are refused before
anything is written; tied targets of one saved tensor still restore."""

import numpy as np
import pytest
import torch

import ckpt
import raw_api


def test_a_meta_target_is_refused_not_left_empty(server):
    """Before: the restore 'succeeded' and the meta tensor held nothing."""
    job = "targets/meta"
    with ckpt.CheckpointManager(server, job) as manager:
        manager.save({"w": torch.arange(4.0)}, 1)
        with pytest.raises(ckpt.StateMismatchError) as error:
            manager.restore(into={"w": torch.empty(4, device="meta")})
        assert "'w': the target is on the meta device" in str(error.value)
    assert raw_api.restored_events(server, job) == []


@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_a_target_whose_elements_overlap_is_refused_before_any_write(
        server, kind):
    """Before (torch): copy_ raised halfway through, after 'a' had been
    written; (numpy) the rows were written over each other silently."""
    job = f"targets/expand-{kind}"
    with ckpt.CheckpointManager(server, job) as manager:
        manager.save({"a": torch.arange(4.0),
                      "w": torch.arange(12.0).reshape(4, 3)}, 1)
        if kind == "torch":
            a, w = torch.zeros(4), torch.zeros(3).expand(4, 3)
        else:
            a = np.zeros(4, np.float32)
            w = np.lib.stride_tricks.as_strided(
                np.zeros(3, np.float32), (4, 3), (0, 4), writeable=True)
        with pytest.raises(ckpt.StateMismatchError) as error:
            manager.restore(into={"a": a, "w": w})
        assert "'w': the target's elements overlap in memory" in \
            str(error.value)
        assert (a == 0).all() and (w == 0).all()
    assert raw_api.restored_events(server, job) == []


def test_one_tensor_at_two_keys_of_different_saved_tensors_is_refused(
        server):
    """Before: the tensor silently held 'b' and the result claimed 'a'
    was [10, 11, 12, 13]."""
    job = "targets/tied-differ"
    with ckpt.CheckpointManager(server, job) as manager:
        manager.save({"a": torch.arange(4.0), "b": torch.arange(4.0) + 10},
                     1)
        tied = torch.zeros(4)
        with pytest.raises(ckpt.StateMismatchError) as error:
            manager.restore(into={"a": tied, "b": tied})
        assert "'a' and 'b': the targets share memory" in str(error.value)
        assert (tied == 0).all()
    assert raw_api.restored_events(server, job) == []


def test_overlapping_views_of_one_buffer_are_refused(server):
    """Before: the buffer held a mix of 'a' and 'b', without a word."""
    with ckpt.CheckpointManager(server, "targets/views") as manager:
        manager.save({"a": torch.arange(4.0), "b": torch.arange(4.0) + 10},
                     1)
        buffer = torch.zeros(6)
        with pytest.raises(ckpt.StateMismatchError) as error:
            manager.restore(into={"a": buffer[0:4], "b": buffer[2:6]})
        assert "one would overwrite part of the other" in str(error.value)
        assert (buffer == 0).all()


def test_tied_and_interleaved_targets_that_agree_restore(server):
    """Not refused: a tied pair saved tied, a tied pair saved untied with
    equal bytes, and views of one buffer that do not share an element."""
    with ckpt.CheckpointManager(server, "targets/agree") as manager:
        shared = torch.arange(4.0)
        manager.save({"emb": shared, "head": shared,
                      "x": torch.arange(4.0), "y": torch.arange(4.0),
                      "even": torch.arange(3.0), "odd": -torch.arange(3.0)},
                     1)
        tied, copies, buffer = torch.zeros(4), torch.zeros(4), torch.zeros(6)
        manager.restore(into={"emb": tied, "head": tied, "x": copies,
                              "y": copies, "even": buffer[0::2],
                              "odd": buffer[1::2]})
        assert torch.equal(tied, torch.arange(4.0))
        assert torch.equal(copies, torch.arange(4.0))
        assert torch.equal(buffer, torch.tensor([0., -0., 1., -1., 2., -2.]))


def test_a_map_location_function_returning_none_keeps_the_tensor(server):
    """Before: a function returning None (torch.load's 'default place')
    gave None in place of the tensor, and a non-tensor went in silently;
    now None keeps the tensor, anything else is a TypeError before any
    target is written or a restore recorded."""
    job = "targets/map-none"
    with ckpt.CheckpointManager(server, job) as manager:
        manager.save({"w": torch.arange(3.0), "t": torch.ones(2)}, 1)
        state = manager.restore(map_location=lambda tensor, where: None)
        assert torch.equal(state["w"], torch.arange(3.0))
        target = torch.zeros(2)
        with pytest.raises(TypeError) as error:
            manager.restore(into={"t": target}, strict=False,
                            map_location=lambda tensor, where: "gpu")
        assert "map_location" in str(error.value)
        assert not target.any()
    assert len(raw_api.restored_events(server, job)) == 1


def test_a_module_with_tied_weights_restores_into_its_state_dict(server):
    """state_dict() gives a tied weight under two keys as two tensors of
    one storage: not refused as targets sharing memory."""
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(10, 4)
            self.head = torch.nn.Linear(4, 10, bias=False)
            self.head.weight = self.emb.weight

    torch.manual_seed(0)
    saved, restored = Tied(), Tied()
    with ckpt.CheckpointManager(server, "targets/tied-module") as manager:
        manager.save({"model": saved.state_dict()}, 1)
        manager.restore(into={"model": restored.state_dict()})
        assert torch.equal(restored.emb.weight, saved.emb.weight)
        assert restored.head.weight is restored.emb.weight
