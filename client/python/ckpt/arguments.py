"""Checks of the arguments users pass to ckpt.Client and CheckpointManager.

A wrong type raises TypeError and a wrong value ValueError, each naming the
argument, before anything reaches the C++ binding (whose conversion errors
do not say which argument was wrong) or the server (where an async save
would only report it later). A bool is refused where an integer or a number
is expected: True as a step, a rank or a count is a mistake, not 1. Each
check returns the value as the binding takes it (int, float, str, dict).
"""

import datetime
import math
import numbers
import operator
import os
from collections.abc import Mapping

import numpy as np

from ckpt._ckpt import parse_duration_seconds, resolve_metric_mode
from ckpt.state_layout import _torch

# The server's limits: common/manifest.h (kMaxMetricNameBytes) and the
# metadata check of server/service/lifecycle.cc.
MAX_METRIC_NAME_BYTES = 256
MAX_TAG_NAME_BYTES = 256
MAX_TAG_VALUE_BYTES = 4096
MAX_INT32 = 2**31 - 1
MAX_INT64 = 2**63 - 1
METRIC_MODES = ("min", "max", "auto")


def _shown(value, limit=40):
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _is_bool(value):
    return isinstance(value, (bool, np.bool_))


def integer(name, value, *, minimum=None, maximum=MAX_INT64):
    """`value` as an int: an int, a numpy integer or a one-element integer
    torch tensor (anything with __index__), not a bool or a float."""
    if _is_bool(value):
        raise TypeError(f"{name} must be an integer, not the bool {value}")
    try:
        result = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, not "
                        f"{type(value).__name__} {_shown(value)}") from None
    if minimum is not None and result < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {result}")
    if maximum is not None and result > maximum:
        raise ValueError(f"{name} must be <= {maximum}, not {result}")
    return result


def optional_integer(name, value, **limits):
    return None if value is None else integer(name, value, **limits)


def number(name, value, *, minimum=None, positive=False, finite=False):
    """`value` as a float: an int, float, numpy real scalar, or one-element
    real numpy array or torch tensor (a loss as computed); not a bool, str
    or complex."""
    torch = _torch()
    if _is_bool(value):
        raise TypeError(f"{name} must be a number, not the bool {value}")
    if torch is not None and isinstance(value, torch.Tensor):
        real = (value.numel() == 1 and not value.is_complex() and
                value.dtype != torch.bool)
    elif isinstance(value, np.ndarray):
        real = value.size == 1 and value.dtype.kind in "fiu"
        value = value.reshape(()).item() if real else value
    else:
        real = isinstance(value, numbers.Real)
    if not real:
        raise TypeError(f"{name} must be a number, not "
                        f"{type(value).__name__} {_shown(value)}")
    try:
        result = float(value)
    except OverflowError:  # an int beyond float's range
        raise ValueError(f"{name} {_shown(value)} is beyond the range of "
                         "a float") from None
    if (finite or positive or minimum is not None) and math.isnan(result):
        raise ValueError(f"{name} must be a number, not NaN")
    if finite and math.isinf(result):
        raise ValueError(f"{name} must be finite, not {result}")
    if positive and not result > 0:
        raise ValueError(f"{name} must be > 0, not {result}")
    if minimum is not None and result < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {result}")
    return result


def optional_number(name, value, **limits):
    return None if value is None else number(name, value, **limits)


def boolean(name, value):
    """`value` as a bool: only True or False (a numpy bool too); 0, 1 or a
    string such as "false" is refused rather than guessed at."""
    if not _is_bool(value):
        raise TypeError(f"{name} must be True or False, not "
                        f"{type(value).__name__} {_shown(value)}")
    return bool(value)


def text(name, value, *, nonempty=True, max_bytes=None):
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not "
                        f"{type(value).__name__} {_shown(value)}")
    if nonempty and not value:
        raise ValueError(f"{name} must not be empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate
        raise ValueError(f"{name} {_shown(value)} is not valid "
                         "Unicode") from None
    if max_bytes is not None and size > max_bytes:
        raise ValueError(f"{name} {_shown(value)} is longer than "
                         f"{max_bytes} bytes (UTF-8)")
    return value


def choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {options}, not "
                         f"{_shown(value)}")
    return value


def job(value):
    """A job name, "tenant/name" (the server checks its form)."""
    if value is None:
        raise TypeError('job is required: a "tenant/name" str')
    return text("job", value)


def server_address(value):
    """"HOST:PORT": `value`, or $CKPT_SERVER when it is None (as the ckpt
    CLI's --server)."""
    if value is None:
        value = os.environ.get("CKPT_SERVER", "")
        if not value:
            raise ValueError(
                "server: no address given and $CKPT_SERVER is not set; pass "
                'server="HOST:PORT" or set CKPT_SERVER, as for the ckpt CLI')
        return value
    return text("server", value)


def optional_path(name, value):
    """None (the caller's environment default), or a str, bytes or
    os.PathLike file name ("" turns the setting off)."""
    if value is None or isinstance(value, (str, bytes, os.PathLike)):
        return value
    raise TypeError(f"{name} must be a file name (str, bytes or os.PathLike) "
                    f"or None, not {type(value).__name__} {_shown(value)}")


def optional_text(name, value):
    return None if value is None else text(name, value, nonempty=False)


def rank_and_world_size(rank, world_size):
    world_size = integer("world_size", world_size, minimum=1,
                         maximum=MAX_INT32)
    rank = integer("rank", rank, minimum=0, maximum=MAX_INT32)
    if rank >= world_size:
        raise ValueError(f"rank must be < world_size ({world_size}), "
                         f"not {rank}")
    return rank, world_size


def metric_name(name, value):
    return text(name, value, max_bytes=MAX_METRIC_NAME_BYTES)


def metric_mode(name, value, metric):
    """`value` ("min", "max" or "auto") checked to resolve for `metric`: auto
    needs a loss-like or acc-like name (common/retention.h)."""
    choice(name, value, METRIC_MODES)
    try:
        resolve_metric_mode(metric, value)
    except ValueError as error:
        raise ValueError(f"{name}: {error.message}") from None
    return value


def metrics(value):
    """{name: float} of a Mapping of metric names to numbers. NaN and
    infinities are kept: NaN is never best (best_step, save_best_only,
    keep_best) and an infinity ranks as the extreme it is."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError("metrics must be a dict of metric names to numbers, "
                        f"not {type(value).__name__}")
    out = {}
    for key, number_value in value.items():
        metric_name("metrics: a metric name", key)
        out[key] = number(f"metrics[{key!r}]", number_value)
    return out


def _tag_name(key, name):
    """A tag name as common/tags.h allows it (the server has the last word:
    control characters too are refused there)."""
    text(f"{name}: a tag name", key, max_bytes=MAX_TAG_NAME_BYTES)
    if "=" in key:
        raise ValueError(f"{name}: tag name {key!r} contains '=' (tags are "
                         "shown as NAME=VALUE)")
    return key


def _tag(key, value, name):
    _tag_name(key, name)
    text(f"{name}[{key!r}]", value, nonempty=False,
         max_bytes=MAX_TAG_VALUE_BYTES)


def tags(value, name="tags"):
    """{name: value} of tags given as the ckpt CLI takes them (`ckpt put
    --tag NAME=VALUE`, repeatable): a list of "NAME=VALUE" str, or a
    Mapping of str to str. A name given twice is refused."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        out = dict(value)
        for key, tag_value in out.items():
            _tag(key, tag_value, name)
        return out
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f'{name} must be a list of "NAME=VALUE" str (as '
                        "`ckpt put --tag`) or a dict, not "
                        f"{type(value).__name__} {_shown(value)}")
    out = {}
    for item in value:
        if not isinstance(item, str):
            raise TypeError(f'{name}: each tag must be a "NAME=VALUE" str, '
                            f"not {type(item).__name__} {_shown(item)}")
        key, equals, tag_value = item.partition("=")
        if not equals or not key:
            raise ValueError(f'{name}: each tag must be "NAME=VALUE" (as '
                             f"`ckpt put --tag`), not {_shown(item)}")
        if key in out:
            raise ValueError(f"{name}: tag {key!r} is given twice")
        _tag(key, tag_value, name)
        out[key] = tag_value
    return out


def _keep_best(value):
    """(k, metric, mode) of keep_best given as (k, metric[, mode]) or
    {"k", "metric"[, "mode"]}."""
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"k", "metric", "mode"}, key=str)
        if unknown or "k" not in value or "metric" not in value:
            raise ValueError(
                'keep_best as a dict needs "k" and "metric" and may have '
                f'"mode"; got the keys {sorted(value, key=str)}')
        fields = (value["k"], value["metric"], value.get("mode", "auto"))
    elif isinstance(value, (tuple, list)):
        if len(value) not in (2, 3):
            raise ValueError("keep_best must be (k, metric) or (k, metric, "
                             f"mode), not {_shown(value)}")
        fields = (*value, "auto") if len(value) == 2 else tuple(value)
    else:
        raise TypeError("keep_best must be (k, metric[, mode]) or a dict "
                        f"with k, metric and mode, not "
                        f"{type(value).__name__} {_shown(value)}")
    k = integer("keep_best k", fields[0], minimum=1, maximum=MAX_INT32)
    metric = metric_name("keep_best metric", fields[1])
    mode = metric_mode("keep_best mode", fields[2], metric)
    return (k, metric, mode)


def _duration_seconds(name, value):
    """A duration given as "30m", "6h", "1d", "2w" (the ckpt CLI's grammar,
    common/duration_text.h), a datetime.timedelta or a number of seconds
    (as get_retention_policy returns it), in seconds."""
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
        if not seconds > 0:
            raise ValueError(f"{name} must be positive, not {_shown(value)}")
        return seconds
    if isinstance(value, numbers.Real) and not _is_bool(value):
        return number(name, value, positive=True, finite=True)
    if not isinstance(value, str):
        raise TypeError(f'{name} must be a duration such as "6h", "1d" or '
                        f'"2w", a datetime.timedelta or a number of '
                        f"seconds, not {type(value).__name__} "
                        f"{_shown(value)}")
    try:
        return parse_duration_seconds(value)
    except ValueError as error:
        reason = str(error).removeprefix("INVALID_ARGUMENT: ")
        raise ValueError(f"{name}: {reason}") from None


def _keep_tags(value):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError("keep_tags must be a list of tag names (str), not "
                        f"{type(value).__name__} {_shown(value)}")
    out = []
    for item in value:
        out.append(_tag_name(item, "keep_tags"))
        if out.count(out[-1]) > 1:
            raise ValueError(f"keep_tags: {_shown(item)} is given twice")
    return out


# restic's rules (common/retention.h), as keyword arguments and dict keys.
RESTIC_RULES = ("keep_within", "keep_hourly", "keep_daily", "keep_weekly",
                "keep_monthly", "keep_tags")
MAX_KEEP_COUNT = 1_000_000  # common/retention_policy.h kMaxKeepCount


def retention_policy(max_to_keep=None, keep_checkpoint_every_n_hours=None,
                     keep_best=None, keep_within=None, keep_hourly=None,
                     keep_daily=None, keep_weekly=None, keep_monthly=None,
                     keep_tags=None):
    """The policy dict Client takes, checked; None when no rule is set.
    keep_within: "30m", "6h", "1d", "2w" or a timedelta (measured from the
    newest checkpoint); keep_hourly/daily/weekly/monthly: the newest
    checkpoint of each of the N newest hours/days/ISO weeks/months (UTC);
    keep_tags: tag names whose checkpoints are never deleted."""
    restic = {"keep_within": keep_within, "keep_hourly": keep_hourly,
              "keep_daily": keep_daily, "keep_weekly": keep_weekly,
              "keep_monthly": keep_monthly, "keep_tags": keep_tags}
    if max_to_keep is None and keep_checkpoint_every_n_hours is None and \
            keep_best is None and \
            all(value is None for value in restic.values()):
        return None
    for key in ("keep_hourly", "keep_daily", "keep_weekly", "keep_monthly"):
        restic[key] = optional_integer(key, restic[key], minimum=1,
                                       maximum=MAX_KEEP_COUNT)
    if keep_within is not None:
        restic["keep_within"] = _duration_seconds("keep_within", keep_within)
    restic["keep_tags"] = [] if keep_tags is None else _keep_tags(keep_tags)
    max_to_keep = optional_integer("max_to_keep", max_to_keep, minimum=1,
                                   maximum=MAX_INT32)
    hours = optional_number("keep_checkpoint_every_n_hours",
                            keep_checkpoint_every_n_hours, positive=True,
                            finite=True)
    if hours is not None and max_to_keep is None:
        raise ValueError(
            "keep_checkpoint_every_n_hours needs max_to_keep: checkpoints "
            "are preserved by time only when they leave the max_to_keep "
            "most recent (TF's semantics)")
    return {
        "max_to_keep": max_to_keep,
        "keep_checkpoint_every_n_hours": hours,
        "keep_best": None if keep_best is None else _keep_best(keep_best),
        **restic,
    }


def policy_dict(value):
    """A retention policy dict as Client.set_retention_policy takes it,
    checked (an empty dict is the empty policy: keep everything)."""
    if not isinstance(value, Mapping):
        raise TypeError("policy must be a dict with max_to_keep, "
                        "keep_checkpoint_every_n_hours, keep_best and "
                        f"{', '.join(RESTIC_RULES)}, not "
                        f"{type(value).__name__}")
    known = ("max_to_keep", "keep_checkpoint_every_n_hours", "keep_best",
             *RESTIC_RULES)
    unknown = sorted(set(value) - set(known), key=str)
    if unknown:
        raise ValueError(f"policy: unknown key(s) {unknown}; the keys are "
                         f"{list(known)}")
    return retention_policy(**value) or {}


def region_requests(value):
    """Client.read_regions / restore_regions requests: a list of (name,
    dtype, global_shape, offsets, lengths, source_rank or None)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"requests must be a list of (name, dtype, "
                        f"global_shape, offsets, lengths, source_rank), not "
                        f"{type(value).__name__}")
    out = []
    for index, request in enumerate(value):
        where = f"requests[{index}]"
        if not isinstance(request, (tuple, list)) or len(request) != 6:
            raise TypeError(f"{where} must be (name, dtype, global_shape, "
                            f"offsets, lengths, source_rank), not "
                            f"{_shown(request)}")
        name, dtype, shape, offsets, lengths, source = request
        dims = []
        for field, values in (("global_shape", shape), ("offsets", offsets),
                              ("lengths", lengths)):
            if isinstance(values, (str, bytes)) or \
                    not hasattr(values, "__iter__"):
                raise TypeError(f"{where} {field} must be a sequence of "
                                f"ints, not {_shown(values)}")
            dims.append([integer(f"{where} {field}", item, minimum=0)
                         for item in values])
        out.append((text(f"{where} name", name),
                    text(f"{where} dtype", dtype), *dims,
                    None if source is None else integer(
                        f"{where} source_rank", source, minimum=0,
                        maximum=MAX_INT32)))
    return out
