"""How CheckpointManager.restore reads a checkpoint (docs/restore.md):

1. fetch the manifest once (no restore event yet);
2. read the state trees needed: the rank's own, or every rank's when the
   world size changed, to tell per-rank values from replicated ones;
3. plan: which tensors (keys=), which region of each (ckpt.Shard targets,
   or whole), from which rank, into which target (into=); check everything
   (missing, unexpected, mismatched keys; per-rank entries that do not map)
   before anything is read or written;
4. read: new arrays first (Client.restore_regions), then the caller's
   tensors in place (Client.read_regions), host copies last;
5. report the restore (Client.report_restore), so that a refused or failed
   restore leaves no `restored` event.

Past 600 lines because it is one job, the restore of a state: the steps
above share the manifest, the trees and the plan, and each is short.
"""

import struct
import warnings

import numpy as np

from ckpt import tree
from ckpt._ckpt import Error
from ckpt.state_layout import (STATE_TENSOR, Quantized, Replicated, Shard,
                               _torch, _torch_dtype_names, check_refs,
                               check_shard_box, decode_state, path_name)
from ckpt.target_memory import (host_array, same_memory, sharing_pairs,
                                storage_problem)
from ckpt.tree import StateFormatError


class StateMismatchError(ValueError):
    """restore(into=...) found the target state and the checkpoint at
    odds: `missing_keys` (tensors of the target the checkpoint lacks),
    `unexpected_keys` (tensors of the checkpoint the target lacks; both
    errors only with strict=True) and `mismatched` (messages: shape or
    dtype differences, always errors). Nothing was written into any
    target."""

    def __init__(self, message, missing_keys, unexpected_keys, mismatched):
        super().__init__(message)
        self.missing_keys = missing_keys
        self.unexpected_keys = unexpected_keys
        self.mismatched = mismatched


class PartialRestoreError(ValueError):
    """A restore with another world size than the checkpoint's found
    per-rank entries it cannot map (`unmapped`: (rank, key) pairs, the
    saved rank whose value is dropped, or the new rank that has none).
    restore(..., allow_partial_ranks=True) returns what maps instead.
    Nothing was written into any target."""

    def __init__(self, message, unmapped):
        super().__init__(message)
        self.unmapped = unmapped


_ABSENT = object()
_LISTED = 20  # most keys an error message lists


def _listing(items):
    shown = ", ".join(repr(item) for item in items[:_LISTED])
    more = len(items) - _LISTED
    return shown + (f" and {more} more" if more > 0 else "")


class _Rank:
    """One saved rank: its entries (name -> (dtype, global_shape, offsets,
    lengths, content_key)) and, once read, its state tree."""

    def __init__(self, rank, entries):
        self.rank = rank
        self.entries = {entry[0]: entry[1:] for entry in entries}
        self.skeleton = None
        self.refs = None

    @property
    def has_state(self):
        return STATE_TENSOR in self.entries

    def flat_tree(self):
        """The tree of a shard without a state tree (imported safetensors
        files, `ckpt put`, the C++ client): {name: torch tensor} of its
        entries in their order; a box of a larger tensor is sharded."""
        self.skeleton, self.refs = {}, []
        for name, (dtype, shape, offsets, lengths, _) in \
                self.entries.items():
            whole = not any(offsets) and list(lengths) == list(shape)
            ref = tree.TensorRef(name, "torch", dtype, tuple(shape),
                                 tree.PLAIN if whole else tree.SHARDED)
            self.skeleton[name] = ref
            self.refs.append((ref, (name,)))

    def state_request(self):
        dtype, global_shape, offsets, lengths, _ = \
            self.entries[STATE_TENSOR]
        if dtype != "uint8" or len(global_shape) != 1:
            raise StateFormatError(
                f"the checkpoint's {STATE_TENSOR} tensor is {dtype} of shape "
                f"{list(global_shape)}, not a 1-D uint8 tensor (rank "
                f"{self.rank})")
        if list(offsets) != [0] or list(lengths) != list(global_shape):
            raise StateFormatError(
                f"the checkpoint's {STATE_TENSOR} tensor of rank {self.rank} "
                f"holds the box {list(offsets)} + {list(lengths)}, not the "
                "whole tensor")
        return (STATE_TENSOR, "uint8", list(global_shape), [0],
                list(global_shape), self.rank)


def _read_trees(client, manifest, ranks, allow_pickle, stats):
    """Reads and decodes the state trees of `ranks` (a list of _Rank), and
    checks their references against their entries. A checkpoint none of
    whose shards has a state tree is read as flat dicts of its tensors
    (_Rank.flat_tree); one where only some have is malformed."""
    stateless = [rank.rank for rank in ranks if not rank.has_state]
    if stateless:
        if not _stateless(manifest):
            raise StateFormatError(
                f"the checkpoint's shards of ranks {stateless[:_LISTED]} "
                f"have no {STATE_TENSOR} tensor, and others have one")
        for rank in ranks:
            rank.flat_tree()
        return
    arrays, read = client.restore_regions(
        manifest, [rank.state_request() for rank in ranks])
    _add_stats(stats, read)
    for rank, array in zip(ranks, arrays):
        rank.skeleton, rank.refs = decode_state(array.tobytes(),
                                                allow_pickle)
        check_refs(rank.refs, rank.entries, rank.rank)


def _stateless(manifest):
    """Whether no shard of the checkpoint has a state tree: it was not
    written by CheckpointManager, and restores as a flat dict."""
    return not manifest.entries_named(STATE_TENSOR)


def _add_stats(total, read):
    for key in ("chunks_fetched", "bytes_fetched", "bytes_used"):
        total[key] += read[key]


def _float_bits(value):
    return struct.pack("<d", value)


class _Merge:
    """Tells, across the trees of every saved rank, which values are
    replicated (every rank saved the same) and which are per-rank. Dicts
    are compared key by key; anything else as a whole. A tensor is the
    same on two ranks when the references agree and, unless sharded, the
    entries hold the same bytes (content keys)."""

    def __init__(self, ranks):
        self.ranks = ranks
        self.per_rank = []  # paths of per-rank values, in tree order

    def run(self):
        self._node([rank.skeleton for rank in self.ranks], ())
        return self.per_rank

    def _node(self, nodes, path):
        present = [node for node in nodes if node is not _ABSENT]
        if len(present) == len(nodes) and all(
                self._same(nodes[0], node, 0, index)
                for index, node in enumerate(nodes)):
            return
        self._check_layouts(nodes, path)
        kinds = {type(node) for node in present}
        if len(present) == len(nodes) and len(kinds) == 1 and \
                isinstance(present[0], dict):
            keys = {}
            for node in nodes:
                for key in node:
                    keys.setdefault(key, None)
            for key in keys:
                self._node([node.get(key, _ABSENT) for node in nodes],
                           path + (key,))
            return
        self.per_rank.append(path)

    def _check_layouts(self, nodes, path):
        """StateFormatError when ranks disagree about a sharded tensor, or
        hold different copies of a replicated one."""
        refs = [(index, node) for index, node in enumerate(nodes)
                if isinstance(node, tree.TensorRef) and
                node.layout != tree.PLAIN]
        if not refs:
            return
        index, ref = refs[0]
        for other, node in enumerate(nodes):
            if node is _ABSENT or not isinstance(node, tree.TensorRef) or \
                    node.fields() != ref.fields():
                raise StateFormatError(
                    f"{tree.path_text(path)}: rank {index} saved "
                    f"{_describe_node(ref)}, rank {other} "
                    f"{_describe_node(node)}")
            if not self._same(ref, node, index, other):
                raise StateFormatError(
                    f"{tree.path_text(path)}: the replicated tensor "
                    f"{tree.quote(ref.name)} differs between ranks {index} "
                    f"and {other} (its chunks, delta chain or "
                    "quantization)")

    def _same(self, a, b, rank_a, rank_b):
        if a is b and rank_a == rank_b:
            return True
        if type(a) is not type(b):
            return False
        if isinstance(a, tree.TensorRef):
            if a.fields() != b.fields():
                return False
            if a.layout == tree.SHARDED:
                return True
            return self.ranks[rank_a].entries[a.name] == \
                self.ranks[rank_b].entries[b.name]
        if isinstance(a, dict):
            return len(a) == len(b) and list(a) == list(b) and all(
                self._same(a[key], b[key], rank_a, rank_b) for key in a) and \
                getattr(a, "__dict__", None) == getattr(b, "__dict__", None)
        if isinstance(a, (list, tuple)):
            return len(a) == len(b) and all(
                self._same(x, y, rank_a, rank_b) for x, y in zip(a, b))
        if isinstance(a, float):
            return _float_bits(a) == _float_bits(b)
        if isinstance(a, complex):
            return _float_bits(a.real) == _float_bits(b.real) and \
                _float_bits(a.imag) == _float_bits(b.imag)
        if isinstance(a, np.generic):
            return a.dtype == b.dtype and a.tobytes() == b.tobytes()
        if isinstance(a, (type(None), bool, int, str, bytes, bytearray)):
            return a == b
        try:  # unpickled objects (allow_pickle): equal only if == says True
            return (a == b) is True
        except Exception:
            return False


def _describe_node(node):
    if node is _ABSENT:
        return "nothing there"
    if isinstance(node, tree.TensorRef):
        return f"a {node.layout} {node.kind} {node.dtype} tensor " \
            f"{tree.quote(node.name)} of shape {list(node.shape)}"
    return f"a {type(node).__name__}"


def _without(node, drop, path=()):
    """`node` without the values at the paths of `drop` (a set): dict keys
    removed; _ABSENT when `path` itself is dropped."""
    if path in drop:
        return _ABSENT
    if not isinstance(node, dict) or not any(
            len(p) > len(path) and p[:len(path)] == path for p in drop):
        return node
    out = _empty_like(node)
    for key, item in node.items():
        kept = _without(item, drop, path + (key,))
        if kept is not _ABSENT:
            out[key] = kept
    return out


def _empty_like(node):
    out = type(node)() if type(node) is not dict else {}
    if getattr(node, "__dict__", None):  # a state_dict's _metadata
        out.__dict__.update(node.__dict__)
    return out


def _list_index(text, length):
    """Whether `text` is the index of an item of a list of `length`."""
    return text.isdigit() and int(text) < length


class _Keys:
    """restore(keys=...): path prefixes ("model", "optimizer/state"); a
    value is kept when its path is one of them or lies under one. Dicts
    are filtered key by key; a prefix reaching into a list or tuple keeps
    the whole of it."""

    def __init__(self, keys):
        if isinstance(keys, str):
            keys = [keys]
        elif not hasattr(keys, "__iter__"):
            raise TypeError(f"keys must be a list of paths such as 'model', "
                            f"not {type(keys).__name__}")
        self.prefixes = []
        for key in keys:
            if not isinstance(key, str):
                raise TypeError(f"keys must be strings (paths such as "
                                f"'model'), not {key!r}")
            self.prefixes.append(key.strip("/"))
        if not self.prefixes:
            raise ValueError("keys=[] selects nothing; pass keys=None to "
                             "restore everything")
        self.matched = set()

    def covers(self, path):
        """Whether the value at `path` is kept whole."""
        name = path_name(path)
        for prefix in self.prefixes:
            if prefix == "" or name == prefix or \
                    name.startswith(prefix + "/"):
                self.matched.add(prefix)
                return True
        return False

    def leads(self, path):
        """The prefixes that lie strictly under `path`."""
        name = path_name(path)
        return [prefix for prefix in self.prefixes
                if prefix.startswith(name + "/") or (not path and prefix)]

    def filter(self, node, path=()):
        if self.covers(path):
            return node
        if isinstance(node, dict) and self.leads(path):
            out = _empty_like(node)
            for key, item in node.items():
                kept = self.filter(item, path + (key,))
                if kept is not _ABSENT:
                    out[key] = kept
            return out
        if isinstance(node, (list, tuple)):
            # Only prefixes naming an existing item count as matched: a
            # mistyped one ("lst/99") stays unmatched and is refused.
            depth = len(path_name(path)) + 1 if path else 0
            inside = [prefix for prefix in self.leads(path)
                      if _list_index(prefix[depth:].split("/", 1)[0],
                                     len(node))]
            if inside:
                self.matched.update(inside)
                return node
        return _ABSENT

    def unmatched(self):
        return [prefix for prefix in self.prefixes
                if prefix not in self.matched]


def _tensor_leaves(node, path, out, torch):
    """{path: value} of the tensor-like leaves of a target state."""
    if isinstance(node, (Shard, Quantized, Replicated, np.ndarray)) or (
            torch is not None and isinstance(node, torch.Tensor)):
        out[path] = node
    elif isinstance(node, dict):
        for key, item in node.items():
            _tensor_leaves(item, path + (key,), out, torch)
    elif isinstance(node, (list, tuple)):
        for index, item in enumerate(node):
            _tensor_leaves(item, path + (index,), out, torch)
    return out


def _ref_leaves(node, path, out):
    """[(path, TensorRef)] of a skeleton, in tree order."""
    if isinstance(node, tree.TensorRef):
        out.append((path, node))
    elif isinstance(node, dict):
        for key, item in node.items():
            _ref_leaves(item, path + (key,), out)
    elif type(node) in (list, tuple):
        for index, item in enumerate(node):
            _ref_leaves(item, path + (index,), out)
    return out


class _Target:
    """A caller's tensor to restore into: `value` is what the result holds
    (the tensor itself; a Shard's local tensor), `region` (offsets,
    lengths) the part of the global tensor it receives."""

    def __init__(self, given, ref, path, torch):
        self.given = given
        self.problem = None
        self.direct = None
        value = given
        shard = None
        if isinstance(value, Shard):
            shard, value = value, value.tensor
        if isinstance(value, (Quantized, Replicated)):
            value = value.tensor
        self.value = value
        self.is_torch = torch is not None and isinstance(value, torch.Tensor)
        if not self.is_torch and not isinstance(value, np.ndarray):
            self.problem = f"the target is a {type(value).__name__}, not a " \
                "tensor"
            return
        shape = tuple(value.shape)
        if self.is_torch:
            dtype = _torch_dtype_names(torch).get(value.dtype)
            if value.layout != torch.strided or value.is_quantized:
                self.problem = f"cannot restore into a {value.layout}" \
                    f"{' quantized' if value.is_quantized else ''} tensor"
                return
        else:
            dtype = value.dtype.name if value.dtype.isnative else None
            if not value.flags.writeable:
                self.problem = "the target numpy array is read-only"
                return
        if dtype != ref.dtype:
            self.problem = f"dtype: the checkpoint has {ref.dtype}, the " \
                f"target {value.dtype}"
            return
        self.problem = storage_problem(value, self.is_torch)
        if self.problem is not None:
            return
        if shard is not None:
            if shard.global_shape != ref.shape:
                self.problem = f"global shape: the checkpoint has " \
                    f"{list(ref.shape)}, the target ckpt.Shard " \
                    f"{list(shard.global_shape)}"
                return
            try:
                check_shard_box(shard, shape, path)
            except ValueError as error:
                self.problem = str(error)
                return
            self.region = (tuple(shard.offsets), shape)
        elif shape != ref.shape:
            self.problem = f"shape: the checkpoint has {list(ref.shape)}, " \
                f"the target {list(shape)}"
            return
        else:
            self.region = ((0,) * len(shape), shape)
        # Read straight into its memory, or into a host buffer then copied.
        self.direct = self._direct_view(torch)

    def _direct_view(self, torch):
        view = host_array(self.value, self.is_torch, torch)
        return view if view is not None and view.flags.c_contiguous else None


def _numpy_dtype(ref):
    """The numpy dtype of a host buffer for a ref's stored elements
    (bfloat16 as int16, which torch.from_numpy takes)."""
    if ref.dtype == "bfloat16":
        return np.dtype(np.int16)
    return np.dtype(ref.stored_dtype)


class _Read:
    """One region read: `request` for the binding, and where it lands: a
    new array (no target), the target's memory (`out` is a view of it) or
    a host buffer (`out`, copied into the target after every read)."""

    def __init__(self, key, ref, request, target):
        self.key = key
        self.ref = ref
        self.request = request
        self.target = None
        self.out = None
        self.host = False
        self.extra_targets = []  # tied tensors' further targets
        if target is not None:
            self.set_target(target)

    def set_target(self, target):
        self.target = target
        self.out = target.direct
        if self.out is None:
            self.out = np.empty(self.request[4], _numpy_dtype(self.ref))
            self.host = True


class _Plan:
    """The reads of a restore, the read whose value goes at each reference
    path, and what restore(into=...) found."""

    def __init__(self):
        self.reads = {}  # (name, offsets, lengths, source) -> _Read
        self.at_path = {}  # path -> (read key, target or None)
        self.missing_keys = []
        self.unexpected_keys = []
        self.mismatched = []

    def add(self, path, ref, target, source):
        if target is not None:
            offsets, lengths = target.region
        else:
            offsets, lengths = (0,) * len(ref.shape), ref.shape
        if ref.layout == tree.SHARDED:
            source = None
        key = (ref.name, tuple(offsets), tuple(lengths), source)
        read = self.reads.get(key)
        if read is None:
            read = self.reads[key] = _Read(key, ref, (
                ref.name, ref.stored_dtype, list(ref.shape), list(offsets),
                list(lengths), source), target)
        elif target is not None:
            if read.target is None:
                read.set_target(target)
            elif target.value is not read.target.value and all(
                    target.value is not other.value
                    for other in read.extra_targets):
                read.extra_targets.append(target)
        self.at_path[path] = (key, target)


def _place(map_location, torch):
    """A function placing a restored torch tensor as torch.load's
    map_location does (device, "cuda:0", {"cpu": device} or a function
    fn(tensor, "cpu")), or None."""
    if map_location is None:
        return None
    if callable(map_location) and not isinstance(map_location, str) and (
            torch is None or not isinstance(map_location, torch.device)):
        def call(tensor):
            placed = map_location(tensor, "cpu")
            if placed is None:  # torch.load: None keeps the default place
                return tensor
            if torch is None or not isinstance(placed, torch.Tensor):
                raise TypeError(
                    f"map_location: the function returned a "
                    f"{type(placed).__name__}, not a tensor (or None to "
                    "leave the tensor on the CPU)")
            return placed
        return call
    if isinstance(map_location, dict):
        device = map_location.get("cpu")
        if device is None:
            return None
        return lambda tensor: tensor.to(device)
    if torch is None:
        raise ValueError("map_location needs torch")
    device = torch.device(map_location)  # ValueError/RuntimeError if bad
    return lambda tensor: tensor.to(device)


def _same_saved(manifest, key_a, key_b):
    """Whether two reads (name, offsets, lengths, source) give the same
    values: the same region of tensors every rank saved alike (same boxes,
    chunks, delta base and quantization)."""
    if key_a[1:] != key_b[1:]:
        return False

    def saved(name):
        return [(rank, entry[1:]) for rank, entry in
                manifest.entries_named(name)]
    return saved(key_a[0]) == saved(key_b[0])


def _check_ranks(manifest):
    """StateFormatError unless the checkpoint has a shard of each rank."""
    if list(manifest.ranks) != list(range(manifest.world_size)):
        raise StateFormatError(
            f"checkpoint {manifest.step} has shards of ranks "
            f"{list(manifest.ranks)[:_LISTED]} for a world size of "
            f"{manifest.world_size}")


def _check_replicated(manifest, own, refs):
    """StateFormatError when a replicated tensor of `refs` ([(path, ref)]
    of rank `own`'s state) differs from another rank's copy."""
    for path, ref in refs:
        if ref.layout != tree.REPLICATED:
            continue
        mine = own.entries[ref.name]
        for rank, entry in manifest.entries_named(ref.name):
            if tuple(entry[1:]) != mine:
                raise StateFormatError(
                    f"{tree.path_text(path)}: the replicated tensor "
                    f"{tree.quote(ref.name)} differs between ranks "
                    f"{own.rank} and {rank} (its chunks, delta chain or "
                    "quantization)")


class Restore:
    """One restore() call of a CheckpointManager (see its docstring), or
    the read of an export (ckpt/portable.py): `report` False records no
    `restored` event, and `partial_advice` ends a PartialRestoreError."""

    PARTIAL_ADVICE = ("Pass allow_partial_ranks=True to restore the rest "
                      "(the list is then in last_restore['unmapped'])")

    def __init__(self, client, job, rank, world_size, allow_pickle,
                 report=True, partial_advice=PARTIAL_ADVICE):
        self.client = client
        self.job = job
        self.rank = rank
        self.world_size = world_size
        self.allow_pickle = allow_pickle
        self.report = report
        self.partial_advice = partial_advice
        self.torch = _torch()
        self.stats = {"chunks_fetched": 0, "bytes_fetched": 0,
                      "bytes_used": 0}

    def run(self, step, into, strict, keys, map_location,
            allow_partial_ranks, manifest=None):
        """(state, report): the restored state and the last_restore dict.
        `manifest`: the checkpoint already fetched (then `step` is
        ignored)."""
        place = _place(map_location, self.torch)
        if manifest is None:
            manifest = self.client.get_manifest(self.job, step)
        state, unmapped, allowed, source, own, selection = self._view(
            manifest, keys, allow_partial_ranks)
        refs = _ref_leaves(state, (), [])
        if own is not None:
            _check_replicated(manifest, own, refs)
        plan = self._plan(manifest, refs, into, strict, selection, source,
                          allowed)
        values = self._read(manifest, plan, place)
        result = self._build(state, plan, values)
        if self.report:
            self._report(manifest.step)
        report = dict(self.stats, step=manifest.step,
                      world_size=manifest.world_size,
                      missing_keys=plan.missing_keys,
                      unexpected_keys=plan.unexpected_keys,
                      unmapped=unmapped)
        return result, report

    def trees(self, manifest, full):
        """The state trees (TensorRefs for tensors) of `manifest`, without
        reading any tensor: every saved rank's own when `full`, else this
        rank's view (as run() would restore it, PartialRestoreError
        alike), as [(rank, tree)]; None for a checkpoint without state
        trees (not written by CheckpointManager)."""
        if _stateless(manifest):
            return None
        if not full:
            return [(self.rank, self._view(manifest, None, False)[0])]
        _check_ranks(manifest)
        ranks = [_Rank(rank, manifest.entries(rank))
                 for rank in range(manifest.world_size)]
        _read_trees(self.client, manifest, ranks, self.allow_pickle,
                    self.stats)
        return [(rank.rank, rank.skeleton) for rank in ranks]

    def _view(self, manifest, keys, allow_partial_ranks):
        """This rank's skeleton of `manifest`, filtered by `keys`, with
        (unmapped [(rank, name)], paths under this rank's own unmapped
        entries, source rank, _Rank to compare replicas of, _Keys)."""
        _check_ranks(manifest)
        # Content keys compare row deltas along their whole chains from
        # here: two ranks' equal deltas on bases that differ are different
        # tensors (replicated checks, merging of what ranks saved alike,
        # tied targets).
        self.client.resolve_chains(manifest)
        saved_world = manifest.world_size
        state, unmapped, source, own = self._layout(manifest, saved_world)
        selection = _Keys(keys) if keys is not None else None
        if selection is not None:
            state = selection.filter(state)
            unmapped = [(rank, path) for rank, path in unmapped
                        if selection.covers(path) or selection.leads(path)]
            unknown = selection.unmatched()
            if unknown:
                raise KeyError(
                    f"restore(keys=...): {_listing(unknown)} name(s) nothing "
                    f"in checkpoint {manifest.step} of {self.job}")
        if state is _ABSENT:
            state = None
        # This rank's own unmapped entries (a new rank's per-rank values):
        # targets under them are reported there, not as missing keys.
        allowed = [path for rank, path in unmapped if rank == self.rank]
        unmapped = [(rank, path_name(path)) for rank, path in unmapped]
        if unmapped and not allow_partial_ranks:
            raise PartialRestoreError(
                f"checkpoint {manifest.step} of {self.job} was saved by "
                f"{saved_world} rank(s); restored by rank {self.rank} of "
                f"{self.world_size}, these per-rank entries cannot be mapped "
                f"(saved rank or new rank, key): {_listing(unmapped)}. "
                f"{self.partial_advice}", unmapped)
        return state, unmapped, allowed, source, own, selection

    def _layout(self, manifest, saved_world):
        """(state skeleton of this rank, [(rank, path)] unmapped, the
        source rank of plain tensors or None for any copy, the _Rank whose
        replicated copies are still to be compared with the others')."""
        if saved_world == self.world_size:
            own = _Rank(self.rank, manifest.entries(self.rank))
            _read_trees(self.client, manifest, [own], self.allow_pickle,
                        self.stats)
            return own.skeleton, [], self.rank, own
        ranks = [_Rank(rank, manifest.entries(rank))
                 for rank in range(saved_world)]
        _read_trees(self.client, manifest, ranks, self.allow_pickle,
                    self.stats)
        per_rank = _Merge(ranks).run()

        def holds(rank, path):
            node = rank.skeleton
            for key in path:
                if not isinstance(node, dict) or key not in node:
                    return False
                node = node[key]
            return True

        # Every rank lists the same entries (the new ranks' missing per-rank
        # values and the dropped ones), so all ranks of a job refuse the
        # same restore, or with allow_partial_ranks report the same list,
        # instead of the ranks in both layouts going on without the others.
        missing = [(rank, path) for rank in range(saved_world,
                                                  self.world_size)
                   for path in per_rank]
        if self.rank < saved_world:
            # This rank's own state; the ranks that no longer exist drop
            # their per-rank values.
            dropped = [(rank.rank, path) for rank in ranks[self.world_size:]
                       for path in per_rank if holds(rank, path)]
            return ranks[self.rank].skeleton, dropped + missing, self.rank, \
                None
        # A new rank: what every rank saved alike, nothing per-rank.
        common = _without(ranks[0].skeleton, set(per_rank))
        return common, missing, None, None

    def _plan(self, manifest, refs, into, strict, selection, source,
              allowed):
        """What to read for each reference and where; every check made
        (StateMismatchError) before anything is read. Targets under
        `allowed` (paths this rank cannot have, allow_partial_ranks) are
        left as they are, not missing keys."""
        plan = _Plan()
        targets = {}
        if into is not None:
            targets = _tensor_leaves(into, (), {}, self.torch)
            if not targets and not isinstance(into, (dict, list, tuple)):
                raise TypeError(
                    f"into must be a state of the saved structure (dicts, "
                    f"lists and tuples of tensors, e.g. {{'model': "
                    f"model.state_dict()}}), not a {type(into).__name__}")
            if selection is not None:
                targets = {path: value for path, value in targets.items()
                           if selection.covers(path)}
        ref_paths = {path for path, _ in refs}
        plan.missing_keys = [
            path_name(path) for path in targets if path not in ref_paths and
            not any(path[:len(under)] == under for under in allowed)]
        for path, ref in refs:
            given = targets.get(path)
            if given is None:
                if into is not None:
                    plan.unexpected_keys.append(path_name(path))
                plan.add(path, ref, None, source)
                continue
            target = _Target(given, ref, path, self.torch)
            if target.problem is not None:
                plan.mismatched.append(f"{path_name(path)!r}: "
                                       f"{target.problem}")
                continue
            plan.add(path, ref, target, source)
        plan.mismatched += self._shared_memory_problems(plan, manifest)
        if plan.mismatched or (strict and (plan.missing_keys or
                                           plan.unexpected_keys)):
            parts = []
            if plan.mismatched:
                parts.append("mismatched: " + "; ".join(
                    plan.mismatched[:_LISTED]))
            if strict and plan.missing_keys:
                parts.append("missing keys (in into, not in the checkpoint):"
                             f" {_listing(plan.missing_keys)}")
            if strict and plan.unexpected_keys:
                parts.append("unexpected keys (in the checkpoint, not in "
                             f"into): {_listing(plan.unexpected_keys)}")
            advice = "" if plan.mismatched else \
                " (strict=False restores what matches)"
            raise StateMismatchError(
                f"restore(into=...): {'; '.join(parts)}; nothing was "
                f"written{advice}", plan.missing_keys, plan.unexpected_keys,
                plan.mismatched)
        return plan

    def _shared_memory_problems(self, plan, manifest):
        """Messages for targets that share memory (tied weights, views of
        one buffer) but would receive different values: the last write
        would win without a word. Tied targets of one saved tensor, or of
        tensors saved with the same bytes, are fine."""
        placed = [(path, key, target)
                  for path, (key, target) in plan.at_path.items()
                  if target is not None]
        problems = []
        for first, second in sharing_pairs(
                [(target.value, target.is_torch) for _, _, target in placed],
                self.torch):
            path_a, key_a, target_a = placed[first]
            path_b, key_b, target_b = placed[second]
            alike = same_memory((target_a.value, target_a.is_torch),
                                (target_b.value, target_b.is_torch))
            if alike and (key_a == key_b or _same_saved(manifest, key_a,
                                                         key_b)):
                continue
            what = "holds different tensors for them" if alike else \
                "writes both, so one would overwrite part of the other"
            problems.append(
                f"{path_name(path_a)!r} and {path_name(path_b)!r}: the "
                f"targets share memory (tied or overlapping views) and the "
                f"checkpoint {what}")
        return problems

    def _read(self, manifest, plan, place):
        """{read key: value}: new arrays read first, then the targets'
        memory and host buffers, then host buffers copied into their
        targets (and into tied tensors' further targets)."""
        values = {}
        fresh = [read for read in plan.reads.values() if read.out is None]
        into = [read for read in plan.reads.values() if read.out is not None]
        if fresh:
            arrays, read_stats = self.client.restore_regions(
                manifest, [read.request for read in fresh])
            _add_stats(self.stats, read_stats)
            for read, array in zip(fresh, arrays):
                values[read.key] = self._value(read.ref, array, place)
        if into:
            _add_stats(self.stats, self.client.read_regions(
                manifest, [read.request for read in into],
                [read.out for read in into]))
            for read in into:
                if read.host:
                    self._copy_into(read.target, read.out, read.ref)
                values[read.key] = read.target.value
        for read in plan.reads.values():
            for target in read.extra_targets:
                self._copy_into(target, read.out if read.out is not None
                                else values[read.key], read.ref)
        return values

    def _copy_into(self, target, value, ref):
        """Copies `value` (a torch tensor, or a numpy array of the ref's
        stored elements) into a target's tensor."""
        torch = self.torch
        if target.is_torch:
            if isinstance(value, np.ndarray):
                value = torch.from_numpy(value.view(_numpy_dtype(ref)))
                if ref.dtype == "bfloat16":
                    value = value.view(torch.bfloat16)
            with torch.no_grad():
                target.value.copy_(value)
            return
        if not isinstance(value, np.ndarray):  # a torch value, numpy target
            if value.dtype == torch.bfloat16:
                value = value.view(torch.int16)
            value = value.detach().cpu().numpy()
        np.copyto(target.value, value.view(target.value.dtype))

    def _value(self, ref, array, place):
        """A restored array (shaped as its region) as the value the state
        held."""
        if ref.kind == "numpy":
            return array if ref.dtype == ref.stored_dtype else \
                array.view(np.dtype(ref.dtype))
        torch = self.torch
        if torch is None:
            raise StateFormatError(
                f"tensor {tree.quote(ref.name)} was saved as a torch tensor, "
                "and torch is not installed")
        if ref.dtype == "bfloat16":  # uint16 elements from the binding
            value = torch.from_numpy(array.view(np.int16)).view(
                torch.bfloat16)
        else:
            value = torch.from_numpy(array)
        return place(value) if place is not None else value

    def _build(self, node, plan, values, path=()):
        """The result: `node` with each reference replaced by its value
        (the target's tensor where one was given)."""
        if isinstance(node, tree.TensorRef):
            key, target = plan.at_path[path]
            return target.value if target is not None else values[key]
        if isinstance(node, dict):
            out = _empty_like(node)
            for key, item in node.items():
                out[key] = self._build(item, plan, values, path + (key,))
            return out
        if type(node) in (list, tuple):
            items = [self._build(item, plan, values, path + (index,))
                     for index, item in enumerate(node)]
            return items if type(node) is list else tuple(items)
        return node

    def _report(self, step):
        """Records the restore in the job's history. The state is restored
        already: a failed report warns instead of discarding it."""
        try:
            self.client.report_restore(self.job, step, self.rank)
        except (Error, KeyError, ValueError) as error:
            warnings.warn(
                f"ckpt: restored checkpoint {step} of {self.job}, but could "
                f"not record the restore in its history: {error}",
                RuntimeWarning, stacklevel=4)
