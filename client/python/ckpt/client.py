"""ckpt.Client: the binding of the C++ client library (ckpt._ckpt.Client)
with its arguments checked first (ckpt/arguments.py), so that a wrong type
or value raises TypeError or ValueError naming the argument instead of a
pybind11 conversion error, and a bool is never taken for a step or a rank.
Methods not redefined here are the binding's own."""

import warnings

from ckpt import _ckpt, arguments


class RetentionPolicyWarning(UserWarning):
    """A warning of the server about a policy Client.set_retention_policy
    set: the policy is stored, but part of it decides nothing (e.g. a
    keep_best metric no checkpoint has). ckpt policy set prints the same."""


class Client(_ckpt.Client):
    """Connects to the ckpt-server at `address` ("HOST:PORT"; None: the
    CKPT_SERVER environment variable, as the ckpt CLI reads it, and
    ValueError when that is not set either).

    connect_timeout: seconds to wait for the connection (0: connect on the
        first call). A call made while not connected waits up to 2 s for
        the connection, so a call to a server that is down fails after 2 s.
    shared_memory_restore: restore through shared memory when the server
        is on this host (docs/security.md). Default: True.
    tls_ca, tls_cert, tls_key: PEM files: the CA certificates to trust (TLS;
        plaintext without), the client certificate and its key (mutual
        TLS). tls_server_name: the name the server certificate must carry,
        when not the address's host. token: a bearer token sent on every
        call, only over TLS or to a loopback address. Each defaults to its
        environment variable (CKPT_TLS_CA, CKPT_TLS_CERT, CKPT_TLS_KEY,
        CKPT_TLS_SERVER_NAME, CKPT_TOKEN); '' ignores the variable.
    stream_stall_timeout: seconds a stream may wait on the server without
        progress: a save's upload (time the server takes no data; the
        client's own hashing between messages does not count), a restore's
        chunk read, a verify (the server sends a heartbeat at least every
        10 s). Past it the call fails with ckpt.Error code
        DEADLINE_EXCEEDED naming the server, so a hung server never blocks
        a training job forever. Progress-based: a large save over a slow
        link is never cut short for its size. > 0; math.inf: no bound.
        Every other call has a 5-minute deadline (garbage collection 6
        hours). Default: 120.

    Errors from the server: ValueError (INVALID_ARGUMENT), KeyError
    (NOT_FOUND), ckpt.Error otherwise, each with `.code` and `.message`.
    """

    def __init__(self, address=None, connect_timeout=0.0, *,
                 shared_memory_restore=True, tls_ca=None, tls_cert=None,
                 tls_key=None, tls_server_name=None, token=None,
                 stream_stall_timeout=120.0):
        super().__init__(
            arguments.server_address(address),
            arguments.number("connect_timeout", connect_timeout, minimum=0),
            shared_memory_restore=arguments.boolean("shared_memory_restore",
                                                    shared_memory_restore),
            tls_ca=arguments.optional_path("tls_ca", tls_ca),
            tls_cert=arguments.optional_path("tls_cert", tls_cert),
            tls_key=arguments.optional_path("tls_key", tls_key),
            tls_server_name=arguments.optional_text("tls_server_name",
                                                    tls_server_name),
            token=arguments.optional_text("token", token),
            stream_stall_timeout=arguments.number(
                "stream_stall_timeout", stream_stall_timeout, positive=True))

    def save_shard(self, job, step, tensors, *, rank=0, world_size=1,
                   metrics=None, tags=None, writer_time=None,
                   retention_policy=None, chunk_bytes=None, saver=None,
                   dirty_rows=None, quantize=None):
        """Saves rank `rank`'s tensors, (name, dtype, global_shape, offsets,
        lengths, buffer) tuples, as its shard of checkpoint `step`; the
        checkpoint commits once all world_size ranks have saved. metrics:
        {name: number}; tags: ["NAME=VALUE", ...] (as `ckpt put --tag`) or
        {name: value}; writer_time: Unix seconds; retention_policy: as
        set_retention_policy, applied at the commit."""
        rank, world_size = arguments.rank_and_world_size(rank, world_size)
        policy = None if retention_policy is None else \
            arguments.policy_dict(retention_policy)
        return super().save_shard(
            arguments.job(job), arguments.integer("step", step, minimum=0),
            tensors, rank=rank, world_size=world_size,
            metrics=arguments.metrics(metrics), tags=arguments.tags(tags),
            writer_time=arguments.optional_number("writer_time", writer_time,
                                                  finite=True),
            retention_policy=policy,
            chunk_bytes=arguments.optional_integer("chunk_bytes", chunk_bytes,
                                                   minimum=1),
            saver=saver, dirty_rows=dirty_rows or {}, quantize=quantize or {})

    def restore_shard(self, job, step=None, *, rank=0):
        """Rank `rank`'s tensors of checkpoint `step` (None: the latest
        committed) as (name, dtype, global_shape, offsets, lengths, array)."""
        return super().restore_shard(
            arguments.job(job), _optional_step(step),
            rank=arguments.integer("rank", rank, minimum=0,
                                   maximum=arguments.MAX_INT32))

    def restore_shard_into(self, job, step, *, rank, into):
        """restore_shard, reading each tensor into into[name] (a writable
        C-contiguous buffer of its exact byte size)."""
        return super().restore_shard_into(
            arguments.job(job), _optional_step(step),
            rank=arguments.integer("rank", rank, minimum=0,
                                   maximum=arguments.MAX_INT32),
            into=into)

    def list_checkpoints(self, job, *, include_uncommitted=False):
        """The job's checkpoints as dicts, ascending step; KeyError for a job
        the server does not know."""
        return super().list_checkpoints(
            arguments.job(job),
            include_uncommitted=arguments.boolean("include_uncommitted",
                                                  include_uncommitted))

    def latest_step(self, job):
        """The latest committed step, or None."""
        return super().latest_step(arguments.job(job))

    def set_retention_policy(self, job, policy):
        """Sets the job's policy, an operator's, {"max_to_keep", "keep_
        checkpoint_every_n_hours", "keep_best": (k, metric, mode), and
        restic's rules: "keep_within", "keep_hourly", ..., "keep_tags"}
        (absent or None: unset), and applies it now; returns the steps it
        deleted. Each warning of the server (e.g. "keep_best decides
        nothing: no checkpoint has metric M") is issued as a
        RetentionPolicyWarning."""
        deleted, server_warnings = super().set_retention_policy(
            arguments.job(job), arguments.policy_dict(policy))
        for text in server_warnings:
            warnings.warn(text, RetentionPolicyWarning, stacklevel=2)
        return deleted

    def get_retention_policy(self, job):
        """The policy that applies to the job (its own or its tenant's
        default) as a dict, or None when none does."""
        return super().get_retention_policy(arguments.job(job))

    def get_retention_policy_info(self, job):
        """The same with who set it, as `ckpt policy get` shows it:
        {"policy": dict or None, "origin": {"source": "operator", "writer"
        or "tenant_default", "principal", "time" (Unix seconds or None),
        "inferred"} or None from a server that predates origins}."""
        return super().get_retention_policy_info(arguments.job(job))

    def delete_checkpoint(self, job, step, force=False):
        """Deletes a committed or aborted checkpoint. A pinned one is
        refused (ckpt.Error FAILED_PRECONDITION) unless force=True, and the
        deletion's event then records that the pin was overridden."""
        if not isinstance(force, bool):
            raise TypeError(f"force must be a bool, got {type(force).__name__}")
        return super().delete_checkpoint(
            arguments.job(job), arguments.integer("step", step, minimum=0),
            force)

    def abort_checkpoint(self, job, step, reason=""):
        return super().abort_checkpoint(
            arguments.job(job), arguments.integer("step", step, minimum=0),
            arguments.text("reason", reason, nonempty=False))

    def get_manifest(self, job, step=None):
        """The Manifest of committed checkpoint `step` (None: the latest):
        its header and every rank's entries, to plan region reads from.
        Records no restore event."""
        return super().get_manifest(arguments.job(job), _optional_step(step))

    def read_regions(self, manifest, requests, outs):
        """Reads each request, (name, dtype, global_shape, offsets,
        lengths, source_rank or None), of `manifest` into outs[i] (a
        writable C-contiguous buffer of the region's bytes); returns
        {chunks_fetched, bytes_fetched, bytes_used}."""
        return super().read_regions(
            manifest, arguments.region_requests(requests), list(outs))

    def restore_regions(self, manifest, requests):
        """As read_regions, into new numpy arrays shaped as the regions:
        (arrays, stats)."""
        return super().restore_regions(manifest,
                                       arguments.region_requests(requests))

    def report_restore(self, job, step, rank):
        """Records in the job's history that `rank` restored `step`."""
        return super().report_restore(
            arguments.job(job), arguments.integer("step", step, minimum=0),
            arguments.integer("rank", rank, minimum=0,
                              maximum=arguments.MAX_INT32))


def _optional_step(step):
    return None if step is None else arguments.integer("step", step,
                                                       minimum=0)


def connect(server, **security):
    """`server` when it is a ckpt.Client, else a Client connected to that
    "HOST:PORT" (None: $CKPT_SERVER) with the TLS and token arguments
    (tls_ca, tls_cert, tls_key, tls_server_name, token; None: the
    environment's). ValueError when such an argument comes with a Client,
    which is connected already."""
    if isinstance(server, _ckpt.Client):
        given = sorted(name for name, value in security.items()
                       if value is not None)
        if given:
            raise ValueError(
                f"{', '.join(given)}: set on the ckpt.Client passed as "
                "server, not here")
        return server
    return Client(server, **security)
