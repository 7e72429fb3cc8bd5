"""assert_same_state: two nested states hold equal values of identical
types (the tests of exports, imports and tree_json use it)."""

import struct

import numpy as np
import torch

from ckpt.tree import TensorRef


def _float_bits(value):
    return struct.pack("<d", value)


def _bytes(tensor):
    return tensor.detach().cpu().contiguous().reshape(-1).view(
        torch.uint8).numpy().tobytes()


def assert_same_state(a, b):
    """Equal values of identical types, recursively: floats bit for bit
    (NaN included), tensors and arrays bitwise with the same dtype and
    shape, dicts in the same key order with the same attributes (a
    state_dict's _metadata)."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, (a, b)
        assert _bytes(a) == _bytes(b), (a, b)
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()
    elif isinstance(a, TensorRef):
        assert a.fields() == b.fields()
    elif isinstance(a, float):
        assert _float_bits(a) == _float_bits(b), (a, b)
    elif isinstance(a, complex):
        assert_same_state(a.real, b.real)
        assert_same_state(a.imag, b.imag)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same_state(a[key], b[key])
        assert getattr(a, "__dict__", {}) == getattr(b, "__dict__", {})
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_state(x, y)
    else:
        assert a == b, (a, b)
