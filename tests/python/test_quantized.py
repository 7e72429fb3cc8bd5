"""ckpt.Quantized: opt-in lossy saves of float32 tensors."""

import numpy as np
import pytest
import torch

import ckpt


def trained_table(rows=2000, dim=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    table = torch.randn(rows, dim, generator=generator) * 0.05
    table[::53] *= 30  # a few outlier rows, as trained embeddings have
    return table


def check_within(original, restored, recorded):
    """restored is within the recorded error of original, and that error
    is the one measured here."""
    original = original.double()
    difference = restored.double() - original
    max_abs = difference.abs().max().item()
    relative_l2 = (difference.norm() / original.norm()).item()
    assert 0 < max_abs <= recorded["max_abs_error"]
    assert relative_l2 == pytest.approx(recorded["relative_l2_error"],
                                        rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("bits", [8, 4, 3, 2])
def test_quantized_restore_is_within_the_recorded_error(server, bits):
    table = trained_table()
    bias = torch.randn(32)
    numpy_table = trained_table(seed=1).numpy()
    with ckpt.CheckpointManager(server, f"py/q{bits}") as manager:
        manager.save({"emb": ckpt.Quantized(table, bits=bits),
                      "np": ckpt.Quantized(numpy_table, bits=bits),
                      "bias": bias, "step": 7}, step=1)
        recorded = manager.last_quantization
        assert set(recorded) == {"emb", "np"}
        assert recorded["emb"]["bits"] == bits
        state = manager.restore()
        # Plain float32 values come back, of the original shape.
        assert isinstance(state["emb"], torch.Tensor)
        assert state["emb"].dtype == torch.float32
        assert state["emb"].shape == table.shape
        check_within(table, state["emb"], recorded["emb"])
        assert isinstance(state["np"], np.ndarray)
        check_within(torch.from_numpy(numpy_table),
                     torch.from_numpy(state["np"]), recorded["np"])
        # Never applied to a tensor that did not ask for it.
        assert torch.equal(state["bias"], bias)
        assert state["step"] == 7
        # into= a state holding Quantized: restored into its tensor (the
        # other tensors are left out with keys=).
        target = torch.zeros_like(table)
        into = manager.restore(into={"emb": ckpt.Quantized(target, bits=bits)},
                               keys=["emb"])
        assert into == {"emb": target} and into["emb"] is target
        check_within(table, target, recorded["emb"])


def test_auto_bits_follow_expected_restores(server):
    table = trained_table(rows=500)
    assert ckpt.Quantized(table, bits="auto", expected_restores=1).bits == 4
    assert ckpt.Quantized(table, bits="auto", expected_restores=0).bits == 2
    assert ckpt.Quantized(table, bits="auto", expected_restores=100).bits == 8
    lossless = ckpt.Quantized(table, bits="auto", expected_restores=1e6)
    assert lossless.bits is None
    # Widths given as other numbers than int are plain ints after.
    assert type(ckpt.Quantized(table, bits=np.int64(4)).bits) is int
    assert type(ckpt.Quantized(table, bits=8.0).bits) is int
    with ckpt.CheckpointManager(server, "py/auto") as manager:
        manager.save({"emb": lossless}, step=1)
        assert manager.last_quantization == {}
        assert torch.equal(manager.restore()["emb"], table)
        manager.save({"emb": ckpt.Quantized(table, bits="auto",
                                            expected_restores=1)}, step=2)
        assert manager.last_quantization["emb"]["bits"] == 4


def test_bad_quantization_requests_are_refused(server):
    table = trained_table(rows=100)
    with pytest.raises(ValueError, match="bits must be"):
        ckpt.Quantized(table, bits=5)
    with pytest.raises(ValueError, match="needs expected_restores"):
        ckpt.Quantized(table, bits="auto")
    with pytest.raises(ValueError, match="expected_restores must be"):
        ckpt.Quantized(table, bits="auto", expected_restores=-1)
    with pytest.raises(ValueError, match='goes with bits="auto"'):
        ckpt.Quantized(table, bits=4, expected_restores=3)
    with ckpt.CheckpointManager(server, "py/bad") as manager:
        with pytest.raises(ValueError, match="only dense float32"):
            manager.save({"ids": ckpt.Quantized(torch.arange(10), bits=4)},
                         step=1)
        with pytest.raises(ValueError, match="not a torch tensor"):
            manager.save({"x": ckpt.Quantized([1.0, 2.0], bits=4)}, step=1)
        with pytest.raises(ValueError, match="only finite values"):
            manager.save({"emb": ckpt.Quantized(
                torch.tensor([[1.0, float("nan")]]), bits=4)}, step=1)
        assert manager.all_steps() == []


def test_incremental_manager_saves_quantized_tensors_in_full(server):
    table = trained_table(rows=3000)
    dense = trained_table(rows=3000, seed=2)
    with ckpt.CheckpointManager(server, "py/inc", incremental=True) as manager:
        for step in (1, 2):
            dense[step] += 1  # one changed row: a delta from step 2
            manager.save({"emb": ckpt.Quantized(table, bits=4),
                          "dense": dense}, step=step)
        plan = {name: (kind, reason)
                for name, kind, _, _, reason in manager.last_plan}
        assert plan["emb"] == ("full", "quantized: always full")
        assert plan["dense"][0] == "delta"
        state = manager.restore()
        assert torch.equal(state["dense"], dense)
        check_within(table, state["emb"], manager.last_quantization["emb"])
