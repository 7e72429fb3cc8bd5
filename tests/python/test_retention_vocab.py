"""restic's retention rules from Python: CheckpointManager's keep_within,
keep_hourly/daily/weekly/monthly and keep_tags arguments, Client policy
dicts with them, and their argument checks, against a real ckpt-server."""

import datetime

import numpy as np
import pytest
import torch

import ckpt

# 2026-01-05T00:00:00Z
MONDAY = 1767571200.0


def whole(name, array):
    array = np.ascontiguousarray(array)
    return (name, array.dtype.name, list(array.shape), [0] * array.ndim,
            list(array.shape), array)


def test_manager_keep_tags_keeps_tagged_checkpoints(server):
    with ckpt.CheckpointManager(server, "t/tags", max_to_keep=1,
                                keep_tags=["release"]) as manager:
        for step in range(1, 5):
            tags = {"release": "v1"} if step == 2 else None
            assert manager.save({"w": torch.full((2,), float(step))}, step,
                                tags=tags)
        assert manager.all_steps() == [2, 4]
        policy = manager.client.get_retention_policy("t/tags")
        assert policy["keep_tags"] == ["release"]
        assert policy["max_to_keep"] == 1


def test_manager_keep_within_measures_from_the_newest(server):
    with ckpt.CheckpointManager(server, "t/within",
                                keep_within=datetime.timedelta(days=2),
                                keep_daily=3) as manager:
        for step in range(1, 4):
            assert manager.save({"w": torch.zeros(1)}, step)
        # All saved now: within two days of the newest.
        assert manager.all_steps() == [1, 2, 3]
        policy = manager.client.get_retention_policy("t/within")
        assert policy["keep_within"] == 2 * 86400.0
        assert policy["keep_daily"] == 3


def test_client_policy_dict_with_every_rule(client):
    for step, hours in enumerate([0, 1, 26, 24 * 7 + 1, 24 * 35], start=1):
        client.save_shard("t/dict", step, [whole("a", np.zeros(1))],
                          writer_time=MONDAY + hours * 3600)
    deleted = client.set_retention_policy("t/dict", {
        "keep_within": "2w", "keep_hourly": 1, "keep_daily": 2,
        "keep_weekly": 2, "keep_monthly": 1, "keep_tags": ["x"]})
    # Newest (step 5, February) is within 2w of itself; daily 2: steps 5
    # and 4; weekly 2: 5 and 4; monthly 1: 5.
    assert deleted == [1, 2, 3]
    assert client.get_retention_policy("t/dict") == {
        "max_to_keep": None, "keep_checkpoint_every_n_hours": None,
        "keep_best": None, "keep_within": 14 * 86400.0, "keep_hourly": 1,
        "keep_daily": 2, "keep_weekly": 2, "keep_monthly": 1,
        "keep_tags": ["x"]}


@pytest.mark.parametrize("kwargs,error,message", [
    ({"keep_within": [6]}, TypeError, "keep_within must be a duration"),
    ({"keep_within": True}, TypeError, "keep_within must be a duration"),
    ({"keep_within": -6}, ValueError, "keep_within must be > 0"),
    ({"keep_within": "6"}, ValueError, "keep_within: '6' is not a duration"),
    ({"keep_within": "soon"}, ValueError, "keep_within: 'soon' is not"),
    ({"keep_within": datetime.timedelta(0)}, ValueError,
     "keep_within must be positive"),
    ({"keep_daily": 0}, ValueError, "keep_daily must be >= 1"),
    ({"keep_weekly": 2.5}, TypeError, "keep_weekly must be an integer"),
    ({"keep_monthly": True}, TypeError, "keep_monthly must be an integer"),
    ({"keep_tags": "release"}, TypeError, "keep_tags must be a list"),
    ({"keep_tags": [""]}, ValueError, "keep_tags: a tag name must not be"),
    ({"keep_tags": ["a", "a"]}, ValueError, "keep_tags: 'a' is given twice"),
])
def test_manager_refuses_bad_rules_naming_the_argument(server, kwargs, error,
                                                       message):
    with pytest.raises(error) as raised:
        ckpt.CheckpointManager(server, "t/bad", **kwargs)
    assert str(raised.value).startswith(message), str(raised.value)


def test_server_refusal_names_the_field(client):
    client.save_shard("t/refused", 1, [whole("a", np.zeros(1))])
    with pytest.raises(ValueError) as raised:
        client.set_retention_policy("t/refused", {"keep_within": "20000w"})
    assert "keep_within" in str(raised.value)
    assert client.get_retention_policy("t/refused") is None
