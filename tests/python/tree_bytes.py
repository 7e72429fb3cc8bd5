"""Typed trees (ckpt/tree.py) written byte by byte, for tests that plant
malformed or hostile states."""

import struct

from ckpt import tree

TORCH, NUMPY, SHARDED, REPLICATED = b"\x00", b"\x01", b"\x02", b"\x04"


def encoded(*parts):
    """A tree of the current version whose node bytes are `parts`."""
    return tree.MAGIC + struct.pack("<H", tree.VERSION) + b"".join(parts)


def u32(n):
    return struct.pack("<I", n)


def text(value):
    raw = value.encode()
    return u32(len(raw)) + raw


def ref(name, dtype, shape, kind=TORCH):
    """A tensor reference node; kind: the kind byte (TORCH, NUMPY, SHARDED,
    REPLICATED, or any byte)."""
    return b"R" + text(name) + kind + text(dtype) + bytes([len(shape)]) + \
        b"".join(struct.pack("<q", d) for d in shape)


def mapping(**items):
    """A dict node of str keys and node values."""
    return b"M" + u32(len(items)) + b"".join(
        b"S" + text(key) + value for key, value in items.items())
