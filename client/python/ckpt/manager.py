"""CheckpointManager: PyTorch-style state dicts saved on a ckpt server.

How a state maps to a rank's shard (docs/architecture.md, "Python"):
every dense torch tensor and numpy array of a dtype ckpt stores (float16/
bfloat16/32/64, int8/16/32/64, uint8, bool, complex64/128; numpy uint16/
32/64 as the signed integers of their width) in the nested dicts/lists/
tuples of `state` becomes one tensor entry (dtype and shape preserved;
CUDA tensors are copied to host), named after its path in the nesting
("model/fc.weight", "optimizer/state/0/exp_avg"); a tensor wrapped in
ckpt.Quantized is stored quantized and restored as a plain float32 tensor;
ckpt.Shard stores a rank's box of a global tensor, ckpt.Replicated a tensor
every rank holds alike. Restores are planned in ckpt/restore.py (any world
size, into=, keys=; docs/restore.md).
Everything else, with the tree structure (tensors replaced by references
to their entries), is encoded as a typed tree (ckpt/tree.py), stored as
the uint8 tensor `__ckpt_state__`. It holds plain values only and cannot
run code when read; pickle is used only with allow_pickle=True
(docs/security.md, "Safe restore (no pickle)").

Past 600 lines because it is one job, the manager's API: each method's
docstring (the user's reference) is most of it; the work is in
state_layout.py, restore.py and arguments.py.
"""

import atexit
import os
import sys
import threading
import warnings

import numpy as np

from ckpt import arguments, portable, tree
from ckpt._ckpt import (IncrementalSaver, best_checkpoint, improves_on,
                        set_exit_status_at_finalize)
from ckpt.client import connect
from ckpt.tree import PickleNotAllowedError
from ckpt.restore import Restore
from ckpt.staging import StagingPool
from ckpt.state_layout import STATE_TENSOR, Quantized, _flatten, _torch
# Format-1 checkpoints pickled their tensor references as
# ckpt.manager._TensorRef: keep that name resolvable for allow_pickle=True.
from ckpt.state_layout import _TensorRef  # noqa: F401


def _row_indices(name, rows):
    """`rows` (a 1-D torch tensor, numpy array or sequence of ints) as a
    private int64 numpy array: the caller may change its own afterwards."""
    torch = _torch()
    if torch is not None and isinstance(rows, torch.Tensor):
        rows = rows.detach().cpu().numpy()
    array = np.array(rows, dtype=np.int64, copy=True)
    if array.ndim != 1:
        raise ValueError(
            f"dirty_rows['{name}'] must be a 1-D sequence of row indices, "
            f"not of shape {array.shape}")
    if array.size and array.min() < 0:
        raise ValueError(
            f"dirty_rows['{name}'] holds the negative row index "
            f"{int(array.min())}")
    return array


def _dirty_rows_by_name(dirty_rows, tensors):
    """dirty_rows keyed by the tensor entries' names. A key is an entry's
    name ("model/embedding.weight") or the same path with "." for "/"
    ("model.embedding.weight"); ValueError for a key naming no tensor."""
    names = {tensor[0] for tensor in tensors}
    aliases = {}
    for name in names:
        aliases.setdefault(name.replace("/", "."), []).append(name)
    out = {}
    for key, rows in dirty_rows.items():
        if key in names:
            name = key
        elif len(aliases.get(key, ())) == 1:
            name = aliases[key][0]
        else:
            raise ValueError(
                f"dirty_rows names '{key}', which is no tensor of the state "
                f"(tensor names: {sorted(names - {STATE_TENSOR})})")
        if name == STATE_TENSOR:
            raise ValueError(f"dirty_rows cannot name {STATE_TENSOR}")
        out[name] = _row_indices(key, rows)
    return out


def _monitor(save_best_only, monitor, mode):
    """The metric save_best_only monitors, or None without save_best_only
    (then monitor and mode must not be set)."""
    if not arguments.boolean("save_best_only", save_best_only):
        if monitor is not None or mode != "auto":
            raise ValueError("monitor and mode go with save_best_only=True "
                             "(for retention by a metric, see keep_best)")
        return None
    if monitor is None:
        raise ValueError("save_best_only=True needs monitor, the name of the "
                         "metric to improve (e.g. monitor=\"val_loss\")")
    monitor = arguments.metric_name("monitor", monitor)
    arguments.metric_mode("mode", mode, monitor)
    return monitor


class RetentionPolicyIgnoredWarning(UserWarning):
    """The server ignored the retention arguments of a CheckpointManager
    (max_to_keep, keep_checkpoint_every_n_hours, keep_best): an operator's
    policy applies to the job (set with `ckpt policy set JOB`, or the
    tenant's default), or the manager's token is append-only (role writer).
    The message says which and who set the policy; `ckpt policy get JOB`
    shows it. Issued once per manager; the saves go on."""


class CheckpointManager:
    """Saves and restores one rank's training state of a job, in the manner
    of tf.train.CheckpointManager and Orbax's CheckpointManager.

    server: "HOST:PORT" of a ckpt-server, or a ckpt.Client. Default (None):
        the CKPT_SERVER environment variable, as the ckpt CLI reads it;
        ValueError when neither is given.
    job: "tenant/name". Required.
    max_to_keep, keep_checkpoint_every_n_hours: TF's semantics (the hours
        need max_to_keep).
    keep_best: (k, metric[, mode]) or {"k", "metric"[, "mode"]}: keep the k
        best checkpoints by the metric; mode "min", "max" or "auto" (the
        default: by the metric's name as Keras does, "loss" minimised, "acc"
        maximised, anything else a ValueError asking for min or max). A NaN
        value is never among the best; a checkpoint without the metric is
        kept. When no checkpoint has the metric, keep_best decides nothing.
    keep_within, keep_hourly, keep_daily, keep_weekly, keep_monthly,
        keep_tags: restic's `forget` rules. keep_within: "30m", "6h", "1d",
        "2w" or a datetime.timedelta, measured from the newest checkpoint;
        keep_hourly/daily/weekly/monthly N: the newest checkpoint of each of
        the N newest hours, days, ISO weeks, months (UTC); keep_tags: tag
        names (keys of a save's tags) whose checkpoints are never deleted. A
        server that predates them makes the first save fail (nothing sent)
        rather than drop them.
        The retention arguments, when any is set, become the job's policy on
        the server with every save (the server enforces it at each commit);
        when none is set, the job's stored policy stays. They are a
        writer's policy: an operator's (`ckpt policy set JOB`, or the
        tenant's default) wins, and then the server ignores them, the
        first save issues a RetentionPolicyIgnoredWarning saying who set
        the policy that applies, and the job keeps the operator's.
    save_best_only, monitor, mode: as Keras's ModelCheckpoint: with
        save_best_only=True, save() takes a checkpoint only when the metric
        `monitor` (required then) in its metrics strictly improves on the
        best so far, and otherwise returns False without uploading
        anything. mode ("min", "max" or "auto") as keep_best's. The best so
        far starts as the best of the job's committed checkpoints on the
        server (best_step), so a restarted job keeps its best. A NaN value
        never improves; an infinity is compared as the extreme it is. A
        save() without the monitored metric raises ValueError (Keras warns
        and skips). Every rank must pass the same value of it: each rank
        decides alone, and a checkpoint commits only when all ranks save.
        Unlike keep_best, which prunes after each commit by the whole
        ranking and always keeps the newest checkpoint, save_best_only
        decides before uploading and never deletes: earlier bests stay
        until retention (max_to_keep, keep_best, ...) removes them, and the
        newest checkpoint is not the newest step when later steps did not
        improve. The two combine: save_best_only with
        keep_best=(1, monitor) keeps only the best. With checkpoint_interval,
        a step it skips counts as taken (the interval paces the evaluation
        points; save_best_only filters them).
    checkpoint_interval: save() skips a step fewer than this many steps
        after the last checkpoint (the latest on the server at start), as
        TF's CheckpointManager does.
    rank, world_size: default to torch.distributed's when it is
        initialised, else 0 and 1; 0 <= rank < world_size. A checkpoint
        becomes visible once all world_size ranks have saved their shard of
        it.
    async_save: save() returns once the state is copied to host memory; the
        upload and commit run on a background thread, one save at a time
        (the next save waits for the previous); errors are raised by the
        next save(), wait() or close(). The copy goes into a staging pool
        allocated once (at the first save, the state's size) and reused by
        every later save, filled on several threads; pinned (exactly its
        size, with cudaHostRegister) once a state holds CUDA tensors, never
        for a CPU state, which creates no CUDA context (ckpt/staging.py).
        close() frees it.
    staging_bytes: the most host memory the staging pool may take (an int
        >= 1, in bytes; the pool needs the state's tensor bytes, each
        rounded up to 64). A save whose state needs more raises
        ckpt.StagingBudgetError, saying both sizes, before anything is
        copied or sent: raise the budget or save with async_save=False
        (which reads CPU tensors in place; it is not streamed in parts,
        because save() could only return once the part past the budget
        was uploaded). The budget holds for the host copies of CUDA tensors
        in a synchronous save too. Default: None, the pool grows to the
        largest state saved (one copy of the state).
    incremental: saves every tensor of 2 or more dimensions as a row delta
        (Check-N-Run) when few of its rows changed: only the changed rows
        are uploaded and stored, on top of an earlier checkpoint. The rows
        are found by per-row XXH3 fingerprints against the base (or given
        with save(dirty_rows=...)); a policy writes a new full baseline when
        the delta grows too large (docs/architecture.md, "Incremental
        checkpoints: client"). Each save stores its rows' fingerprints (16
        bytes a row), so a restarted job picks up where it stopped: after
        restore() (or restore_or_initialize()) the next save is a delta on
        the restored checkpoint (on its baseline when it is a delta itself,
        as the intermittent policy says), found without reading its rows;
        last_restore["incremental_seed"] says per tensor. Without a restore
        a new manager's first save is full. Restores apply the deltas; they
        need no option. Default: False.
    delta_mode: "intermittent" (each delta against the last full baseline;
        a restore reads at most two versions) or "consecutive" (each delta
        against the previous save, at most max_chain_length deep).
    max_delta_fraction: a new baseline is written once a delta reaches this
        fraction of the tensor's full size. In (0, 1]. Default: 0.5.
    max_chain_length: consecutive mode: a baseline after this many deltas.
    allow_pickle: False (the default): everything but tensors is stored as
        a typed tree of plain values (None, bool, int, float, complex, str,
        bytes, list, tuple, dict, OrderedDict, Counter, numpy scalars),
        which cannot run code when restored; save() raises TypeError,
        naming the key, for any other value, and restore() refuses a
        checkpoint holding pickled data (ckpt.PickleNotAllowedError)
        without unpickling anything. True: such values are pickled into the
        tree, and pickled data (including checkpoints written by ckpt
        before the typed tree) is unpickled on restore. Unpickling runs
        whatever code the data names, so True trusts the server and every
        writer of the job as much as your own code (docs/security.md).
    tls_ca, tls_cert, tls_key, tls_server_name, token: how the Client the
        manager makes for a "HOST:PORT" server connects: TLS with the CA
        certificates in the PEM file tls_ca, mutual TLS with the client
        certificate and key files tls_cert and tls_key, a bearer token sent
        on every call (only over TLS or to a loopback address). Each
        defaults to its environment variable (CKPT_TLS_CA, CKPT_TLS_CERT,
        CKPT_TLS_KEY, CKPT_TLS_SERVER_NAME, CKPT_TOKEN); see ckpt.Client.
        Not allowed when server is a ckpt.Client (it is connected already).

    An async save that fails and is never raised by wait(), close() or a
    later save() (the script ends without them) is printed to stderr at
    interpreter exit, and the exit status becomes 1.

    Not thread-safe: use one manager from one thread.
    """

    def __init__(self, server=None, job=None, *, max_to_keep=None,
                 keep_checkpoint_every_n_hours=None, keep_best=None,
                 keep_within=None, keep_hourly=None, keep_daily=None,
                 keep_weekly=None, keep_monthly=None, keep_tags=None,
                 save_best_only=False, monitor=None, mode="auto",
                 checkpoint_interval=None, rank=None, world_size=None,
                 async_save=False, incremental=False,
                 delta_mode="intermittent", max_delta_fraction=0.5,
                 max_chain_length=8, allow_pickle=False, tls_ca=None,
                 tls_cert=None, tls_key=None, tls_server_name=None,
                 token=None, staging_bytes=None):
        # Every argument is checked before anything reaches the server.
        if job is None and isinstance(server, str) and "/" in server and \
                ":" not in server:
            raise TypeError(
                f"job is required; {server!r} was passed as the server "
                f'("HOST:PORT"): pass job="{server}" (the server defaults '
                "to $CKPT_SERVER)")
        self._job = arguments.job(job)
        self._policy = arguments.retention_policy(
            max_to_keep, keep_checkpoint_every_n_hours, keep_best,
            keep_within=keep_within, keep_hourly=keep_hourly,
            keep_daily=keep_daily, keep_weekly=keep_weekly,
            keep_monthly=keep_monthly, keep_tags=keep_tags)
        # save_best_only: the monitored metric (None: every save is taken).
        self._monitor = _monitor(save_best_only, monitor, mode)
        self._mode = mode
        self._checkpoint_interval = arguments.optional_integer(
            "checkpoint_interval", checkpoint_interval, minimum=0)
        if rank is None or world_size is None:
            default_rank, default_world_size = _distributed_rank()
            rank = default_rank if rank is None else rank
            world_size = default_world_size if world_size is None \
                else world_size
        self._rank, self._world_size = arguments.rank_and_world_size(
            rank, world_size)
        self._async = arguments.boolean("async_save", async_save)
        self._staging = StagingPool(
            budget=arguments.optional_integer(
                "staging_bytes", staging_bytes, minimum=1),
            torch=_torch())
        self._allow_pickle = arguments.boolean("allow_pickle", allow_pickle)
        delta_mode = arguments.choice("delta_mode", delta_mode,
                                      ("intermittent", "consecutive"))
        max_delta_fraction = arguments.number(
            "max_delta_fraction", max_delta_fraction, positive=True)
        if max_delta_fraction > 1:
            raise ValueError("max_delta_fraction must be in (0, 1], not "
                             f"{max_delta_fraction}")
        max_chain_length = arguments.integer(
            "max_chain_length", max_chain_length, minimum=1,
            maximum=arguments.MAX_INT32)
        # Remembers, per tensor, what the next delta is taken against.
        self._saver = IncrementalSaver(
            delta_mode=delta_mode, max_delta_fraction=max_delta_fraction,
            max_chain_length=max_chain_length) \
            if arguments.boolean("incremental", incremental) else None
        self._client = connect(server, tls_ca=tls_ca, tls_cert=tls_cert,
                                tls_key=tls_key,
                                tls_server_name=tls_server_name, token=token)
        committed = self.checkpoints()
        self._last_step = committed[-1]["step"] if committed else None
        # save_best_only: the monitored value to beat (None: none yet).
        self._best = None
        if self._monitor is not None:
            try:
                self._best = best_checkpoint(committed, self._monitor,
                                             mode)["metrics"][self._monitor]
            except KeyError:  # no committed checkpoint ranks by it
                pass
        self._thread = None
        self._error = None  # (error, its _unreported key) of the async save
        self._closed = False
        self._last_plan = None
        self._last_quantization = None
        self._warned_policy_ignored = False

    @property
    def job(self):
        return self._job

    @property
    def rank(self):
        return self._rank

    @property
    def world_size(self):
        return self._world_size

    @property
    def client(self):
        return self._client

    @property
    def latest_step(self):
        """The latest committed step on the server, or None."""
        return self._client.latest_step(self._job)

    def all_steps(self):
        """Committed steps, ascending."""
        return [record["step"] for record in self.checkpoints()]

    def checkpoints(self):
        """Committed checkpoints as dicts (step, metrics, tags, times,
        world_size, logical_bytes, pinned, ...), ascending step."""
        try:
            return self._client.list_checkpoints(self._job)
        except KeyError:  # the job does not exist before its first save
            return []

    def best_step(self, metric, mode="auto"):
        """The step of the best committed checkpoint by `metric` (mode "min",
        "max" or "auto", as keep_best), by the rules keep-best retention,
        save_best_only and `ckpt get JOB best` share: a NaN value is never
        best, a checkpoint without the metric is not ranked, and of equal
        values the lower step wins. KeyError (code NOT_FOUND) when no
        committed checkpoint has a non-NaN value of it, saying how many
        have it at all (a misspelt name shows as none); ValueError when
        auto cannot tell the direction. Like latest_step, it sees committed
        checkpoints only: wait() for a pending async save first."""
        metric = arguments.metric_name("metric", metric)
        mode = arguments.metric_mode("mode", mode, metric)
        return best_checkpoint(self.checkpoints(), metric, mode)["step"]

    @property
    def last_quantization(self):
        """The last completed save's tensors saved quantized (ckpt.Quantized)
        as {name: {"bits", "max_abs_error", "relative_l2_error"}}, the error
        measured over the tensor against the original; None before the
        first save."""
        return self._last_quantization

    @property
    def last_plan(self):
        """incremental only: the last completed save's decision per tensor,
        a list of (name, "full" | "delta", base_step, changed_rows, reason);
        None before the first."""
        return self._last_plan

    def save(self, state, step, metrics=None, dirty_rows=None, tags=None):
        """Saves this rank's `state` as checkpoint `step` (an int >= 0).
        Returns False when checkpoint_interval or save_best_only skips the
        step, True otherwise (with async_save, once the state is copied to
        host memory).

        metrics: {name: number} stored with the checkpoint, for keep_best,
        best_step() and save_best_only (NaN is stored and never best). With
        several ranks, the server keeps the first value it receives of each
        metric: pass them on every rank (save_best_only needs it) or on
        rank 0 only.

        tags: labels stored with the checkpoint as `ckpt put --tag` stores
        them (`ckpt ls`, `ckpt show`, checkpoints()[i]["tags"]): a list of
        "NAME=VALUE" str, or a dict {name: value} of str; a name given twice
        is refused. As metrics, the first value of a tag wins across ranks.

        dirty_rows (incremental=True only, ValueError otherwise): maps a
        tensor's name, as the manager names it ("model/embedding.weight";
        the dotted path "model.embedding.weight" also works), to the rows
        (indices along its first dimension: a 1-D integer tensor, array or
        list, any order, repeats allowed) changed since the previous save.
        Those tensors are not compared by fingerprints (only the listed
        rows are hashed, for the record stored with the save); the rows
        listed must include every changed row, or the checkpoint restores
        stale rows. A later save without dirty_rows is compared with the
        fingerprints kept up to date this way, so it can still be a
        delta."""
        self._check_open()
        self._join()
        step = arguments.integer("step", step, minimum=0)
        metrics = arguments.metrics(metrics)
        tags = arguments.tags(tags)
        if dirty_rows and self._saver is None:
            raise ValueError(
                "dirty_rows needs CheckpointManager(..., incremental=True)")
        if self._checkpoint_interval is not None and \
                self._last_step is not None and \
                step < self._last_step + self._checkpoint_interval:
            return False
        if self._monitor is not None and \
                not self._improves(metrics.get(self._monitor)):
            self._last_step = step  # an evaluation point of the interval
            return False
        # The previous save has finished (joined above): the staging pool
        # is free to be overwritten.
        tensors, keep_alive, quantize, staged = _flatten(
            state, copy=self._async, staging=self._staging,
            allow_pickle=self._allow_pickle,
            what=f"save of step {step}")
        try:
            dirty = _dirty_rows_by_name(dirty_rows or {}, tensors)
        except BaseException:
            self._staging.release()
            raise
        kwargs = dict(rank=self._rank, world_size=self._world_size,
                      metrics=metrics, tags=tags,
                      retention_policy=self._policy, quantize=quantize)
        # A failed save takes no checkpoint: checkpoint_interval then counts
        # from the one before again, and save_best_only's best is the one
        # before.
        previous = (self._last_step, self._best)
        self._last_step = step
        if self._monitor is not None:
            self._best = metrics[self._monitor]
        if not self._async:
            try:
                self._save_shard(step, tensors, kwargs, dirty)
            except BaseException:
                self._last_step, self._best = previous
                raise
            finally:
                if staged:  # host copies of CUDA tensors
                    self._staging.release()
            return True

        def upload():
            # Planning (fingerprinting) runs here too, on the host copies.
            try:
                self._save_shard(step, tensors, kwargs, dirty)
            except BaseException as error:  # re-raised on the caller's thread
                self._error = (error, _unreported.add(
                    f"ckpt: the async save of step {step} of job "
                    f"'{self._job}' (rank {self._rank}) failed, and no "
                    "wait(), close() or later save() raised it: "
                    f"{_error_type_name(error)}: {error}"))
                # No save runs meanwhile: the next one joins this thread.
                self._last_step, self._best = previous
            finally:
                # Read to the end (or given up): the next save may fill the
                # pool again, whether this one succeeded or failed.
                self._staging.release()

        # The thread's closure holds `tensors` (views of the staging pool)
        # until it ends; `keep_alive` is not needed past this point.
        del keep_alive
        # Not a daemon: an interpreter exiting without close() still
        # finishes the last save instead of leaving it pending.
        self._thread = threading.Thread(target=upload,
                                        name=f"ckpt-save-{step}")
        try:
            self._thread.start()
        except BaseException:
            self._thread = None
            self._last_step, self._best = previous
            self._staging.release()
            raise
        return True

    @property
    def staging(self):
        """The staging pool as a dict: budget (staging_bytes), capacity
        (bytes allocated; 0 before the first copying save and after
        close()), allocations (how many times it was allocated: 1 while
        the states fit), address (of its memory, the same across saves
        while reused; None when not allocated), pinned (only after a save
        of CUDA tensors), pin_error (why pinning failed, else None), busy
        (a save's upload still reads it)."""
        return self._staging.stats()

    def _improves(self, value):
        """save_best_only: whether the monitored `value` (None: the save's
        metrics lack it) beats the best so far."""
        if value is None:
            raise ValueError(
                f"save_best_only: save() needs the monitored metric "
                f"'{self._monitor}' in metrics, to decide whether to save")
        return improves_on(value, self._best, self._monitor, self._mode)

    def _save_shard(self, step, tensors, kwargs, dirty):
        if self._saver is None:
            result = self._client.save_shard(self._job, step, tensors,
                                             **kwargs)
        else:
            # On failure the saver forgets its history: the next save is
            # full.
            result = self._client.save_shard(self._job, step, tensors,
                                             saver=self._saver,
                                             dirty_rows=dirty, **kwargs)
            self._last_plan = result["plan"]
        self._last_quantization = result["quantized"]
        ignored = result.get("retention_policy_ignored")
        if ignored and not self._warned_policy_ignored:
            self._warned_policy_ignored = True
            warnings.warn(f"ckpt: job '{self._job}': {ignored}",
                          RetentionPolicyIgnoredWarning, stacklevel=3)

    def restore(self, step=None, into=None, *, strict=True, keys=None,
                map_location=None, allow_partial_ranks=False, best=None,
                mode="auto"):
        """This rank's state of checkpoint `step` (the latest committed
        when None; with `best`, the best by that metric, see best_step).
        KeyError when there is no such checkpoint. docs/restore.md is the
        guide.

        Sharded tensors (saved as ckpt.Shard) come back whole, assembled
        from every rank's box; a ckpt.Shard(empty_local, global_shape,
        offsets) in `into` receives only its region, read in place. Any
        world size restores any checkpoint: with another world size than
        the checkpoint's, values every rank saved identically (and
        ckpt.Replicated tensors) come back on every rank, per-rank values
        (rank r's own tensors and objects) on the ranks that exist in both
        layouts; a per-rank value that cannot be mapped (its rank is gone,
        or this rank is new) raises ckpt.PartialRestoreError listing them
        all, unless allow_partial_ranks=True, which restores the rest and
        lists them in last_restore["unmapped"].

        into: a state of the same structure whose tensors (torch, numpy,
            ckpt.Shard, ckpt.Quantized) are written in place and returned
            at their positions; dtypes are never converted. A target whose
            shape or dtype differs raises ckpt.StateMismatchError naming
            the key. strict=True (the default) also refuses a missing key
            (a tensor of `into` the checkpoint lacks) or an unexpected key
            (a tensor of the checkpoint `into` lacks); strict=False fills
            what matches, returns the checkpoint's other tensors as new
            ones and lists both kinds in last_restore. Everything is
            checked before anything is written.
        keys: path prefixes ("model", "optimizer/state"): only the tensors
            under them are read (besides the small state tree), and the
            result holds only them. KeyError for a key naming nothing.
        map_location: places restored tensors (not `into`'s), as torch.load
            takes it: a device ("cuda:0", torch.device), {"cpu": device},
            or a function fn(tensor, "cpu") returning the tensor to use
            (None: keep it on the CPU).

        The restore is recorded in the job's history once it succeeded;
        last_restore then describes it."""
        self._check_open()
        self._join()
        if best is not None:
            if step is not None:
                raise ValueError("restore: pass step or best, not both")
            step = self.best_step(best, mode)
        # With step None the server picks the latest as it reads the
        # manifest, in one call: a checkpoint pruned meanwhile cannot be
        # chosen. Its NOT_FOUND arrives as KeyError.
        state, self._last_restore = Restore(
            self._client, self._job, self._rank, self._world_size,
            self._allow_pickle).run(
                None if step is None else arguments.integer(
                    "step", step, minimum=0), into,
                arguments.boolean("strict", strict), keys, map_location,
                arguments.boolean("allow_partial_ranks",
                                  allow_partial_ranks))
        if self._saver is not None and keys is not None:
            # Only part of the state came back; the caller's other tensors
            # are not the checkpoint's, so no history is assumed for any.
            self._saver.forget()
            self._last_restore["incremental_seed"] = {
                "step": self._last_restore["step"], "tensors": [],
                "fingerprint_bytes_read": 0,
                "error": "restore(keys=...) restored part of the state: the "
                         "next save is full"}
        elif self._saver is not None:
            # The next save is a delta on what was restored, from the
            # fingerprints stored with it (never the rows): a restarted job
            # does not write a full baseline.
            self._last_restore["incremental_seed"] = self._client.seed_saver(
                self._saver, self._job, self._last_restore["step"],
                rank=self._rank)
        return state

    def export(self, step, path, *, format="safetensors", full=None,
               rank=None, world_size=None, weights_only=True,
               max_file_bytes=None):
        """Writes committed checkpoint `step` (None: the latest) of the job
        into directory `path` (made if absent) as portable files
        (docs/portability.md, "From Python"); returns a report dict (job,
        step, format, files, tensors, tensor_bytes, ...). As `ckpt export`,
        records a `restored` event of rank 0 (rank R for a rank view) once
        the files are complete.

        What it holds: by default (full), the whole checkpoint, whatever
        this manager's rank (call it on one process of a job, e.g. rank
        0); with rank=R and world_size=M, rank R's part of a job of M
        ranks: for format torch what restore() gives that rank (sharded
        tensors whole), for safetensors its rows of each sharded tensor
        (`ckpt export --rank`'s rule). A full export of a
        checkpoint saved by several ranks holds values every rank saved
        alike, ckpt.Replicated tensors and ckpt.Shard tensors assembled
        whole; per-rank values (which differ between ranks) cannot be one
        state: format="torch" raises ckpt.PartialRestoreError listing them
        (export each rank's view instead), never rank 0's alone.

        format="safetensors": the tensors in safetensors files (split with
            model.safetensors.index.json past max_file_bytes, default 5
            GiB; a per-rank tensor whose ranks' copies differ as
            rank-N/NAME), and ckpt_checkpoint.json with the metadata,
            metrics, tags and, under "objects", each rank's non-tensor
            state as tagged JSON (ckpt/tree_json.py), in place of the
            __ckpt_state__ tensor.
        format="torch": checkpoint.pt, the state restore() gives for the
            view, written with torch.save: torch.load(path) returns it
            (sharded tensors whole, quantized ones dequantized as float32),
            plus ckpt_checkpoint.json with the metadata, metrics and tags.
            weights_only=True (the default) makes it a file
            torch.load(path, weights_only=True) reads: numpy arrays and
            scalars become torch tensors of the same dtype and shape (0-d
            for scalars; uint16/32/64, which torch lacks, raise
            TypeError), and the state is checked against the installed
            torch's weights_only loader: a value it cannot read (torch 1.13
            reads no float, bytes, complex or Counter; newer torch reads
            them) raises TypeError naming its key. weights_only=False keeps
            every value as restore() returns it; the file then needs
            torch.load(path, weights_only=False), which trusts the file.

        An existing file of the same name is never overwritten (ckpt.Error
        ALREADY_EXISTS); files are written under temporary names and
        renamed once complete, so a failed export leaves none. KeyError
        for a step the job lacks."""
        self._check_open()
        self._join()
        return portable.export(
            self._client, self._job, step, path, format=format, full=full,
            rank=rank, world_size=world_size, weights_only=weights_only,
            allow_pickle=self._allow_pickle, max_file_bytes=max_file_bytes)

    def import_dir(self, path, step, *, rank=None, world_size=None,
                   metrics=None, tags=None, objects=True):
        """ckpt.import_dir(self.client, path, self.job, step, ...,
        allow_pickle=this manager's): imports directory `path` (safetensors
        files, or a torch export's checkpoint.pt) as checkpoint `step` of
        this job (rank and world_size: None, ckpt_checkpoint.json's, else
        0 of 1). restore() of a checkpoint imported from files without
        ckpt's objects (e.g. a Hugging Face directory) returns a flat dict
        {tensor name: tensor}."""
        self._check_open()
        self._join()
        return portable.import_dir(self._client, path, self._job, step,
                                   rank=rank, world_size=world_size,
                                   metrics=metrics, tags=tags,
                                   objects=objects,
                                   allow_pickle=self._allow_pickle)

    _last_restore = None

    @property
    def last_restore(self):
        """The last successful restore() as a dict: step, world_size (the
        checkpoint's), chunks_fetched, bytes_fetched (distinct chunks read,
        state trees included), bytes_used (bytes of the regions read),
        missing_keys and unexpected_keys (restore(into=...), strict=False),
        unmapped ([(rank, key)] per-rank entries not restored, with
        allow_partial_ranks=True); None before the first."""
        return self._last_restore

    def restore_or_initialize(self, init_fn, **restore_args):
        """The latest checkpoint's state, or init_fn()'s result when the
        job has none. restore_args (into, strict, keys, map_location,
        allow_partial_ranks) go to restore()."""
        if self.latest_step is None:
            return init_fn()
        # The latest at restore time, which a save from another process
        # may have made newer than the one just seen.
        return self.restore(**restore_args)

    def wait(self):
        """Waits for the pending async save; raises its error, if any."""
        self._join()

    def close(self):
        """Waits for the pending save (raising its error); idempotent."""
        if self._closed:
            return
        try:
            self._join()
        finally:
            self._closed = True
            self._staging.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:  # do not mask the body's exception with the save's
            try:
                self.close()
            except Exception:
                pass
        return False

    def _check_open(self):
        if self._closed:
            raise ValueError("CheckpointManager is closed")

    def _join(self):
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            (error, key), self._error = self._error, None
            _unreported.discard(key)
            raise error


def _error_type_name(error):
    kind = type(error)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


class _UnreportedFailures:
    """Failed async saves that no call has raised yet. At interpreter exit
    (after the non-daemon save threads have been joined) they are printed
    to stderr and the process's exit status is set to 1: the extension's
    Py_AtExit hook ends the process with it once Python has finalised
    (every atexit handler run, stdio flushed), since an atexit handler
    itself cannot change the status."""

    def __init__(self):
        self._lock = threading.Lock()
        self._messages = {}
        self._next_key = 0

    def add(self, message):
        with self._lock:
            self._next_key += 1
            self._messages[self._next_key] = message
            return self._next_key

    def discard(self, key):
        with self._lock:
            self._messages.pop(key, None)

    def report_at_exit(self):
        with self._lock:
            messages, self._messages = list(self._messages.values()), {}
        if not messages:
            return
        for message in messages:
            print(message, file=sys.stderr)
        print("ckpt: exiting with status 1 because of the failed save(s) "
              "above", file=sys.stderr)
        sys.stderr.flush()
        if not set_exit_status_at_finalize(1):
            # No finalize hook (CPython's table of them is full): end the
            # process now, skipping the atexit handlers still to run.
            sys.stdout.flush()
            os._exit(1)


_unreported = _UnreportedFailures()
atexit.register(_unreported.report_at_exit)


def _distributed_rank():
    torch = _torch()
    if torch is not None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    return 0, 1
