"""How a state maps to a rank's tensors and back: the nested dicts, lists
and tuples of a state are split into tensor entries (named by their path)
and a typed tree of everything else with references to those entries
(ckpt/tree.py), stored as the uint8 tensor `__ckpt_state__`; restoring
checks every reference and rebuilds the state. Pickle only with
allow_pickle=True (docs/security.md, "Safe restore (no pickle)").
Used by CheckpointManager (ckpt/manager.py).
"""

import pickle

import numpy as np

from ckpt import tree
from ckpt._ckpt import Client, bits_for_expected_restores
from ckpt.staging import StagingPool, _Reserved
from ckpt.tree import PickleNotAllowedError, StateFormatError

STATE_TENSOR = "__ckpt_state__"
_PICKLE_FORMAT_VERSION = 1  # the whole tree pickled: read with allow_pickle

_TORCH = None


def _torch():
    """torch, imported on first use (None when it is not installed)."""
    global _TORCH
    if _TORCH is None:
        try:
            import torch
        except ImportError:  # numpy-only users
            torch = False
        _TORCH = torch
    return _TORCH or None


class _TensorRef:
    """Stands for a tensor in the pickled skeleton of format version 1
    (read only with allow_pickle=True). Its module path and fields are part
    of that format: do not rename."""

    __slots__ = ("name", "kind", "dtype", "shape")

    def __init__(self, name, kind, dtype, shape):
        self.name = name  # the tensor entry's name
        self.kind = kind  # "torch" or "numpy"
        self.dtype = dtype  # ckpt dtype name, e.g. "float32", "bfloat16"
        self.shape = shape  # tuple of ints

    def __getstate__(self):
        return (self.name, self.kind, self.dtype, self.shape)

    def __setstate__(self, fields):
        self.name, self.kind, self.dtype, self.shape = fields

    def as_ref(self):
        return tree.TensorRef(self.name, self.kind, self.dtype,
                              tuple(self.shape))


class Quantized:
    """Marks a float32 tensor (torch or numpy) of a state to be saved
    quantized: lossy, opt-in, per tensor (Check-N-Run). Put it in the state
    in place of the tensor:

        manager.save({"emb": ckpt.Quantized(model.emb.weight, bits=4), ...})

    Each row (slice along the first dimension; a tensor of at most one
    dimension is one row) is quantized to `bits` bits, with its own range
    narrowed by a search that lowers the L2 error. The width and the error
    measured over the tensor (max abs, relative L2) are recorded in the
    manifest (`ckpt show`) and in CheckpointManager.last_quantization.
    restore() gives back a plain float32 tensor of the dequantized values.

    bits: 8, 4, 3 or 2 (about 3.6x, 6.4x, 8x and 10.7x smaller on 64
        columns), or "auto": the width for `expected_restores`, the number
        of times this checkpoint's values are expected to be restored into
        training (failures times checkpoints read back). Errors add up over
        restores; "auto" keeps their expected sum within 1/8 of each row's
        range (docs/architecture.md, "Quantized tensors"), and saves the
        tensor losslessly when no width does.
    Quantizing runs at about 15 MB/s per core (2 threads): it suits
    embedding tables saved for capacity, not a hot checkpoint loop.
    """

    __slots__ = ("tensor", "bits")

    def __init__(self, tensor, bits=4, expected_restores=None):
        if bits == "auto":
            if expected_restores is None:
                raise ValueError(
                    'Quantized(bits="auto") needs expected_restores')
            expected = float(expected_restores)
            if not expected >= 0:
                raise ValueError(
                    f"expected_restores must be >= 0, not {expected_restores}")
            bits = bits_for_expected_restores(expected)  # None: lossless
        elif expected_restores is not None:
            raise ValueError('expected_restores goes with bits="auto"')
        elif bits not in (2, 3, 4, 8) or isinstance(bits, bool):
            raise ValueError(f"bits must be 2, 3, 4, 8 or \"auto\", not "
                             f"{bits!r}")
        else:
            bits = int(bits)  # 4.0 or numpy.int64(4) as a plain int
        self.tensor = tensor
        self.bits = bits  # None: saved losslessly

    def __repr__(self):
        return f"Quantized(bits={self.bits!r}, tensor={self.tensor!r})"


class Shard:
    """A rank's part of a larger (global) tensor, as a value of a state:
    `local` (a torch tensor or numpy array, or a ckpt.Quantized of one)
    holds the box of the global tensor of shape `global_shape` that starts
    at `offsets` (one per dimension) and spans local's shape.

        manager.save({"emb": ckpt.Shard(local_rows, (vocab, dim),
                                        (rank * rows_per_rank, 0))}, step)

    Saved as one entry with that box; every rank of the job saves its own
    box of the same tensor under the same key (the commit checks that the
    boxes tile the global shape). A restore returns the whole global
    tensor, assembled from every rank's box, whatever the world size; as a
    restore target (restore(into=...)), `local` is an empty tensor of the
    region this rank wants, read in place:

        manager.restore(into={"emb": ckpt.Shard(torch.empty(rows, dim),
                                                (vocab, dim), (start, 0))})

    save() and restore() raise ValueError naming the key when the box does
    not fit in the global shape."""

    __slots__ = ("tensor", "global_shape", "offsets")

    def __init__(self, local, global_shape, offsets):
        self.tensor = local
        self.global_shape = _int_tuple(global_shape, "global_shape")
        self.offsets = _int_tuple(offsets, "offsets")

    def __repr__(self):
        return (f"Shard(global_shape={self.global_shape}, "
                f"offsets={self.offsets}, local={self.tensor!r})")


class Replicated:
    """A tensor every rank of the job holds identically (e.g. a small
    replicated layer), as a value of a state: every rank saves it (the
    server stores its bytes once), and a restore by any rank, with any
    world size, returns it; the restore refuses it when the ranks' copies
    differ. A plain tensor that every rank happens to save with identical
    bytes is treated the same way when the world size changed; Replicated
    says so explicitly and makes differing copies an error."""

    __slots__ = ("tensor",)

    def __init__(self, tensor):
        self.tensor = tensor

    def __repr__(self):
        return f"Replicated({self.tensor!r})"


def _int_tuple(values, what):
    """`values` (a sequence of ints, torch.Size, ...) as a tuple of ints;
    TypeError naming `what` otherwise."""
    try:
        items = tuple(values)
    except TypeError:
        raise TypeError(f"ckpt.Shard {what} must be a sequence of ints, not "
                        f"{type(values).__name__}") from None
    out = []
    for item in items:
        if isinstance(item, bool) or not hasattr(item, "__index__"):
            raise TypeError(f"ckpt.Shard {what} must be a sequence of ints, "
                            f"not {values!r}")
        out.append(int(item.__index__()))
    return tuple(out)


def check_shard_box(shard, local_shape, path):
    """ValueError naming `path` unless `shard`'s box (its offsets and
    `local_shape`) lies within its global shape."""
    where = f"ckpt.Shard at {tree.path_text(path)}"
    shape, offsets = shard.global_shape, shard.offsets
    if len(shape) != len(local_shape) or len(offsets) != len(local_shape):
        raise ValueError(
            f"{where}: the local tensor has {len(local_shape)} dimensions, "
            f"global_shape {list(shape)} and offsets {list(offsets)} must "
            "have as many")
    for dim, (size, start, length) in enumerate(
            zip(shape, offsets, local_shape)):
        if size < 0 or start < 0 or start + length > size:
            raise ValueError(
                f"{where}: the box at offsets {list(offsets)} of shape "
                f"{list(local_shape)} does not fit in the global shape "
                f"{list(shape)} (dimension {dim})")


def _torch_dtype_names(torch):
    return {
        torch.uint8: "uint8", torch.int8: "int8", torch.int16: "int16",
        torch.int32: "int32", torch.int64: "int64",
        torch.float16: "float16", torch.bfloat16: "bfloat16",
        torch.float32: "float32", torch.float64: "float64",
        torch.bool: "bool", torch.complex64: "complex64",
        torch.complex128: "complex128",
    }


def _key_text(key):
    return key if isinstance(key, str) else repr(key)


class _Flattener:
    """Splits a nested state into (encoded tree, tensors). `copy` makes
    every tensor's host buffer a private copy (async save); otherwise CPU
    tensors' own memory is used and must not change until the save returns.
    Values the typed tree refuses raise TypeError, or are pickled into it
    when `allow_pickle`.

    Copies (async, or of CUDA tensors) go into `staging`, the manager's
    StagingPool reused by every save (ckpt/staging.py; a pool of its own
    when None): the walk reserves their space, and _flatten fills the pool
    on several threads once the walk is done."""

    def __init__(self, copy, staging=None, allow_pickle=False):
        self.copy = copy
        self.allow_pickle = allow_pickle
        self.torch = _torch()
        self.staging = staging if staging is not None else \
            StagingPool(torch=self.torch)
        # (name, stored dtype, global shape, offsets, lengths, host array)
        self.tensors = []
        self.quantize = {}  # tensor name -> bits
        self._names = set()
        self._by_id = {}  # id(tensor) -> TensorRef: tied tensors stored once
        self._keep_alive = []

    def encode(self, state):
        """The typed tree of `state` (bytes); fills `tensors`."""
        kinds = (np.ndarray, Quantized, Shard, Replicated)
        if self.torch is not None:
            kinds += (self.torch.Tensor,)
        return tree.Encoder(kinds, self._tensor_ref,
                            self.allow_pickle).encode(state)

    def _unique_name(self, path):
        name = "/".join(_key_text(key) for key in path) or "tensor"
        candidate, n = name, 1
        while candidate in self._names or candidate == STATE_TENSOR:
            candidate = f"{name}~{n}"
            n += 1
        self._names.add(candidate)
        return candidate

    def _tensor_ref(self, value, path):
        """The TensorRef of a tensor, array or Quantized of the state, or
        why it cannot be stored as a tensor."""
        if isinstance(value, Quantized):
            return self._quantized(value, path)
        if isinstance(value, (Shard, Replicated)):
            return self._placed(value, path)
        ref = self._by_id.get(id(value))
        if ref is not None:
            return ref
        if isinstance(value, np.ndarray):
            return self._numpy(value, path)
        return self._torch_tensor(value, path)

    def _torch_tensor(self, value, path):
        torch = self.torch
        dtype = _torch_dtype_names(torch).get(value.dtype)
        if value.layout != torch.strided:
            return f"cannot store a {value.layout} torch tensor (store " \
                "its dense form or its index and value tensors)"
        if value.is_quantized:
            return "cannot store a torch quantized tensor (store its " \
                "int_repr(), scale and zero point, or use ckpt.Quantized)"
        if dtype is None:
            return f"cannot store a torch tensor of dtype {value.dtype}"
        name = self._unique_name(path)
        host = value.detach()
        if self.copy or host.device.type != "cpu":
            # numpy has no bfloat16: its bytes are stored as int16.
            reserved = self.staging.reserve(
                host, "int16" if dtype == "bfloat16" else dtype,
                tuple(host.shape))
            return self._add(value, name, "torch", dtype, reserved)
        host = host.contiguous().resolve_conj().resolve_neg()
        if dtype == "bfloat16":
            host = host.view(torch.int16)
        self._keep_alive.append(host)
        return self._add(value, name, "torch", dtype, host.numpy())

    def _numpy(self, value, path):
        if type(value) not in (np.ndarray, np.memmap):
            return f"cannot store a {type(value).__module__}." \
                f"{type(value).__qualname__} (a numpy array subclass; " \
                "store np.asarray(value) and what else it holds)"
        dtype = value.dtype.name
        if dtype not in tree.NUMPY_STORED_DTYPE or not value.dtype.isnative:
            return f"cannot store a numpy array of dtype {value.dtype.str}"
        name = self._unique_name(path)
        stored = tree.NUMPY_STORED_DTYPE[dtype]
        if self.copy:
            return self._add(value, name, "numpy", dtype,
                             self.staging.reserve(value, stored, value.shape))
        array = np.array(value, order="C", copy=False)
        if stored != dtype:  # uint16/32/64 as the signed type of its width
            array = array.view(np.dtype(stored))
        return self._add(value, name, "numpy", dtype, array)

    def _add(self, value, name, kind, dtype, array):
        ref = tree.TensorRef(name, kind, dtype,
                             tuple(int(d) for d in value.shape))
        self._by_id[id(value)] = ref
        self._keep_alive.append(value)
        self.tensors.append((name, ref.stored_dtype, ref.shape,
                             (0,) * len(ref.shape), ref.shape, array))
        return ref

    def _placed(self, value, path):
        """The TensorRef of a Shard or Replicated: its tensor's entry, with
        the Shard's box in the global shape."""
        inner = value.tensor
        torch = self.torch
        what = type(value).__name__
        if not isinstance(inner, (np.ndarray, Quantized)) and not (
                torch is not None and isinstance(inner, torch.Tensor)):
            raise ValueError(
                f"ckpt.{what} at {tree.path_text(path)} holds a "
                f"{type(inner).__name__}, not a torch tensor, numpy array "
                "or ckpt.Quantized")
        bare = inner.tensor if isinstance(inner, Quantized) else inner
        if id(bare) in self._by_id:
            raise ValueError(
                f"ckpt.{what} at {tree.path_text(path)} holds a tensor the "
                f"state also holds as {tree.quote(self._by_id[id(bare)].name)}"
                f"; save a copy, or the same object in one way")
        if isinstance(value, Shard):
            check_shard_box(value, tuple(bare.shape), path)
        count = len(self.tensors)
        ref = self._tensor_ref(inner, path)
        if not isinstance(ref, tree.TensorRef):
            return ref
        assert len(self.tensors) == count + 1
        del self._by_id[id(bare)]  # not tied with a plain use of it
        name, dtype, shape, offsets, lengths, array = self.tensors[-1]
        if isinstance(value, Shard):
            shape, offsets = value.global_shape, value.offsets
            self.tensors[-1] = (name, dtype, shape, offsets, lengths, array)
        return tree.TensorRef(
            ref.name, ref.kind, ref.dtype, shape,
            tree.SHARDED if isinstance(value, Shard) else tree.REPLICATED)

    def _quantized(self, value, path):
        inner = value.tensor
        torch = self.torch
        is_torch = torch is not None and isinstance(inner, torch.Tensor)
        if not is_torch and not isinstance(inner, np.ndarray):
            raise ValueError(
                f"ckpt.Quantized at {tree.path_text(path)} holds a "
                f"{type(inner).__name__}, not a torch tensor or numpy array")
        ref = self._tensor_ref(inner, path)
        if value.bits is None or not isinstance(ref, tree.TensorRef):
            return ref
        if ref.dtype != "float32":
            raise ValueError(
                f"ckpt.Quantized at {tree.path_text(path)}: only dense "
                f"float32 tensors are quantized, not {inner.dtype}")
        previous = self.quantize.setdefault(ref.name, value.bits)
        if previous != value.bits:
            raise ValueError(
                f"tensor '{ref.name}' is quantized to both {previous} and "
                f"{value.bits} bits in the state")
        return ref


def _flatten(state, copy, staging=None, allow_pickle=False, what="save"):
    """(tensors for Client.save_shard, keep-alive list, {name: bits} to
    quantize, whether `staging` was filled) for `state`; see _Flattener for
    `copy`, `staging` and `allow_pickle`. When it was filled, the caller
    releases `staging` once the tensors are read (StagingPool.release);
    StagingBudgetError (nothing copied) past its budget, naming `what`."""
    flattener = _Flattener(copy, staging, allow_pickle)
    try:
        blob = flattener.encode(state)
    except BaseException:
        flattener.staging.discard()
        raise
    staged = any(isinstance(t[5], _Reserved) for t in flattener.tensors)
    arrays = flattener.staging.fill(what) if staged else []
    blob_array = np.frombuffer(blob, dtype=np.uint8)
    tensors = [(STATE_TENSOR, "uint8", [len(blob)], [0], [len(blob)],
                blob_array)]
    for name, dtype, shape, offsets, lengths, array in flattener.tensors:
        if isinstance(array, _Reserved):
            array = arrays[array.index]
        tensors.append((name, dtype, list(shape), list(offsets),
                        list(lengths), array))
    return tensors, (flattener._keep_alive, blob), flattener.quantize, staged


def path_name(path):
    """The "/"-joined name of a key path ("model/fc.weight"): how tensor
    entries are named, and how restore()'s keys and reports name paths."""
    return "/".join(_key_text(key) for key in path)


def _pickled_tree(blob):
    """The skeleton and its [(TensorRef, path)] of a format-1 state blob (a
    pickle: the caller has allowed pickle). Its _TensorRef nodes are
    replaced by TensorRefs, in place."""
    saved = pickle.loads(blob)
    if not isinstance(saved, dict) or \
            saved.get("format") != _PICKLE_FORMAT_VERSION:
        raise StateFormatError(
            "the checkpoint's pickled state is not of format version "
            f"{_PICKLE_FORMAT_VERSION}")
    refs = []

    def convert(node, path):
        if isinstance(node, _TensorRef):
            ref = node.as_ref()
            refs.append((ref, path))
            return ref
        if isinstance(node, dict):
            for key, item in node.items():
                node[key] = convert(item, path + (key,))
        elif type(node) is list:
            node[:] = [convert(item, path + (index,))
                       for index, item in enumerate(node)]
        elif type(node) is tuple:
            return tuple(convert(item, path + (index,))
                         for index, item in enumerate(node))
        return node

    return convert(saved["tree"], ()), refs


def decode_state(blob, allow_pickle):
    """(skeleton, [(TensorRef, path)]) of the bytes of a rank's
    `__ckpt_state__` entry; pickle runs only when `allow_pickle`."""
    if blob.startswith(tree.MAGIC):
        return tree.decode(blob, allow_pickle)
    if tree.looks_like_pickle(blob):
        if not allow_pickle:
            raise PickleNotAllowedError(
                "the checkpoint's state is a pickle (format version "
                f"{_PICKLE_FORMAT_VERSION}, as ckpt wrote it before the typed "
                "tree; or planted), and this manager does not unpickle: "
                + tree.PICKLE_ADVICE)
        return _pickled_tree(blob)
    raise StateFormatError(
        f"the checkpoint's {STATE_TENSOR} is neither a typed tree nor a "
        "pickle: it was not written by ckpt.CheckpointManager")


def check_refs(refs, entries, rank):
    """StateFormatError unless every reference of rank `rank`'s tree names
    an entry of its shard (not the state itself; `entries`: name ->
    (dtype, global_shape, offsets, lengths, content_key)) of the dtype it
    records, whose global shape is the shape it records and whose box is
    the whole tensor (inside it, for a sharded one), the same way at each
    reference."""
    seen = {}
    for ref, path in refs:
        where = f"{tree.path_text(path)} refers to tensor " \
            f"{tree.quote(ref.name)}"
        entry = entries.get(ref.name) if ref.name != STATE_TENSOR else None
        if entry is None:
            raise StateFormatError(
                f"{where}, which the checkpoint's shard does not hold (rank "
                f"{rank})")
        dtype, global_shape, offsets, lengths = entry[:4]
        if dtype != ref.stored_dtype:
            raise StateFormatError(
                f"{where} as {ref.stored_dtype}, but it is stored as {dtype}")
        whole = ref.layout != tree.SHARDED
        if tuple(global_shape) != ref.shape or len(offsets) != len(
                ref.shape) or len(lengths) != len(ref.shape) or (
                whole and (tuple(lengths) != ref.shape or any(offsets))) or \
                any(o < 0 or n < 0 or o + n > d for o, n, d in
                    zip(offsets, lengths, global_shape)):
            raise StateFormatError(
                f"{where} of shape {list(ref.shape)}"
                f"{'' if ref.layout == tree.PLAIN else f' ({ref.layout})'}, "
                "but it is stored with "
                f"shape {list(global_shape)}, box {list(offsets)} + "
                f"{list(lengths)}")
        fields = (ref.kind, ref.dtype, ref.layout)
        if seen.setdefault(ref.name, fields) != fields:
            raise StateFormatError(
                f"{where} as {_described(fields)}, elsewhere as "
                f"{_described(seen[ref.name])}")


def _described(fields):
    kind, dtype, layout = fields
    return f"{kind} {dtype}" + ("" if layout == tree.PLAIN else
                                f" ({layout})")
