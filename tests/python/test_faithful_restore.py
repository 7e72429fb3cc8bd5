"""restore(into=...) writes into the caller's tensors exactly or refuses
(strict, dtypes never converted), strict=False, map_location, best=, and
the restore history (a refused restore records nothing)."""

import numpy as np
import pytest
import torch

import ckpt
import raw_api


def model(hidden=16):
    torch.manual_seed(hidden)
    return torch.nn.Sequential(torch.nn.Linear(8, hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, 1))


def unchanged(tensors):
    """A check that `tensors` (a state_dict) still hold their values."""
    before = {name: value.clone() for name, value in tensors.items()}
    return lambda: all(torch.equal(tensors[name], value)
                       for name, value in before.items())


def test_a_shape_mismatch_is_an_error_and_leaves_the_model_unchanged(
        server):
    """Defect of issue 14: a model of other shapes got new tensors back and
    stayed unchanged, without a word."""
    with ckpt.CheckpointManager(server, "faithful/shape") as manager:
        manager.save({"model": model(16).state_dict()}, 1)
        target = model(32)
        check = unchanged(target.state_dict())
        with pytest.raises(ValueError) as error:
            manager.restore(into={"model": target.state_dict()})
        assert "'model/0.weight': shape: the checkpoint has [16, 8], the " \
            "target [32, 8]" in str(error.value)
        assert "nothing was written" in str(error.value)
        assert check()


@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_a_dtype_mismatch_is_an_error_never_a_conversion(server, kind):
    """Defect of issue 14: a float32 target came back as float64."""
    saved = {"w": torch.arange(6, dtype=torch.float64),
             "b": torch.ones(2, dtype=torch.float64)}
    with ckpt.CheckpointManager(server, f"faithful/dtype-{kind}") as manager:
        manager.save(saved, 1)
        targets = {"w": torch.full((6,), 9.0), "b": torch.zeros(2)}
        if kind == "numpy":
            targets = {name: value.numpy() for name, value in targets.items()}
        with pytest.raises(ValueError) as error:
            manager.restore(into=targets)
        assert "'w': dtype: the checkpoint has float64" in str(error.value)
        assert (targets["w"] == 9.0).all() and (targets["b"] == 0).all()
        # Without a target the saved dtype comes back.
        assert manager.restore()["w"].dtype == torch.float64


def test_strict_restore_writes_in_place(server):
    source = model(16)
    with ckpt.CheckpointManager(server, "faithful/in-place") as manager:
        manager.save({"model": source.state_dict(), "step": 5}, 1)
        target = model(16)
        params = dict(target.named_parameters())
        state = manager.restore(into={"model": target.state_dict()})
        assert state["step"] == 5
        for name, value in source.state_dict().items():
            assert torch.equal(target.state_dict()[name], value)
            # The very tensors of the model, in place.
            assert state["model"][name].data_ptr() == \
                params[name].data_ptr()
        assert manager.last_restore["missing_keys"] == []
        assert manager.last_restore["unexpected_keys"] == []


def test_missing_and_unexpected_keys(server):
    with ckpt.CheckpointManager(server, "faithful/keys") as manager:
        manager.save({"a": torch.ones(2), "b": torch.ones(3)}, 1)
        a, c = torch.zeros(2), torch.zeros(4)
        with pytest.raises(ckpt.StateMismatchError) as error:
            manager.restore(into={"a": a, "c": c})
        assert error.value.missing_keys == ["c"]
        assert error.value.unexpected_keys == ["b"]
        assert "strict=False" in str(error.value)
        assert torch.equal(a, torch.zeros(2))
        # strict=False fills what matches, as load_state_dict does, and
        # returns the checkpoint's other tensors as new ones.
        state = manager.restore(into={"a": a, "c": c}, strict=False)
        assert state["a"] is a and torch.equal(a, torch.ones(2))
        assert torch.equal(state["b"], torch.ones(3)) and "c" not in state
        assert manager.last_restore["missing_keys"] == ["c"]
        assert manager.last_restore["unexpected_keys"] == ["b"]
        # Shape and dtype mismatches stay errors with strict=False.
        with pytest.raises(ckpt.StateMismatchError, match="'b': shape"):
            manager.restore(into={"b": torch.zeros(4)}, strict=False)


def test_targets_of_every_kind(server):
    saved = {"bf16": torch.randn(3, 4).to(torch.bfloat16),
             "c64": torch.randn(5, dtype=torch.complex64),
             "bool": torch.tensor([True, False, True]),
             "np_u16": np.arange(6, dtype=np.uint16),
             "t": torch.randn(4, 6),
             "tied": torch.arange(4.0)}
    saved["tied_again"] = saved["tied"]
    with ckpt.CheckpointManager(server, "faithful/kinds") as manager:
        manager.save(saved, 1)
        targets = {"bf16": torch.zeros(3, 4, dtype=torch.bfloat16),
                   "c64": torch.zeros(5, dtype=torch.complex64),
                   "bool": torch.zeros(3, dtype=torch.bool),
                   "np_u16": np.zeros(6, dtype=np.uint16),
                   # Not contiguous: read into a host buffer, then copied.
                   "t": torch.zeros(6, 4).t(),
                   "tied": torch.zeros(4), "tied_again": torch.zeros(4)}
        state = manager.restore(into=targets)
    for name, value in saved.items():
        assert state[name] is targets[name], name
        if isinstance(value, np.ndarray):
            assert targets[name].dtype == value.dtype
            assert (targets[name] == value).all()
        else:
            assert targets[name].dtype == value.dtype
            assert torch.equal(targets[name], value), name


def test_read_only_and_non_tensor_targets_are_refused(server):
    with ckpt.CheckpointManager(server, "faithful/read-only") as manager:
        manager.save({"w": np.arange(3.0), "x": torch.ones(2)}, 1)
        frozen = np.zeros(3)
        frozen.flags.writeable = False
        with pytest.raises(ckpt.StateMismatchError, match="'w': the target "
                           "numpy array is read-only"):
            manager.restore(into={"w": frozen, "x": torch.zeros(2)})
        with pytest.raises(ckpt.StateMismatchError,
                           match="'x': the target is a str, not a tensor"):
            manager.restore(into={"w": np.zeros(3),
                                  "x": ckpt.Replicated("no")})


def test_map_location_places_restored_tensors(server):
    with ckpt.CheckpointManager(server, "faithful/map") as manager:
        manager.save({"w": torch.ones(3), "n": np.ones(2), "k": 1}, 1)
        for location in ("meta", torch.device("meta"), {"cpu": "meta"}):
            state = manager.restore(map_location=location)
            assert state["w"].device.type == "meta", location
            assert isinstance(state["n"], np.ndarray)  # numpy stays
        seen = []

        def place(tensor, location):
            seen.append(location)
            return tensor * 2

        state = manager.restore(map_location=place)
        assert seen == ["cpu"] and torch.equal(state["w"], torch.full((3,),
                                                                      2.0))
        # Targets stay where they are.
        target = torch.zeros(3)
        state = manager.restore(into={"w": target, "n": np.zeros(2)},
                                map_location="meta")
        assert state["w"] is target and torch.equal(target, torch.ones(3))
        with pytest.raises(RuntimeError):
            manager.restore(map_location="no-such-device")


def test_restore_best_by_metric(server):
    with ckpt.CheckpointManager(server, "faithful/best") as manager:
        for step, loss in [(1, 0.9), (2, 0.3), (3, 0.5)]:
            manager.save({"step": step}, step, metrics={"val_loss": loss})
        assert manager.restore(best="val_loss") == {"step": 2}
        assert manager.last_restore["step"] == 2
        assert manager.restore(best="val_loss", mode="max") == {"step": 1}
        with pytest.raises(ValueError, match="step or best"):
            manager.restore(1, best="val_loss")


def test_only_a_successful_restore_is_recorded(server):
    job = "faithful/events"
    with ckpt.CheckpointManager(server, job) as manager:
        manager.save({"w": torch.ones(2)}, 1)
        with pytest.raises(ckpt.StateMismatchError):
            manager.restore(into={"w": torch.ones(3)})
        with pytest.raises(KeyError):
            manager.restore(keys=["nothing"])
        assert raw_api.restored_events(server, job) == []
        manager.restore()
        [(step, detail)] = raw_api.restored_events(server, job)
        assert step == 1 and "0" in detail


def test_careless_arguments_are_refused_clearly(server):
    with ckpt.CheckpointManager(server, "faithful/careless") as manager:
        manager.save({"model": model(4).state_dict()}, 1)
        with pytest.raises(TypeError, match="into must be a state .* not a "
                           "Sequential"):
            manager.restore(into=model(4))
        with pytest.raises(ValueError, match="keys=\\[\\] selects nothing"):
            manager.restore(keys=[])
        with pytest.raises(TypeError, match="keys must be a list"):
            manager.restore(keys=3)
        with pytest.raises(TypeError, match="strict must be True or False"):
            manager.restore(strict="no")
        with pytest.raises(TypeError, match="step must be an integer"):
            manager.restore(True)
        # restore_or_initialize takes restore's arguments.
        target = model(4).state_dict()
        state = manager.restore_or_initialize(lambda: None,
                                              into={"model": target})
        assert state["model"]["0.weight"] is target["0.weight"]
        client = manager.client
        with pytest.raises(TypeError, match="requests\\[0\\] must be"):
            client.restore_regions(client.get_manifest("faithful/careless"),
                                   [("w", "float32")])
        with pytest.raises(ValueError, match="manifest: needs a ckpt "
                           "Manifest"):
            client.restore_regions("not a manifest", [])
        with pytest.raises(TypeError, match="step must be an integer"):
            client.get_manifest("faithful/careless", "latest")
