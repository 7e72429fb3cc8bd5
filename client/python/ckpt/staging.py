"""The staging pool of CheckpointManager: host memory an async save copies
its tensors into before save() returns (and a save of CUDA tensors copies
them to the host through), allocated once and reused by every later save,
filled on several threads.

Why: a fresh host copy per save pays the page faults of newly allocated
memory (a 256 MiB clone blocked ~0.25 s on the development machine, a copy
into memory already touched ~0.05 s), and the allocator may keep or
fragment what each save freed, so the process's memory grows across saves,
the most reported checkpointing bug of 2025-2026 (Orbax, DCP, Megatron).
One buffer, sized to the state, stays for the manager's life.

The copies run in C++ (ckpt._ckpt.copy_buffers: glibc memcpy on several
threads, the GIL released), ~1.8x faster than torch's copy_ on one core
here. Tensors it cannot read as plain bytes (CUDA, strided views,
conjugate or negative views) are copied by torch into their place in the
pool; the pool is pinned (page-locked, torch.empty(pin_memory=True)) when
CUDA is available, so device-to-host copies run at full speed.

The budget (CheckpointManager(staging_bytes=...)): the pool never grows
past it. A state whose tensors need more is refused before anything is
copied or sent (StagingBudgetError, with both sizes), rather than streamed
in parts: save() may only return once every byte is either copied or
uploaded, so a streamed save would block for the upload of everything past
the budget, a synchronous save in disguise. The error says to raise the
budget or to save synchronously (async_save=False), the caller's choice.
"""

import numpy as np

from ckpt._ckpt import copy_buffers

# Each tensor's bytes start on a cache line of the pool: no two tensors
# share one (the copy threads never write the same line), and every dtype's
# alignment holds for its view.
ALIGNMENT = 64


class StagingBudgetError(ValueError):
    """A save needs more staging memory than CheckpointManager's
    staging_bytes allows; nothing was copied or sent. `needed` and `budget`
    are the two sizes in bytes."""

    def __init__(self, message, needed, budget):
        super().__init__(message)
        self.needed = needed
        self.budget = budget


def _aligned(size):
    return (size + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def _mib(size):
    return f"{size / (1 << 20):.1f} MiB"


class StagingPool:
    """One host buffer reused by every save of a manager. budget: the most
    bytes it may hold (None: as many as the largest state saved). threads:
    copy threads (0: the machine's, at most 8).

    A save reserves space for each tensor (reserve), then fill() sizes the
    buffer (allocating only when it is too small for this save, never past
    the budget), copies every tensor in, and returns the host arrays, views
    of the buffer. The pool is busy from fill() until release() of that
    save: the arrays must not be read after release(), since the next save
    overwrites them. Not thread-safe: the manager fills it on its caller's
    thread and releases it when the upload ends (the next save joins that
    upload first)."""

    def __init__(self, budget=None, threads=0, torch=None):
        self.budget = budget
        self.threads = threads
        self._torch = torch
        self._buffer = None  # torch uint8 tensor or numpy uint8 array
        self._bytes = None   # numpy uint8 view of all of _buffer
        self.allocations = 0
        self.busy = False
        self._pending = []

    @property
    def capacity(self):
        """Bytes allocated (0 before the first save and after close)."""
        return 0 if self._bytes is None else int(self._bytes.size)

    @property
    def address(self):
        """The buffer's address (None when none is allocated): the same
        across saves while it is reused."""
        if self._bytes is None:
            return None
        return int(self._bytes.__array_interface__["data"][0])

    @property
    def pinned(self):
        return self._buffer is not None and self._torch is not None and \
            isinstance(self._buffer, self._torch.Tensor) and \
            self._buffer.is_pinned()

    def stats(self):
        return {"budget": self.budget, "capacity": self.capacity,
                "allocations": self.allocations, "address": self.address,
                "pinned": self.pinned, "busy": self.busy}

    def reserve(self, source, dtype, shape):
        """Space for a copy of `source` (a torch tensor, detached, or a
        numpy array) read as numpy dtype `dtype` of `shape`; returns a
        placeholder that fill() replaces with the host array."""
        if self.busy:
            raise RuntimeError("ckpt: the staging pool is still in use by "
                               "the previous save")
        placeholder = _Reserved(len(self._pending))
        nbytes = int(np.dtype(dtype).itemsize * int(np.prod(shape)))
        self._pending.append((source, np.dtype(dtype), tuple(shape), nbytes))
        return placeholder

    def needed(self):
        """Bytes the reserved copies take in the pool."""
        return sum(_aligned(nbytes) for *_, nbytes in self._pending)

    def discard(self):
        """Forgets the reservations (a save that failed before fill)."""
        self._pending = []

    def fill(self, what="save"):
        """The host arrays of the reserved copies, in reservation order,
        once every byte is copied; StagingBudgetError (nothing copied)
        when they need more than the budget."""
        pending, self._pending = self._pending, []
        needed = sum(_aligned(nbytes) for *_, nbytes in pending)
        if self.budget is not None and needed > self.budget:
            raise StagingBudgetError(
                f"ckpt: the {what} needs {needed} bytes ({_mib(needed)}) of "
                f"staging memory for the state's tensors, more than "
                f"staging_bytes={self.budget} ({_mib(self.budget)}); nothing "
                "was sent. Raise staging_bytes to at least the state's size, "
                "or save it synchronously (async_save=False), which reads "
                "CPU tensors in place", needed, self.budget)
        if needed > self.capacity:
            self._allocate(needed)
        arrays, memcpy_to, memcpy_from, by_torch = [], [], [], []
        offset = 0
        for source, dtype, shape, nbytes in pending:
            raw = self._bytes[offset:offset + nbytes]
            arrays.append(raw.view(dtype).reshape(shape))
            plain = self._plain_bytes(source)
            if plain is not None:
                memcpy_to.append(raw)
                memcpy_from.append(plain)
            elif nbytes:
                by_torch.append((offset, raw, source))
            offset += _aligned(nbytes)
        self.busy = True
        try:
            copy_buffers(memcpy_to, memcpy_from, self.threads)
            if by_torch:
                self._copy_by_torch(by_torch)
        except BaseException:
            self.busy = False
            raise
        return arrays

    def release(self):
        """Ends the hold of the save that filled the pool: the next may
        overwrite its arrays."""
        self.busy = False

    def close(self):
        """Frees the buffer (a later save allocates again)."""
        self._pending = []
        self._buffer = None
        self._bytes = None
        self.busy = False

    def _allocate(self, size):
        # Free the old buffer first: never two at once.
        self._buffer = self._bytes = None
        torch = self._torch
        if torch is not None:
            pin = bool(torch.cuda.is_available())
            self._buffer = torch.empty(size, dtype=torch.uint8,
                                       pin_memory=pin)
            self._bytes = self._buffer.numpy()
        else:
            self._buffer = self._bytes = np.empty(size, dtype=np.uint8)
        self.allocations += 1

    def _plain_bytes(self, source):
        """`source`'s bytes as a C-contiguous numpy array when it is host
        memory read as is (None otherwise: torch copies it)."""
        torch = self._torch
        if isinstance(source, np.ndarray):
            return source if source.flags.c_contiguous else None
        if source.device.type != "cpu" or not source.is_contiguous() or \
                source.is_conj() or source.is_neg() or source.numel() == 0:
            return None
        return source.reshape(-1).view(torch.uint8).numpy()

    def _copy_by_torch(self, copies):
        torch = self._torch
        devices = set()
        for offset, raw, source in copies:
            if isinstance(source, np.ndarray):  # a strided numpy view
                np.copyto(raw.view(source.dtype).reshape(source.shape),
                          source)
                continue
            # A slice of the torch buffer (not of its numpy view), so that
            # torch sees the pinned allocation it belongs to.
            target = self._buffer[offset:offset + raw.size].view(
                source.dtype).view(source.shape)
            device = source.device.type != "cpu"
            if device:
                devices.add(source.device)
            # Into pinned memory a device copy need not block; it is
            # waited for below, before save() returns.
            target.copy_(source.resolve_conj().resolve_neg(),
                         non_blocking=device and self.pinned)
        # Each source device's copies, not only the current device's: a
        # tensor on cuda:1 while cuda:0 is current would otherwise still be
        # landing when the upload reads it.
        for device in devices:
            if device.type == "cuda":
                torch.cuda.synchronize(device)


class _Reserved:
    """Stands for a host array until StagingPool.fill() makes it."""

    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index
