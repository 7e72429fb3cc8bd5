"""ckpt/tree_json.py: the typed tree as the tagged JSON an export writes
under "objects" reads back to the same values of the same types, and its
reader refuses what it did not write."""

import collections
import json
import math
import struct

import numpy as np
import pytest

from ckpt import tree, tree_json
from ckpt.tree import StateFormatError, TensorRef
from same_state import assert_same_state


def round_trip(value):
    text = json.dumps(tree_json.to_json(value), allow_nan=False)
    return tree_json.from_json(json.loads(text))


def every_type():
    metadata_dict = collections.OrderedDict(
        [("w", TensorRef("model/w", "torch", "bfloat16", (3, 4)))])
    metadata_dict._metadata = {"": {"version": 1}}
    odd_nan = struct.unpack("<d", struct.pack("<Q", 0x7ff8000000000123))[0]
    return {
        "none": None, "bools": [True, False],
        "ints": [0, -1, 2**53, -2**53, 2**53 + 1, -(2**63), 2**64, -2**200,
                 2**20000],
        "floats": [0.0, -0.0, 1.5, 1e300, 5e-324, 0.1, math.inf, -math.inf,
                   math.nan, odd_nan, 3.0],
        "complex": [1 + 2j, complex(math.inf, math.nan)],
        "str": ["", "h\u00e9llo \u2603", "lone \ud800 surrogate"],
        "bytes": b"\x00\xff", "bytearray": bytearray(b"ab"),
        "tuple": (1, ("nested", ())), "empty": {}, "list": [],
        "odict": metadata_dict, "plain_odict": collections.OrderedDict(a=1),
        "counter": collections.Counter("aab"),
        "keys": {7: "int", 2.5: "float", None: "none", True: "bool",
                 b"k": "bytes", ("a", 1): "tuple", "$tag": "dollar"},
        "numpy": [np.float32(1.5), np.float16(-2), np.uint64(2**64 - 1),
                  np.int8(-128), np.bool_(True), np.complex64(1 - 1j),
                  np.float64(math.nan)],
        "tensors": [TensorRef("a", "numpy", "uint32", (2,), tree.PLAIN),
                    TensorRef("emb", "torch", "float32", (10, 4),
                              tree.SHARDED),
                    TensorRef("head", "torch", "float16", (), tree.REPLICATED)],
        "$dollar key at the top": 1,
    }


def test_every_tree_type_reads_back_identical():
    value = every_type()
    assert_same_state(value, round_trip(value))


def test_plain_json_where_json_is_exact():
    rendered = tree_json.to_json({"lr": 0.001, "epoch": 3, "name": "run",
                                  "sizes": [1, 2], "done": False})
    assert rendered == {"lr": 0.001, "epoch": 3, "name": "run",
                        "sizes": [1, 2], "done": False}
    assert tree_json.to_json(2**60) == {"$int": str(2**60)}
    assert tree_json.to_json(math.inf) == {"$float": "inf"}
    assert tree_json.to_json((1,)) == {"$tuple": [1]}


def test_objects_value_names_its_encoding_and_ranks():
    value = tree_json.objects([(0, {"a": 1}), (1, {"a": 2})])
    assert value == {"encoding": "ckpt-tree-json/1",
                     "ranks": {"0": {"a": 1}, "1": {"a": 2}}}


def test_pickled_values_need_allow_pickle():
    rendered = tree_json.to_json({"f": frozenset({1})})
    with pytest.raises(tree.PickleNotAllowedError):
        tree_json.from_json(rendered)
    assert tree_json.from_json(rendered, allow_pickle=True) == \
        {"f": frozenset({1})}


@pytest.mark.parametrize("bad,problem", [
    ({"$nope": 1}, "unknown tag"),
    ({"$int": "12", "$bytes": ""}, "several tags"),
    ({"$int": "twelve"}, "is not an int"),
    ({"$int": "1", "extra": 2}, "unexpected keys"),
    ({"$bytes": "***"}, "not base64"),
    ({"$float": "1.5"}, "is not inf"),
    ({"$float": "nan", "bits": "7ff0000000000000"}, "must be a NaN"),
    ({"$tuple": 3}, "needs an array"),
    ({"$dict": [[[1], 2]]}, "cannot be a dict key"),
    ({"$dict": [["a", 1], ["a", 2]]}, "appears twice"),
    ({"$numpy": "object", "value": 1}, "not a numpy dtype"),
    ({"$numpy": "int8", "value": 300}, "is not a numpy int8"),
    ({"$tensor": "x", "kind": "torch", "dtype": "float32", "shape": [-1],
      "layout": "plain"}, "needs a name"),
    ({"$ordered_dict": [], "_metadata": 5}, "_metadata must be a dict"),
])
def test_reader_refuses_what_it_did_not_write(bad, problem):
    with pytest.raises(StateFormatError, match=problem):
        tree_json.from_json({"key": [bad]})


def test_reader_bounds_colliding_keys_and_huge_ints():
    # Python hashes k * (2**61 - 1) alike: n such keys cost n*n/2.
    colliding = [[k * (2**61 - 1), k] for k in range(1, 20)]
    with pytest.raises(StateFormatError, match="same hash value"):
        tree_json.from_json({"$dict": colliding})
    with pytest.raises(StateFormatError, match="larger than a state"):
        tree_json.from_json({"$int": "0x" + "f" * (2 * tree.MAX_INT_BYTES
                                                    + 2)})


def test_reader_bounds_depth():
    deep = 1
    for _ in range(tree.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(StateFormatError, match="nests deeper"):
        tree_json.from_json(deep)
