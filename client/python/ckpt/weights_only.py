"""The torch export's weights_only rule (docs/portability.md, "From
Python"): a state torch.load(path, weights_only=True) reads back. numpy
values become torch tensors of the same dtype and shape (convert), and the
result is checked against the installed torch's weights_only unpickler on a
copy whose tensors are empty (check), naming the first value it refuses.
"""

import io

import numpy as np

from ckpt import tree

# torch has no unsigned integer dtype wider than a byte.
_NUMPY_WITHOUT_TORCH_DTYPE = ("uint16", "uint32", "uint64")


def _rebuilt(node, items):
    """A dict of `node`'s type (its state_dict _metadata kept) of items."""
    out = type(node)() if type(node) is not dict else {}
    if getattr(node, "__dict__", None):
        out.__dict__.update(node.__dict__)
    for key, value in items:
        out[key] = value
    return out


def convert(node, path, torch):
    """`node` with numpy arrays and scalars as torch tensors of the same
    dtype and shape (0-d for scalars); TypeError naming the key for one of
    a dtype torch lacks."""
    if isinstance(node, torch.Tensor):
        return node
    if isinstance(node, (np.ndarray, np.generic)):
        dtype = node.dtype.name
        what = "array" if isinstance(node, np.ndarray) else "scalar"
        if dtype in _NUMPY_WITHOUT_TORCH_DTYPE:
            raise TypeError(
                f"{tree.path_text(path)}: a numpy {dtype} {what}, and torch "
                f"has no {dtype} dtype: a file torch.load(weights_only=True) "
                "reads cannot hold it without changing its dtype. Export "
                "with weights_only=False (numpy values kept as they are; "
                "load it with torch.load(..., weights_only=False)) or as "
                "safetensors")
        array = np.asarray(node)
        if not array.flags.writeable or not array.flags.c_contiguous:
            array = array.copy()  # from_numpy needs writable memory
        return torch.from_numpy(array)
    if isinstance(node, dict):
        return _rebuilt(node, ((key, convert(
            item, path + (key,), torch)) for key, item in node.items()))
    if type(node) in (list, tuple):
        items = [convert(item, path + (index,), torch)
                 for index, item in enumerate(node)]
        return items if type(node) is list else tuple(items)
    return node


def loads(value, torch):
    """None when torch.load(weights_only=True) of this torch reads
    torch.save(value) back, else its error message."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    buffer.seek(0)
    try:
        torch.load(buffer, weights_only=True)
    except Exception as error:  # the unpickler's RuntimeError, ...
        return str(error).rsplit("error: ", 1)[-1]
    return None


def _probe(node, torch):
    """`node` with every tensor replaced by an empty one of its dtype: what
    the weights_only check pickles instead of the tensors' bytes."""
    if isinstance(node, torch.Tensor):
        return torch.empty(0, dtype=node.dtype)
    if isinstance(node, dict):
        return _rebuilt(node, ((key, _probe(item, torch))
                               for key, item in node.items()))
    if type(node) in (list, tuple):
        items = [_probe(item, torch) for item in node]
        return items if type(node) is list else tuple(items)
    return node


def _values(node, path):
    """(path, value) of every value in `node`: each container as an empty
    one of its type, and each leaf (dict keys included)."""
    if isinstance(node, dict):
        yield path, _rebuilt(node, ())
        for key, item in node.items():
            yield from _values(key, path)
            yield from _values(item, path + (key,))
        metadata = getattr(node, "_metadata", None)
        if metadata is not None:
            yield from _values(metadata, path + ("._metadata",))
    elif type(node) in (list, tuple):
        yield path, type(node)()
        for index, item in enumerate(node):
            yield from _values(item, path + (index,))
    else:
        yield path, node


def check(state, torch):
    """TypeError naming the first value torch.load(weights_only=True) of
    the installed torch cannot read back, unless it reads the whole state
    (tensors as empty ones)."""
    problem = loads(_probe(state, torch), torch)
    if problem is None:
        return
    where, seen = "the state", set()
    for path, value in _values(_probe(state, torch), ()):
        if isinstance(value, torch.Tensor):
            continue
        signature = (type(value), value.bit_length() // 8 if isinstance(
            value, int) else None)
        if signature in seen:
            continue
        seen.add(signature)
        found = loads([value], torch)
        if found is not None:
            where = f"{tree.path_text(path)} (a {type(value).__name__})"
            problem = found
            break
    raise TypeError(
        f"{where}: torch.load(weights_only=True) of this torch "
        f"({torch.__version__}) cannot read it back ({problem}). Export "
        "with weights_only=False (load it with torch.load(..., "
        "weights_only=False), which trusts the file) or as safetensors")
