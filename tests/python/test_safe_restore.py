"""Safe restore (issue 13): a state's non-tensor values are stored as a typed
tree that cannot run code when read, real PyTorch / numpy / Python states
round-trip exactly with their types, anything else is refused at save,
pickle is used only with allow_pickle=True, and a hostile `__ckpt_state__`
planted through the raw gRPC API is refused with a clear error: never
unpickled, never a crash, hang or silently wrong state."""

import collections
import math
import os
import pickle
import random
import struct
import time

import numpy as np
import pytest
import torch

import ckpt
import ckpt.state_layout
from ckpt import tree
from ckpt.state_layout import STATE_TENSOR, _TensorRef
import raw_api
from tree_bytes import encoded, ref, text, u32


def assert_identical(a, b, path="state"):
    """a and b are equal values of identical types all the way down: tuples
    stay tuples, ints ints, floats bit-exact (nan and -0.0 included),
    tensors and arrays equal in dtype, shape and bytes."""
    assert type(a) is type(b), f"{path}: {type(a)} != {type(b)}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        assert torch.equal(a.view(torch.uint8) if a.dtype == torch.bool
                           else a, b.view(torch.uint8)
                           if b.dtype == torch.bool else b), path
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        assert a.tobytes() == b.tobytes(), path
    elif isinstance(a, (np.generic, float, complex)):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), path
    elif isinstance(a, dict):
        assert list(a) == list(b), path
        assert getattr(a, "__dict__", {}) == getattr(b, "__dict__", {}), path
        for key in a:
            assert_identical(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for index, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{path}[{index}]")
    else:
        assert a == b, path


def training_state():
    """Every kind of state a PyTorch training script saves."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8),
                                torch.nn.BatchNorm1d(8),
                                torch.nn.Linear(8, 2))
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9,
                          nesterov=True)
    adam = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    for optimizer in (sgd, adam):
        model(torch.randn(5, 4)).sum().backward()
        optimizer.step()
    schedulers = {
        "step": torch.optim.lr_scheduler.StepLR(adam, 3),
        "multistep": torch.optim.lr_scheduler.MultiStepLR(adam, [2, 5, 5]),
        "plateau": torch.optim.lr_scheduler.ReduceLROnPlateau(adam),
        "lambda": torch.optim.lr_scheduler.LambdaLR(adam, lambda e: 0.9**e),
        "cosine": torch.optim.lr_scheduler.CosineAnnealingLR(adam, 10),
    }
    return {
        "model": model.state_dict(),
        "sgd": sgd.state_dict(),
        "adam": adam.state_dict(),
        "schedulers": {name: s.state_dict() for name, s in
                       schedulers.items()},
        # GradScaler(enabled=True).state_dict() on a CUDA machine.
        "scaler": {"scale": 65536.0, "growth_factor": 2.0,
                   "backoff_factor": 0.5, "growth_interval": 2000,
                   "_growth_tracker": 17},
        "rng": {"torch": torch.get_rng_state(),
                "generator": torch.Generator().manual_seed(3).get_state(),
                "numpy": np.random.get_state(),
                "numpy_pcg64": np.random.default_rng(5).bit_generator.state,
                "python": random.getstate()},
        "step": 1234,
    }


def edge_values():
    return {
        "floats": [0.0, -0.0, 1e-308, 5e-324, math.inf, -math.inf,
                   math.nan, struct.unpack("<d", b"\x01\x00\x00\x00\x00"
                                           b"\x00\xf8\x7f")[0], 0.1],
        "ints": [0, -1, 2**63 - 1, -2**63, 2**63, -2**63 - 1, 2**64 - 1,
                 3**200, -(7**99), True, False],
        "complex": complex(1.5, -math.inf),
        "str": ["", "é€𝄞", "\udc80 lone surrogate", "x" * 100_000],
        "bytes": b"\x00\xff" * 10, "bytearray": bytearray(b"abc"),
        "none": None, "empty": ([], (), {}, collections.OrderedDict()),
        "nested_tuple": ((1, (2.0, "3")), [4, (None,)]),
        "keys": {1: "int", "1": "str", 2.5: "float", None: "none",
                 (1, "a", (2.0,)): "tuple", b"k": "bytes", False: "bool"},
        "counter": collections.Counter({"a": 3, 7: 1}),
        "numpy_scalars": [np.float32(1.5), np.float64(-0.0),
                          np.int64(-5), np.uint64(2**64 - 1),
                          np.bool_(True), np.float16(np.nan),
                          np.complex64(1 - 2j), np.uint8(255)],
        "numpy_arrays": {dtype: (np.arange(6) % 3).astype(dtype).reshape(2, 3)
                         for dtype in ("bool", "uint8", "int8", "uint16",
                                       "int16", "uint32", "int32", "uint64",
                                       "int64", "float16", "float32",
                                       "float64", "complex64",
                                       "complex128")},
        "numpy_0d": np.array(2**40, dtype=np.uint64),
        "torch": {str(dtype): torch.arange(4).to(dtype) for dtype in
                  (torch.bool, torch.uint8, torch.int8, torch.int16,
                   torch.int32, torch.int64, torch.float16, torch.bfloat16,
                   torch.float32, torch.float64, torch.complex64,
                   torch.complex128)},
    }


def no_pickle(monkeypatch):
    """Makes any unpickling in ckpt fail the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("pickle was called on a default restore")
    for module in (pickle, ckpt.state_layout.pickle, tree.pickle):
        monkeypatch.setattr(module, "loads", refuse)
        monkeypatch.setattr(module, "load", refuse)
        monkeypatch.setattr(module, "Unpickler", refuse)


def test_real_training_state_round_trips_exactly_without_pickle(
        server, monkeypatch):
    state = training_state()
    state["edge"] = edge_values()
    with ckpt.CheckpointManager(server, "t/safe-round") as manager:
        assert manager.save(state, 3)
        no_pickle(monkeypatch)
        restored = manager.restore(3)
        blob = manager.client.restore_shard("t/safe-round", 3)[0][5]
    assert bytes(blob[:8]) == tree.MAGIC
    assert_identical(state, restored)
    assert restored["model"]._metadata == state["model"]._metadata
    assert type(restored["adam"]["param_groups"][0]["betas"]) is tuple

    # What was restored loads back into fresh objects.
    model = torch.nn.Sequential(torch.nn.Linear(4, 8),
                                torch.nn.BatchNorm1d(8),
                                torch.nn.Linear(8, 2))
    model.load_state_dict(restored["model"])
    adam = torch.optim.Adam(model.parameters())
    adam.load_state_dict(restored["adam"])
    assert adam.param_groups[0]["betas"] == (0.9, 0.95)
    torch.optim.lr_scheduler.MultiStepLR(adam, [1]).load_state_dict(
        restored["schedulers"]["multistep"])
    np.random.set_state(restored["rng"]["numpy"])
    assert np.random.random() == (np.random.set_state(
        state["rng"]["numpy"]), np.random.random())[1]
    random.setstate(restored["rng"]["python"])
    generator = np.random.default_rng()
    generator.bit_generator.state = restored["rng"]["numpy_pcg64"]
    assert generator.random() == np.random.default_rng(5).random()


class Opaque:
    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return type(other) is Opaque and other.value == self.value


Point = collections.namedtuple("Point", "x y")


@pytest.mark.parametrize("value, key, words", [
    (lambda step: 0.1, "lr_fn", "a function (function"),
    (print, "lr_fn", "a function (builtin_function_or_method print)"),
    (Opaque(1), "obj", "test_safe_restore.Opaque"),
    (Point(1, 2), "obj", "test_safe_restore.Point"),
    ({1, 2}, "obj", "builtins.set"),
    (collections.defaultdict(int), "obj", "collections.defaultdict"),
    (np.array([object()]), "obj", "numpy array of dtype |O"),
    (np.arange(3, dtype=">i4"), "obj", "numpy array of dtype >i4"),
    (np.ma.masked_array([1, 2], mask=[0, 1]), "obj", "MaskedArray"),
    (torch.quantize_per_tensor(torch.arange(4.0), 0.5, 0, torch.quint8),
     "obj", "quantized tensor"),
    (torch.eye(3).to_sparse(), "obj", "torch.sparse_coo torch tensor"),
    (torch.device("cpu"), "obj", "torch.device"),
    (np.str_("a"), "obj", "numpy.str_"),
])
def test_anything_else_is_refused_at_save_naming_the_key(server, value, key,
                                                         words):
    state = {"optimizer": {"param_groups": [{"lr": 0.1, key: value}]}}
    with ckpt.CheckpointManager(server, "t/refuse") as manager:
        with pytest.raises(TypeError) as error:
            manager.save(state, 1)
        assert manager.latest_step is None  # nothing was saved
    message = str(error.value)
    assert message.startswith(
        f"state['optimizer']['param_groups'][0]['{key}']: "), message
    assert words in message, message
    assert "allow_pickle=True) only if you trust" in message, message


def test_a_real_torch_state_that_holds_code_is_refused(server):
    """OneCycleLR's state_dict() holds a bound method in torch 1.13."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 1.0,
                                                    total_steps=10)
    with ckpt.CheckpointManager(server, "t/onecycle") as manager:
        with pytest.raises(TypeError, match=r"^state\['scheduler'\]"
                           r"\['anneal_func'\]: cannot store a function"):
            manager.save({"scheduler": scheduler.state_dict()}, 1)


def test_bad_keys_cycles_and_huge_ints_are_refused(server):
    with ckpt.CheckpointManager(server, "t/refuse-more") as manager:
        with pytest.raises(TypeError, match=r"^state\['d'\]: cannot store "
                           r"the dict key"):
            manager.save({"d": {object(): 1}}, 1)
        looped = []
        looped.append(looped)
        with pytest.raises(ValueError, match="nests deeper than 128"):
            manager.save({"loop": looped}, 1)
        with pytest.raises(ValueError, match="too large to store"):
            manager.save({"n": 1 << (8 << 16)}, 1)
        with pytest.raises(TypeError, match="attributes"):
            odd = collections.OrderedDict(a=1)
            odd.extra = 2
            manager.save({"odd": odd}, 1)
        assert manager.latest_step is None


def test_allow_pickle_stores_other_values_and_a_default_restore_refuses(
        server, monkeypatch):
    quantized = torch.quantize_per_tensor(torch.arange(4.0), 0.5, 0,
                                          torch.quint8)
    state = {"obj": Opaque([1, 2]), "q": quantized, "point": Point(1, 2),
             "w": torch.ones(3)}
    with ckpt.CheckpointManager(server, "t/allow",
                                allow_pickle=True) as trusting:
        trusting.save(state, 1)
        restored = trusting.restore(1)
    assert restored["obj"] == Opaque([1, 2])
    assert torch.equal(restored["q"].int_repr(), quantized.int_repr())
    assert restored["point"] == Point(1, 2)
    assert torch.equal(restored["w"], torch.ones(3))

    no_pickle(monkeypatch)
    with ckpt.CheckpointManager(server, "t/allow") as careful:
        with pytest.raises(ckpt.PickleNotAllowedError) as error:
            careful.restore_or_initialize(lambda: None)
    assert str(error.value).startswith("state['obj'] of the checkpoint is "
                                       "a pickled value")
    assert "allow_pickle=True" in str(error.value)


def old_format_blob(tree_value):
    """A state blob as ckpt wrote it before the typed tree (format 1)."""
    return np.frombuffer(pickle.dumps({"format": 1, "tree": tree_value},
                                      protocol=pickle.HIGHEST_PROTOCOL),
                         dtype=np.uint8)


def test_old_pickled_checkpoints_load_only_with_allow_pickle(server):
    weights = np.arange(4, dtype=np.float32)
    blob = old_format_blob({"w": _TensorRef("w", "torch", "float32", (4,)),
                            "lr": 0.5, "betas": (0.9, 0.99)})
    client = ckpt.Client(server)
    client.save_shard("t/old", 7, [
        (STATE_TENSOR, "uint8", [blob.size], [0], [blob.size], blob),
        ("w", "float32", [4], [0], [4], weights)])
    with ckpt.CheckpointManager(server, "t/old") as manager:
        with pytest.raises(ckpt.PickleNotAllowedError,
                           match="is a pickle \\(format version 1, as ckpt "
                           "wrote it before the typed tree"):
            manager.restore()
    with ckpt.CheckpointManager(server, "t/old", allow_pickle=True) as old:
        restored = old.restore()
    assert restored["lr"] == 0.5 and restored["betas"] == (0.9, 0.99)
    assert torch.equal(restored["w"], torch.from_numpy(weights))


class PlantedPayload:
    """Unpickling runs os.system, which creates the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_pickle_never_runs_on_a_default_restore(server, tmp_path):
    """The RCE of issue 13: an attacker who can reach the port plants, with
    the raw gRPC API, a checkpoint at a higher step whose state is a pickle
    that runs os.system. The victim's default restore_or_initialize()
    refuses it, and nothing ran."""
    job = "victim/train"
    with ckpt.CheckpointManager(server, job) as victim:
        victim.save({"w": torch.ones(2), "step": 1}, 1)

    marker = tmp_path / "pwned"
    payload = pickle.dumps({"format": 1, "tree": PlantedPayload(marker)})
    raw_api.plant_shard(server, job, 1000,
                        [(STATE_TENSOR, "uint8", [len(payload)], payload)])

    with ckpt.CheckpointManager(server, job) as victim:
        assert victim.latest_step == 1000
        with pytest.raises(ckpt.PickleNotAllowedError,
                           match="is a pickle .*this manager does not "
                           "unpickle: pass CheckpointManager\\(\\.\\.\\., "
                           "allow_pickle=True\\) only if you trust the "
                           "server and every writer of the job"):
            victim.restore_or_initialize(lambda: "fresh")
        assert not marker.exists()
        # The same payload as a pickle node of a typed tree.
        tree_blob = tree.MAGIC + struct.pack("<H", tree.VERSION) + b"P" + \
            struct.pack("<I", len(payload)) + payload
        raw_api.plant_shard(server, job, 1001, [
            (STATE_TENSOR, "uint8", [len(tree_blob)], tree_blob)])
        with pytest.raises(ckpt.PickleNotAllowedError,
                           match="^state of the checkpoint is a pickled"):
            victim.restore()
        assert not marker.exists()

    # allow_pickle=True trusts every writer of the job: the payload runs.
    with ckpt.CheckpointManager(server, job, allow_pickle=True) as trusting:
        trusting.restore(1000)
    assert marker.exists()


WEIGHTS = ("w", "float32", [4], np.arange(4, dtype=np.float32).tobytes())
VALID = encoded(b"M", u32(1), b"S", text("w"), ref("w", "float32", [4]))

MALFORMED = {
    "truncated": (VALID[:-5], "needs 8 bytes, only 3 remain"),
    "trailing bytes": (VALID + b"N", "1 bytes follow the tree"),
    "unknown tag": (encoded(b"Z"), "unknown tag b'Z'"),
    "bad magic": (b"NOTATREE" + VALID[8:], "neither a typed tree nor a "
                  "pickle"),
    "newer version": (tree.MAGIC + struct.pack("<H", 4) + b"N",
                      "format version 4 (newer than this ckpt package)"),
    "deep nesting": (encoded(*[b"L" + u32(1)] * 100_000, b"N"),
                     "nesting deeper than 128"),
    "huge list": (encoded(b"L", u32(2**32 - 1), b"N"),
                  "declares 4294967295 items or bytes, but only 1 bytes"),
    "huge string": (encoded(b"S", u32(2**31)), "declares 2147483648"),
    "huge big int": (encoded(b"J", u32(1 << 20), b"\x00" * (1 << 20)),
                     "exceeds the limit"),
    "non-canonical int": (encoded(b"J", u32(9), b"\x01" + b"\x00" * 8),
                          "not in its shortest form"),
    "bad utf-8": (encoded(b"S", u32(2), b"\xff\xfe"), "is not UTF-8"),
    "duplicate key": (encoded(b"M", u32(2), b"I", struct.pack("<q", 1), b"N",
                              b"T", b"N"), "dict key True appears twice"),
    "list as key": (encoded(b"M", u32(1), b"L", u32(0), b"N"),
                    "cannot be a dict key"),
    "missing tensor": (encoded(ref("nope", "float32", [4])),
                       "refers to tensor 'nope', which the checkpoint's "
                       "shard does not hold"),
    "state tensor itself": (encoded(ref(STATE_TENSOR, "uint8", [1])),
                            "which the checkpoint's shard does not hold"),
    "wrong dtype": (encoded(ref("w", "float64", [4])),
                    "as float64, but it is stored as float32"),
    "wrong shape": (encoded(ref("w", "float32", [2, 2])),
                    "of shape [2, 2], but it is stored with shape [4]"),
    "same tensor as two kinds": (
        encoded(b"L", u32(2), ref("w", "float32", [4]),
                ref("w", "float32", [4], b"\x01")),
        "as numpy float32, elsewhere as torch float32"),
    "unknown dtype": (encoded(ref("w", "object", [4])),
                      "unknown torch dtype 'object'"),
    "numpy object scalar": (encoded(b"G", text("object"), u32(8),
                                    b"\x00" * 8), "dtype 'object' is not"),
    "huge name": (encoded(ref("n" * 10_000, "float32", [4])),
                  "'nnnnnnnn"),
    "layout bits in version 2": (
        tree.MAGIC + struct.pack("<H", 2) + ref("w", "float32", [4],
                                                b"\x02"),
        "has unknown kind 2"),
    "sharded and replicated": (encoded(ref("w", "float32", [4], b"\x06")),
                               "has unknown kind 6"),
    "unknown kind bit": (encoded(ref("w", "float32", [4], b"\x08")),
                         "has unknown kind 8"),
    "sharded ref of another shape": (
        encoded(ref("w", "float32", [8], b"\x02")),
        "of shape [8] (sharded), but it is stored with shape [4]"),
    "replicated and plain at once": (
        encoded(b"L", u32(2), ref("w", "float32", [4]),
                ref("w", "float32", [4], b"\x04")),
        "as torch float32 (replicated), elsewhere as torch float32"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_planted_trees_fail_clearly(server, case, monkeypatch):
    blob, words = MALFORMED[case]
    job = "victim/malformed"
    raw_api.plant_shard(server, job, 1, [
        (STATE_TENSOR, "uint8", [len(blob)], blob), WEIGHTS])
    no_pickle(monkeypatch)
    target = torch.full((4,), 7.0)
    start = time.monotonic()
    with ckpt.CheckpointManager(server, job) as victim:
        with pytest.raises(ckpt.StateFormatError) as error:
            victim.restore(1, into={"w": target})
    assert time.monotonic() - start < 10
    assert words in str(error.value), str(error.value)
    assert len(str(error.value)) < 1000
    assert torch.equal(target, torch.full((4,), 7.0))  # nothing copied


def test_a_valid_planted_tree_restores(server):
    raw_api.plant_shard(server, "victim/valid", 1, [
        (STATE_TENSOR, "uint8", [len(VALID)], VALID), WEIGHTS])
    with ckpt.CheckpointManager(server, "victim/valid") as manager:
        restored = manager.restore()
    assert torch.equal(restored["w"], torch.arange(4, dtype=torch.float32))


def test_state_tensor_of_another_dtype_is_refused(server):
    raw_api.plant_shard(server, "victim/dtype", 1, [
        (STATE_TENSOR, "int32", [2], b"\x00" * 8)])
    with ckpt.CheckpointManager(server, "victim/dtype") as manager:
        with pytest.raises(ckpt.StateFormatError,
                           match="is int32 of shape \\[2\\], not a 1-D "
                           "uint8 tensor"):
            manager.restore()


def test_mutated_trees_decode_or_fail_with_state_format_error():
    """Thousands of random corruptions of a real tree: each decodes or
    raises StateFormatError; nothing else escapes, nothing is unpickled."""
    state = training_state()
    state["edge"] = edge_values()
    blob = ckpt.state_layout._Flattener(copy=False).encode(state)
    generator = random.Random(13)
    outcomes = collections.Counter()
    for _ in range(3000):
        mutated = bytearray(blob)
        for _ in range(generator.randint(1, 4)):
            position = generator.randrange(10, len(mutated))
            mutated[position] = generator.randrange(256)
        if generator.random() < 0.3:
            del mutated[generator.randrange(10, len(mutated)):]
        try:
            tree.decode(bytes(mutated), allow_pickle=False)
            outcomes["decoded"] += 1
        except ckpt.StateFormatError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 1000, outcomes


def big_int(value):
    size = (value.bit_length() + 8) // 8
    return b"J" + u32(size) + value.to_bytes(size, "little", signed=True)


def test_colliding_dict_keys_are_refused_in_linear_time():
    """Python does not randomise the hashes of ints: k * (2**61 - 1) all
    hash to 0, so a dict of n such keys costs n*n/2 comparisons. 8,000 of
    them (127 KB) took 3 s to decode, a few MB would take hours; the
    decoder refuses a dict whose keys collide instead."""
    prime = (1 << 61) - 1
    count = 40_000
    blob = encoded(b"M", u32(count), *(big_int((k + 8) * prime) + b"N"
                                       for k in range(count)))
    start = time.monotonic()
    with pytest.raises(ckpt.StateFormatError,
                       match="dict keys have the same hash value"):
        tree.decode(blob)
    assert time.monotonic() - start < 1
    # The same for tuple keys, whose hash is a function of their items'.
    colliding = encoded(b"K", u32(20), *(
        b"U" + u32(1) + big_int((k + 8) * prime) + b"I" + struct.pack("<q", 1)
        for k in range(20)))
    assert len({hash(((k + 8) * prime,)) for k in range(20)}) == 1
    with pytest.raises(ckpt.StateFormatError, match="same hash value"):
        tree.decode(colliding)
    # Keys a real state has (-1 and -2 share a hash) still decode.
    fine = encoded(b"M", u32(2), b"I", struct.pack("<q", -1), b"N",
                   b"I", struct.pack("<q", -2), b"N")
    assert tree.decode(fine)[0] == {-1: None, -2: None}


@pytest.mark.parametrize("where", ["duplicate key", "error under the key",
                                   "tuple key"])
def test_errors_naming_a_huge_int_key_are_state_format_errors(where):
    """Python refuses to print an int of more than 4,300 digits
    (ValueError): an error message quoting such a key escaped as a plain
    ValueError instead of StateFormatError."""
    huge = big_int(1 << 20_000)
    blob = {
        "duplicate key": encoded(b"M", u32(2), huge, b"N", huge, b"N"),
        "error under the key": encoded(b"M", u32(1), huge, b"Z"),
        "tuple key": encoded(b"M", u32(1), b"U", u32(2), b"N", huge, b"Z"),
    }[where]
    with pytest.raises(ckpt.StateFormatError) as error:
        tree.decode(blob)
    assert "an int of 20001 bits" in str(error.value), str(error.value)
    assert len(str(error.value)) < 400


def test_tree_version_follows_the_layouts_it_holds():
    """A tree without sharded or replicated references stays version 2,
    which ckpt before issue 14 reads; one with them is version 3, which it
    refuses as newer instead of misreading a global shape."""
    def version(state):
        blob = ckpt.state_layout._flatten(state, copy=False)[0][0][5]
        return struct.unpack_from("<H", blob.tobytes(), len(tree.MAGIC))[0]

    assert version({"w": torch.ones(2), "k": 1}) == 2
    assert version({"w": ckpt.Replicated(torch.ones(2))}) == 3
    assert version({"w": ckpt.Shard(torch.ones(2), (4,), (2,))}) == 3
    blob = ckpt.state_layout._flatten(
        {"w": ckpt.Shard(np.ones(2), (4,), (2,)),
         "r": ckpt.Replicated(torch.ones(1))}, copy=False)[0][0][5]
    skeleton, refs = tree.decode(blob.tobytes())
    assert [(r.name, r.kind, r.shape, r.layout) for r, _ in refs] == [
        ("w", "numpy", (4,), "sharded"), ("r", "torch", (1,), "replicated")]
