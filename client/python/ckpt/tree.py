"""The typed tree: how CheckpointManager stores the structure of a state
(everything but its tensors' bytes) in a form that cannot run code when it
is read back, unlike the pickle it replaces (docs/security.md, "Safe
restore (no pickle)").

A tree is None, bool, int (any size), float (bit-exact, inf and nan
included), complex, str, bytes, bytearray, list, tuple, dict,
collections.OrderedDict (with a state_dict's `_metadata`),
collections.Counter, numpy scalars of the dtypes below, and references to
tensors stored beside it. Each of them comes back with its exact Python
type. Anything else is refused by encode() with a TypeError naming its key
path, unless the caller allows pickle: then that one value is stored as a
pickle node, which decode() refuses to read unless it too allows pickle.

Encoding, little-endian (format version 3; version 1 was a whole pickle):
    MAGIC, u16 version, one node, and nothing after it.
    node: one tag byte and its payload; n and len are u32:
      N none | F false | T true | I i64 | J len, signed int bytes (beyond
      i64 only) | D f64 | C f64 f64 | S len, UTF-8 | B len, bytes |
      A len, bytearray | L n, nodes (list) | U n, nodes (tuple) |
      M n, (key, value) nodes (dict) | O n, pairs, then a `_metadata`
      node or N (OrderedDict) | K n, pairs (Counter) |
      G dtype string, len, raw element (numpy scalar) |
      R name string, kind byte, dtype string, u8 ndim, ndim i64 dims (a
        tensor reference). Kind bit 0: numpy (else torch); bit 1: sharded
        (ckpt.Shard: the dims are the global shape, and each rank's entry
        of that name holds a box of it); bit 2: replicated
        (ckpt.Replicated: every rank stored the same whole tensor); bits 1
        and 2 never both, no other bit set |
      P len, pickle bytes (only with allow_pickle).
    A string inside a node is len + UTF-8. Keys are None, bool, int,
    float, str, bytes, or tuples of them.
Version 3 (issue 14) added the sharded and replicated kind bits. A tree
without such a reference is still written as version 2, which readers
before version 3 read; one with them is version 3, which they refuse as
newer instead of misreading a global shape as the rank's own.

decode() is strict, for bytes from anyone: depth and lengths are bounded
by MAX_DEPTH and by the bytes that remain, an unknown tag, a truncated
node, a duplicate key, a non-canonical int or a trailing byte is a
StateFormatError naming the problem and where, and nothing it parses can
import or call anything (pickle nodes aside, with allow_pickle only).

Past 600 lines because it is one job, one format: its encoder and its
strict decoder sit side by side so that they change together.
"""

import collections
import pickle
import struct

import numpy as np

MAGIC = b"CKPTTREE"
VERSION = 3  # version 1: the whole tree pickled (ckpt before issue 13)
MIN_VERSION = 2  # the oldest typed tree read; 3 added layout bits to R
MAX_DEPTH = 128
MAX_INT_BYTES = 1 << 16  # a Python int of up to 524,288 bits
# Most keys of one dict that may share a hash value (see _Decoder.mapping).
MAX_KEYS_PER_HASH = 8

# numpy dtypes a tree may name (scalars and arrays), each with the ckpt
# dtype its arrays are stored as: unsigned ones wider than a byte, which
# ckpt lacks, as the signed integer of the same width, viewed back.
NUMPY_STORED_DTYPE = {
    "bool": "bool", "uint8": "uint8", "int8": "int8", "int16": "int16",
    "int32": "int32", "int64": "int64", "uint16": "int16",
    "uint32": "int32", "uint64": "int64", "float16": "float16",
    "float32": "float32", "float64": "float64", "complex64": "complex64",
    "complex128": "complex128",
}
# ckpt dtypes a torch tensor reference may name.
TORCH_DTYPES = frozenset((
    "bool", "uint8", "int8", "int16", "int32", "int64", "float16",
    "bfloat16", "float32", "float64", "complex64", "complex128"))

PICKLE_ADVICE = (
    "pass CheckpointManager(..., allow_pickle=True) only if you trust the "
    "server and every writer of the job, since unpickling runs any code "
    "they put there")

_NONE, _FALSE, _TRUE = b"N", b"F", b"T"
_INT, _BIG_INT, _FLOAT, _COMPLEX = b"I", b"J", b"D", b"C"
_STR, _BYTES, _BYTEARRAY = b"S", b"B", b"A"
_LIST, _TUPLE, _DICT, _ORDERED, _COUNTER = b"L", b"U", b"M", b"O", b"K"
_SCALAR, _REF, _PICKLE = b"G", b"R", b"P"

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_F64X2 = struct.Struct("<dd")
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


class StateFormatError(ValueError):
    """A checkpoint's stored state tree is malformed, or of a format this
    package does not read."""


class PickleNotAllowedError(StateFormatError):
    """The checkpoint holds pickled data, and the manager does not allow
    pickle (CheckpointManager(..., allow_pickle=False), the default)."""


# TensorRef.layout values.
PLAIN, SHARDED, REPLICATED = "plain", "sharded", "replicated"
_KIND_NUMPY, _KIND_SHARDED, _KIND_REPLICATED = 1, 2, 4
_LAYOUT_BITS = {PLAIN: 0, SHARDED: _KIND_SHARDED,
                REPLICATED: _KIND_REPLICATED}


class TensorRef:
    """A tensor in the tree: the name of its stored entry, "torch" or
    "numpy", its dtype (a ckpt dtype name for torch, a key of
    NUMPY_STORED_DTYPE for numpy), its shape (a tuple of ints; the global
    shape when sharded) and its layout: PLAIN (the rank's own whole
    tensor), SHARDED (each rank stored a box of the global tensor under
    `name`) or REPLICATED (each rank stored the same whole tensor)."""

    __slots__ = ("name", "kind", "dtype", "shape", "layout")

    def __init__(self, name, kind, dtype, shape, layout=PLAIN):
        self.name, self.kind, self.dtype, self.shape = name, kind, dtype, shape
        self.layout = layout

    def fields(self):
        """Everything the tree records of it, for comparisons."""
        return (self.name, self.kind, self.dtype, self.shape, self.layout)

    @property
    def stored_dtype(self):
        """The ckpt dtype of the stored entry."""
        if self.kind == "numpy":
            return NUMPY_STORED_DTYPE[self.dtype]
        return self.dtype

    def __repr__(self):
        return (f"TensorRef({self.name!r}, {self.kind}, {self.dtype}, "
                f"{self.shape}, {self.layout})")


def quote(text, limit=64):
    """`text` quoted for an error message, cut to `limit` characters (a
    hostile tree may hold a huge name)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def key_text(key, limit=64):
    """A dict key for an error message, at most about `limit` characters.
    Never converts a huge int to decimal: that is slow, and Python refuses
    it beyond 4300 digits (ValueError), so a hostile key would escape as
    something other than StateFormatError."""
    if isinstance(key, str):
        return quote(key, limit)
    if isinstance(key, int) and not isinstance(key, bool) and \
            key.bit_length() > 128:
        return f"<an int of {key.bit_length()} bits>"
    if isinstance(key, tuple):
        shown = []
        for item in key:
            shown.append(key_text(item, limit))
            if sum(len(part) + 2 for part in shown) > limit:
                shown.append("...")
                break
        text = ", ".join(shown)
        return f"({text},)" if len(key) == 1 else f"({text})"
    return repr(key)[:limit]


def path_text(path):
    """state['optimizer']['param_groups'][0] for the keys of `path`."""
    return "state" + "".join(f"[{key_text(key)}]" for key in path)


def _describe(value):
    kind = type(value)
    if callable(value) and kind.__name__ in (
            "function", "builtin_function_or_method", "method",
            "method-wrapper", "partial"):
        name = getattr(value, "__qualname__", None) or \
            getattr(getattr(value, "func", None), "__qualname__", "?")
        return f"a function ({kind.__name__} {name})"
    if isinstance(value, type):
        return f"a class ({value.__module__}.{value.__qualname__})"
    return f"a {kind.__module__}.{kind.__qualname__}"


class Encoder:
    """Encodes one state. `tensor_ref(value, path)` is called for each
    value of `tensor_types` and returns its TensorRef, or a string saying
    why it cannot be stored as a tensor (then it is refused, or pickled
    when `allow_pickle`)."""

    def __init__(self, tensor_types, tensor_ref, allow_pickle):
        self._tensor_types = tensor_types
        self._tensor_ref = tensor_ref
        self._allow_pickle = allow_pickle
        self._out = bytearray(MAGIC)
        self._out += _U16.pack(MIN_VERSION)
        self._version = MIN_VERSION  # raised by a sharded/replicated ref
        self._writers = {
            type(None): self._none, bool: self._bool, int: self._int,
            float: self._float, complex: self._complex, str: self._str,
            bytes: self._bytes, bytearray: self._bytearray,
            list: self._list, tuple: self._tuple, dict: self._dict,
            collections.OrderedDict: self._dict,
            collections.Counter: self._dict,
        }

    def encode(self, state):
        """The encoded tree of `state` (bytes)."""
        self._value(state, (), 0)
        _U16.pack_into(self._out, len(MAGIC), self._version)
        return bytes(self._out)

    def _value(self, value, path, depth):
        writer = self._writers.get(type(value))
        if writer is not None:
            writer(value, path, depth)
        elif isinstance(value, self._tensor_types):
            ref = self._tensor_ref(value, path)
            if isinstance(ref, TensorRef):
                self._ref(ref)
            else:
                self._unsupported(value, path, ref)
        elif isinstance(value, np.generic) and \
                value.dtype.name in NUMPY_STORED_DTYPE and \
                value.dtype.isnative:
            self._out += _SCALAR
            self._string(value.dtype.name)
            raw = value.tobytes()
            self._out += _U32.pack(len(raw))
            self._out += raw
        else:
            self._unsupported(value, path, None)

    def _unsupported(self, value, path, reason):
        if self._allow_pickle:
            try:
                blob = pickle.dumps(_to_host(value),
                                    protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as error:
                raise TypeError(
                    f"{path_text(path)}: cannot pickle {_describe(value)}: "
                    f"{error}") from error
            self._out += _PICKLE
            self._out += _U32.pack(len(blob))
            self._out += blob
            return
        what = reason or f"cannot store {_describe(value)}"
        raise TypeError(
            f"{path_text(path)}: {what}; a checkpoint's state holds only "
            "None, bool, int, float, complex, str, bytes, list, tuple, "
            "dict, OrderedDict, Counter, numpy scalars and tensors (torch, "
            "or numpy arrays of bool, int, uint, float or complex dtypes). "
            "Convert the value, or " + PICKLE_ADVICE)

    def _none(self, value, path, depth):
        self._out += _NONE

    def _bool(self, value, path, depth):
        self._out += _TRUE if value else _FALSE

    def _int(self, value, path, depth):
        if _I64_MIN <= value <= _I64_MAX:
            self._out += _INT
            self._out += _I64.pack(value)
            return
        raw = value.to_bytes((value.bit_length() + 8) // 8, "little",
                             signed=True)
        if len(raw) > MAX_INT_BYTES:
            raise ValueError(f"{path_text(path)}: an int of "
                             f"{value.bit_length()} bits is too large to store")
        self._out += _BIG_INT
        self._out += _U32.pack(len(raw))
        self._out += raw

    def _float(self, value, path, depth):
        self._out += _FLOAT
        self._out += _F64.pack(value)

    def _complex(self, value, path, depth):
        self._out += _COMPLEX
        self._out += _F64X2.pack(value.real, value.imag)

    def _str(self, value, path, depth):
        self._out += _STR
        self._string(value)

    def _string(self, value):
        raw = value.encode("utf-8", "surrogatepass")
        self._out += _U32.pack(len(raw))
        self._out += raw

    def _bytes(self, value, path, depth):
        self._out += _BYTES
        self._out += _U32.pack(len(value))
        self._out += value

    def _bytearray(self, value, path, depth):
        self._out += _BYTEARRAY
        self._out += _U32.pack(len(value))
        self._out += value

    def _check_depth(self, path, depth):
        if depth >= MAX_DEPTH:
            raise ValueError(
                f"{path_text(path[:8])}...: the state nests deeper than "
                f"{MAX_DEPTH} levels (does it contain itself?)")

    def _list(self, value, path, depth):
        self._check_depth(path, depth)
        self._out += _LIST
        self._items(value, path, depth)

    def _tuple(self, value, path, depth):
        self._check_depth(path, depth)
        self._out += _TUPLE
        self._items(value, path, depth)

    def _items(self, value, path, depth):
        self._out += _U32.pack(len(value))
        for index, item in enumerate(value):
            self._value(item, path + (index,), depth + 1)

    def _dict(self, value, path, depth):
        self._check_depth(path, depth)
        kind = type(value)
        attributes = getattr(value, "__dict__", None) or {}
        if kind is collections.OrderedDict:
            self._out += _ORDERED
            extra = sorted(set(attributes) - {"_metadata"})
        else:
            self._out += _COUNTER if kind is collections.Counter else _DICT
            extra = sorted(attributes)
        if extra:
            raise TypeError(
                f"{path_text(path)}: cannot store the attributes {extra} of "
                f"a {kind.__name__} (only a state_dict's _metadata is kept)")
        self._out += _U32.pack(len(value))
        for key, item in value.items():
            self._key(key, path, depth + 1)
            self._value(item, path + (key,), depth + 1)
        if kind is collections.OrderedDict:
            if "_metadata" in attributes:
                self._value(attributes["_metadata"], path + ("._metadata",),
                            depth + 1)
            else:
                self._out += _NONE

    def _key(self, key, path, depth):
        kind = type(key)
        if kind is tuple:
            self._check_depth(path, depth)
            self._out += _TUPLE
            self._out += _U32.pack(len(key))
            for item in key:
                self._key(item, path, depth + 1)
        elif kind in (type(None), bool, int, float, str, bytes):
            self._writers[kind](key, path, depth)
        else:
            raise TypeError(
                f"{path_text(path)}: cannot store the dict key {key!r} "
                f"({_describe(key)}); keys are None, bool, int, float, str, "
                "bytes or tuples of them")

    def _ref(self, ref):
        out = self._out
        out += _REF
        self._string(ref.name)
        kind = (_KIND_NUMPY if ref.kind == "numpy" else 0) | \
            _LAYOUT_BITS[ref.layout]
        if ref.layout != PLAIN:
            self._version = VERSION
        out += _U8.pack(kind)
        self._string(ref.dtype)
        out += _U8.pack(len(ref.shape))
        for dim in ref.shape:
            out += _I64.pack(dim)


def _to_host(value):
    """A CUDA torch tensor as a CPU one (for pickling); others unchanged."""
    device = getattr(value, "device", None)
    if getattr(device, "type", "cpu") != "cpu" and hasattr(value, "cpu"):
        return value.detach().cpu()
    return value


def looks_like_pickle(blob):
    """Whether `blob` starts as a pickle of protocol 2 or newer does (what
    format version 1 wrote)."""
    return len(blob) >= 2 and blob[0] == 0x80 and 2 <= blob[1] <= 5


class _Decoder:
    """Reads one encoded tree from `blob` (bytes). Every read checks the
    bytes that remain first; hot paths use unpack_from on the bytes."""

    def __init__(self, blob, allow_pickle):
        self._blob = blob
        self._end = len(blob)
        self._pos = 0
        self._allow_pickle = allow_pickle
        self.version = VERSION
        self.refs = []
        self._readers = {
            _NONE[0]: lambda path, depth, key: None,
            _FALSE[0]: lambda path, depth, key: False,
            _TRUE[0]: lambda path, depth, key: True,
            _INT[0]: lambda path, depth, key: self.unpack(_I64, "an int",
                                                          path),
            _FLOAT[0]: lambda path, depth, key: self.unpack(_F64, "a float",
                                                            path),
            _STR[0]: lambda path, depth, key: self.string("a str", path),
            _BYTES[0]: lambda path, depth, key: self.take(
                self.length("bytes", path), "bytes", path),
            _BIG_INT[0]: lambda path, depth, key: self.big_int(path),
            _TUPLE[0]: lambda path, depth, key: tuple(
                self.items(path, depth, key)),
        }
        # Never dict keys: unhashable, or not plain values.
        self._value_readers = {
            _COMPLEX[0]: lambda path, depth: complex(*_F64X2.unpack(
                self.take(16, "a complex", path))),
            _BYTEARRAY[0]: lambda path, depth: bytearray(self.take(
                self.length("a bytearray", path), "a bytearray", path)),
            _LIST[0]: lambda path, depth: self.items(path, depth, False),
            _DICT[0]: lambda path, depth: self.mapping({}, path, depth),
            _ORDERED[0]: lambda path, depth: self.mapping(
                collections.OrderedDict(), path, depth),
            _COUNTER[0]: lambda path, depth: self.mapping(
                collections.Counter(), path, depth),
            _SCALAR[0]: lambda path, depth: self.scalar(path),
            _REF[0]: lambda path, depth: self.ref(path),
            _PICKLE[0]: lambda path, depth: self.pickled(path),
        }

    def fail(self, problem, path=None):
        where = f" at byte {self._pos}"
        if path is not None:
            where += f" (in {path_text(path)})"
        raise StateFormatError(
            f"the checkpoint's state tree is malformed: {problem}{where}")

    def take(self, size, what, path):
        """The next `size` bytes (a bytes copy)."""
        end = self._pos + size
        if end > self._end:
            self.fail(f"{what} needs {size} bytes, only "
                      f"{self._end - self._pos} remain", path)
        start, self._pos = self._pos, end
        return self._blob[start:end]

    def unpack(self, packer, what, path):
        end = self._pos + packer.size
        if end > self._end:
            self.fail(f"{what} needs {packer.size} bytes, only "
                      f"{self._end - self._pos} remain", path)
        value = packer.unpack_from(self._blob, self._pos)[0]
        self._pos = end
        return value

    def length(self, what, path, min_item_bytes=1):
        count = self.unpack(_U32, what, path)
        remaining = self._end - self._pos
        if count * min_item_bytes > remaining:
            self.fail(f"{what} declares {count} items or bytes, but only "
                      f"{remaining} bytes remain", path)
        return count

    def string(self, what, path):
        raw = self.take(self.length(what, path), what, path)
        try:
            return raw.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as error:
            self.fail(f"{what} is not UTF-8 ({error.reason})", path)

    def node(self, path, depth, key=False):
        if self._pos >= self._end:
            self.fail("a node needs 1 byte, none remain", path)
        tag = self._blob[self._pos]
        self._pos += 1
        reader = self._readers.get(tag)
        if reader is not None:
            return reader(path, depth, key)
        reader = self._value_readers.get(tag)
        if reader is None:
            self.fail(f"unknown tag {bytes([tag])!r}", path)
        if key:
            self.fail(f"tag {bytes([tag])!r} cannot be a dict key", path)
        return reader(path, depth)

    def big_int(self, path):
        size = self.length("a big int", path)
        if size > MAX_INT_BYTES:
            self.fail(f"a big int of {size} bytes exceeds the limit of "
                      f"{MAX_INT_BYTES}", path)
        value = int.from_bytes(self.take(size, "a big int", path), "little",
                               signed=True)
        if _I64_MIN <= value <= _I64_MAX or \
                size != (value.bit_length() + 8) // 8:
            self.fail("a big int is not in its shortest form", path)
        return value

    def enter(self, path, depth):
        if depth >= MAX_DEPTH:
            self.fail(f"nesting deeper than {MAX_DEPTH} levels", path[:8])

    def items(self, path, depth, key):
        self.enter(path, depth)
        count = self.length("a list or tuple", path)
        return [self.node(path + (index,), depth + 1, key)
                for index in range(count)]

    def mapping(self, out, path, depth):
        self.enter(path, depth)
        count = self.length("a dict", path, min_item_bytes=2)
        # Keys per hash value. Python's hashes of ints, floats and tuples
        # are not randomised: keys such as k * (2**61 - 1) all hash alike,
        # and n of them make a dict do n*n/2 comparisons (8,000 such keys,
        # 127 KB, took 3 s; a few MB, hours). A real state never has more
        # than a couple of keys with one hash (-1 and -2 share one).
        per_hash = {}
        for _ in range(count):
            key = self.node(path, depth + 1, key=True)
            try:
                key_hash = hash(key)
            except TypeError:  # unhashable: a tuple holding nan is fine
                self.fail(f"dict key {key_text(key)} is not hashable", path)
            same = per_hash.get(key_hash, 0) + 1
            if same > MAX_KEYS_PER_HASH:
                self.fail(f"{same} dict keys have the same hash value "
                          f"(as {key_text(key)} does); a state's keys never "
                          "collide like that", path)
            per_hash[key_hash] = same
            if key in out:
                self.fail(f"dict key {key_text(key)} appears twice", path)
            out[key] = self.node(path + (key,), depth + 1)
        if type(out) is collections.OrderedDict:
            metadata = self.node(path + ("._metadata",), depth + 1)
            if metadata is not None:
                if not isinstance(metadata, dict):
                    self.fail("an OrderedDict's _metadata is not a dict",
                              path)
                out._metadata = metadata
        return out

    def scalar(self, path):
        name = self.string("a numpy scalar's dtype", path)
        if name not in NUMPY_STORED_DTYPE:
            self.fail(f"numpy scalar dtype {quote(name)} is not one a "
                      "checkpoint stores", path)
        dtype = np.dtype(name)
        raw = self.take(self.length("a numpy scalar", path),
                        "a numpy scalar", path)
        if len(raw) != dtype.itemsize:
            self.fail(f"a numpy {name} scalar has {len(raw)} bytes, not "
                      f"{dtype.itemsize}", path)
        return np.frombuffer(raw, dtype=dtype)[0].copy()

    def ref(self, path):
        name = self.string("a tensor name", path)
        bits = self.unpack(_U8, "a tensor kind", path)
        known = _KIND_NUMPY | (
            _KIND_SHARDED | _KIND_REPLICATED if self.version >= 3 else 0)
        if bits & ~known or \
                bits & (_KIND_SHARDED | _KIND_REPLICATED) == \
                _KIND_SHARDED | _KIND_REPLICATED:
            self.fail(f"tensor {quote(name)} has unknown kind {bits}", path)
        kind = "numpy" if bits & _KIND_NUMPY else "torch"
        layout = SHARDED if bits & _KIND_SHARDED else \
            REPLICATED if bits & _KIND_REPLICATED else PLAIN
        dtype = self.string("a tensor dtype", path)
        known = NUMPY_STORED_DTYPE if kind == "numpy" else TORCH_DTYPES
        if dtype not in known:
            self.fail(f"tensor {quote(name)} has unknown {kind} dtype "
                      f"{quote(dtype)}", path)
        ndim = self.unpack(_U8, "a tensor rank", path)
        if ndim > 64:
            self.fail(f"tensor {quote(name)} has {ndim} dimensions", path)
        shape = struct.unpack(f"<{ndim}q",
                              self.take(8 * ndim, "a tensor shape", path))
        if any(dim < 0 for dim in shape):
            self.fail(f"tensor {quote(name)} has a negative dimension "
                      f"{shape}", path)
        ref = TensorRef(name, kind, dtype, shape, layout)
        self.refs.append((ref, path))
        return ref

    def pickled(self, path):
        size = self.length("a pickled value", path)
        if not self._allow_pickle:
            raise PickleNotAllowedError(
                f"{path_text(path)} of the checkpoint is a pickled value "
                "(saved with allow_pickle=True, or planted), and this "
                "manager does not unpickle: " + PICKLE_ADVICE)
        return pickle.loads(self.take(size, "a pickled value", path))


def decode(blob, allow_pickle=False):
    """(tree, [(TensorRef, path)]) of an encoded tree; StateFormatError
    when `blob` is malformed, PickleNotAllowedError when it holds a pickle
    node and not `allow_pickle` (nothing is unpickled then)."""
    if not blob.startswith(MAGIC):
        raise StateFormatError(
            "the checkpoint's state tree does not start with "
            f"{MAGIC!r}: it was not written by ckpt.CheckpointManager")
    decoder = _Decoder(bytes(blob), allow_pickle)
    decoder._pos = len(MAGIC)
    version = decoder.unpack(_U16, "the format version", None)
    if not MIN_VERSION <= version <= VERSION:
        newer = " (newer than this ckpt package)" if version > VERSION \
            else ""
        raise StateFormatError(
            f"the checkpoint's state tree has format version {version}"
            f"{newer}; this package reads versions {MIN_VERSION} to "
            f"{VERSION}")
    decoder.version = version
    try:
        tree = decoder.node((), 0)
    except RecursionError:  # MAX_DEPTH levels, called from deep already
        raise StateFormatError(
            "the checkpoint's state tree nests deeper than this thread's "
            "Python recursion limit allows") from None
    if decoder._pos != len(blob):
        decoder.fail(f"{len(blob) - decoder._pos} bytes follow the tree")
    return tree, decoder.refs

