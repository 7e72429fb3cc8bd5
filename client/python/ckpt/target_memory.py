"""Where the targets of restore(into=...) lie in memory, so that a restore
never writes silently wrong values: a target whose own elements overlap
(an expand()ed or as_strided view, which a copy refuses only halfway
through the writes), a target without storage (the meta device, where a
copy does nothing), and two targets sharing memory (tied weights, views of
one buffer) that would receive different tensors, the last write winning.
"""

import numpy as np

_TooHardError = getattr(np, "exceptions", np).TooHardError


def storage_problem(value, is_torch):
    """Why `value` (a torch tensor or numpy array) cannot hold restored
    values, or None."""
    if is_torch and value.device.type == "meta":
        return "the target is on the meta device: it has no storage to " \
            "restore into (materialize it first, e.g. " \
            "module.to_empty(device='cpu'))"
    if _overlaps_itself(_shape_strides(value, is_torch)):
        return "the target's elements overlap in memory (an expand()ed or " \
            "as_strided view): several would receive one value; restore " \
            "into a tensor that owns its elements"
    return None


def _shape_strides(value, is_torch):
    """[(size, stride in elements)] of the dimensions of more than one
    element."""
    if is_torch:
        strides = value.stride()
    else:
        strides = [stride // value.itemsize for stride in value.strides]
    return [(size, stride) for size, stride in zip(value.shape, strides)
            if size > 1]


def _overlaps_itself(dims):
    """Whether two elements of a strided layout may share an address: dims
    sorted by |stride|, each must step past everything the inner ones
    span (the layouts torch and numpy make pass)."""
    if any(size == 0 for size, _ in dims):
        return False
    span = 0  # elements spanned by the inner dims, minus one
    for size, stride in sorted(dims, key=lambda dim: abs(dim[1])):
        if abs(stride) <= span:
            return True
        span += (size - 1) * abs(stride)
    return False


def _device_and_bounds(value, is_torch):
    """(address space, first byte, end byte) of what `value` may touch, or
    None when it holds no element."""
    if 0 in tuple(value.shape):
        return None
    if is_torch:
        itemsize = value.element_size()
        start = value.data_ptr()
        strides = [stride * itemsize for stride in value.stride()]
        device = value.device
        space = "cpu" if device.type == "cpu" else (device.type, device.index)
    else:
        itemsize = value.itemsize
        start = value.__array_interface__["data"][0]
        strides = list(value.strides)
        space = "cpu"
    steps = [(size - 1) * stride
             for size, stride in zip(value.shape, strides)]
    low = start + sum(min(0, step) for step in steps)
    high = start + itemsize + sum(max(0, step) for step in steps)
    return space, low, high


def host_array(value, is_torch, torch):
    """A numpy view of a CPU target's memory, or None."""
    if not is_torch:
        return value
    if value.device.type != "cpu" or value.is_conj() or value.is_neg():
        return None
    value = value.detach()
    if value.dtype == torch.bfloat16:
        value = value.view(torch.int16)
    return value.numpy()


def _share_memory(a, b, torch):
    """Whether targets a and b (with is_torch) have an element in common;
    True when it cannot be told cheaply."""
    first = host_array(a[0], a[1], torch)
    second = host_array(b[0], b[1], torch)
    if first is None or second is None:
        return True
    try:
        return bool(np.shares_memory(first, second, max_work=100000))
    except _TooHardError:
        return True


def same_memory(a, b):
    """Whether targets a and b ((value, is_torch)) are the same elements
    laid out alike (a tensor and a view of all of it)."""
    if a[1] != b[1] or tuple(a[0].shape) != tuple(b[0].shape):
        return False
    if a[1]:
        return a[0].device == b[0].device and \
            a[0].data_ptr() == b[0].data_ptr() and \
            a[0].stride() == b[0].stride()
    return a[0].__array_interface__["data"][0] == \
        b[0].__array_interface__["data"][0] and a[0].strides == b[0].strides


def sharing_pairs(targets, torch):
    """[(i, j)] of the targets (a list of (value, is_torch)) that share
    memory, i < j; the same object twice counts. Sorted by address, only
    neighbours whose byte ranges meet are compared exactly."""
    spans = []
    for index, (value, is_torch) in enumerate(targets):
        bounds = _device_and_bounds(value, is_torch)
        if bounds is not None:
            spans.append((repr(bounds[0]), bounds[1], bounds[2], index))
    spans.sort()
    pairs = []
    open_spans = []  # (end, index, space) of spans that may still meet
    for space, low, high, index in spans:
        open_spans = [item for item in open_spans
                      if item[2] == space and item[0] > low]
        for _, other, _ in open_spans:
            if _share_memory(targets[other], targets[index], torch):
                pairs.append((min(other, index), max(other, index)))
        open_spans.append((high, index, space))
    return pairs
