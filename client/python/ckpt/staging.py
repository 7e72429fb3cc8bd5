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
pool.

Pinning: only a save whose state holds CUDA tensors pins the pool
(page-locks it, so that device-to-host copies run at full speed and need
not block); a CPU state never touches CUDA, so no CUDA context is created
for it. The pool is ordinary host memory registered with cudaHostRegister
(torch.cuda.cudart()), not torch's pinned allocator: that one rounds each
allocation up to a power of two (a 5 GiB state would pin 8 GiB) and keeps
freed blocks cached for reuse, so close() would give nothing back. A
registered pool pins exactly the pages it spans, which the budget counts,
and close() unregisters and frees them. When registration fails (a
locked-memory limit), the pool stays unpinned: device copies then block,
but the bytes are the same (stats()["pin_error"] says why).

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

# cudaHostRegisterPortable: pinned for every CUDA context, so copies from
# any device run asynchronously into it.
_HOST_REGISTER_PORTABLE = 1


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
        self._pin = None     # _Registration while the pool is pinned
        self.pin_error = None
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
        """Whether the buffer is page-locked for CUDA copies (only after a
        save of CUDA tensors). Asks nothing of CUDA."""
        return self._pin is not None

    def stats(self):
        return {"budget": self.budget, "capacity": self.capacity,
                "allocations": self.allocations, "address": self.address,
                "pinned": self.pinned, "pin_error": self.pin_error,
                "busy": self.busy}

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
        cuda = has_cuda_sources(source for source, *_ in pending)
        if needed > self.capacity:
            self._allocate(needed, pin=cuda)
        elif cuda and not self.pinned and self.pin_error is None:
            self._register()
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
        """Frees the buffer, unpinned first (a later save allocates
        again)."""
        self._pending = []
        self._free()
        self.busy = False

    def _free(self):
        if self._pin is not None:
            self._pin.release()
            self._pin = None
        self._buffer = self._bytes = None

    def _allocate(self, size, pin):
        # Free the old buffer first: never two at once.
        self._free()
        self.pin_error = None
        # Exactly `size` bytes (plus at most one cache line to align the
        # start), from the C allocator: a large one is its own mapping,
        # returned to the system when freed.
        raw = np.empty(size + ALIGNMENT, dtype=np.uint8)
        start = -raw.__array_interface__["data"][0] % ALIGNMENT
        self._bytes = raw[start:start + size]
        torch = self._torch
        self._buffer = self._bytes if torch is None else \
            torch.from_numpy(self._bytes)
        self.allocations += 1
        if pin:
            self._register()

    def _register(self):
        """Pins the buffer for CUDA copies (only called for a state with
        CUDA tensors, so torch has CUDA)."""
        if not self.capacity:
            return
        cudart = self._torch.cuda.cudart()
        error = cudart.cudaHostRegister(self.address, self.capacity,
                                        _HOST_REGISTER_PORTABLE)
        if int(error) != 0:
            self.pin_error = (f"cudaHostRegister of {self.capacity} bytes: "
                              f"{cudart.cudaGetErrorString(error)}")
            return
        self._pin = _Registration(cudart, self.address, self._bytes)

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
            # A slice of the torch view of the pool (torch finds it pinned
            # by its address when it is registered).
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


def has_cuda_sources(sources):
    """Whether any of `sources` (torch tensors or numpy arrays) is on a CUDA
    device: only then does the pool pin. Reads each tensor's device only,
    so a CPU state never initializes CUDA."""
    return any(not isinstance(source, np.ndarray) and
               source.device.type == "cuda" for source in sources)


class _Registration:
    """The pool's memory registered with CUDA (cudaHostRegister), undone
    once by release() or, failing that, before the memory it holds is
    freed."""

    def __init__(self, cudart, address, memory):
        self._cudart = cudart
        self._address = address
        self._memory = memory  # kept alive until unregistered

    def release(self):
        if self._memory is not None:
            self._cudart.cudaHostUnregister(self._address)
            self._memory = None

    def __del__(self):
        self.release()


class _Reserved:
    """Stands for a host array until StagingPool.fill() makes it."""

    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index
