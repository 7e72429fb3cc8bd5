"""Who owns a job's retention policy (issue 17), through the real `ckpt`
CLI and the Python CheckpointManager against a real ckpt-server: an
operator's policy survives a training job's CheckpointManager(max_to_keep=1),
which is told why with one RetentionPolicyIgnoredWarning; a writer's policy
applies while no operator's exists; a tenant's default; refusals."""

import json
import os
import subprocess
import warnings

import numpy as np
import pytest

import ckpt


def _cli(server, *args, check=True):
    """Runs the built `ckpt` CLI against `server`; the CompletedProcess."""
    binary = os.path.join(os.environ["CKPT_BUILD_DIR"], "client", "ckpt")
    result = subprocess.run([binary, *args], capture_output=True, text=True,
                            env={**os.environ, "CKPT_SERVER": server},
                            timeout=120)
    if check:
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def _cli_json(server, *args):
    return json.loads(_cli(server, *args, "--json").stdout)


def _save_steps(manager, steps):
    """Saves each step; the RetentionPolicyIgnoredWarnings issued."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in steps:
            manager.save({"w": np.full(16, step, dtype=np.float32)}, step)
    return [w for w in caught
            if issubclass(w.category, ckpt.RetentionPolicyIgnoredWarning)]


def test_an_operators_policy_survives_a_writers_manager(server):
    # The operator sets the policy before the job's first save.
    set_out = _cli(server, "policy", "set", "team/model", "--max-to-keep",
                   "10").stdout
    assert "policy of team/model: max_to_keep=10" in set_out
    manager = ckpt.CheckpointManager(server, "team/model", max_to_keep=1)
    ignored = _save_steps(manager, range(1, 6))
    assert manager.all_steps() == [1, 2, 3, 4, 5]
    assert len(ignored) == 1, [str(w.message) for w in ignored]
    message = str(ignored[0].message)
    assert "max_to_keep=1" in message and "an operator's" in message, message
    assert "set by operator anonymous at " in message, message
    manager.close()

    got = _cli_json(server, "policy", "get", "team/model")
    assert got["policy"]["max_to_keep"] == 10, got
    assert got["origin"]["source"] == "operator", got
    assert got["origin"]["principal"] == "anonymous", got
    assert got["origin"]["time"] is not None and not got["origin"]["inferred"]
    text = _cli(server, "policy", "get", "team/model").stdout
    assert "max_to_keep=10" in text and "set by: operator anonymous at" in text
    events = _cli_json(server, "events", "team/model")
    kinds = [event["kind"] for event in events]
    assert kinds.count("policy_ignored") == 1, kinds
    assert kinds.count("policy_set") == 1 and "pruned" not in kinds, kinds
    jobs = _cli_json(server, "ls")
    assert jobs[0]["policy_origin"]["source"] == "operator", jobs


def test_a_writers_policy_applies_while_no_operators_exists(server):
    manager = ckpt.CheckpointManager(server, "team/solo", max_to_keep=2)
    assert _save_steps(manager, range(1, 5)) == []
    assert manager.all_steps() == [3, 4]
    manager.close()
    got = _cli_json(server, "policy", "get", "team/solo")
    assert got["policy"]["max_to_keep"] == 2, got
    assert got["origin"]["source"] == "writer", got


def test_a_tenant_default_applies_to_jobs_without_their_own(server):
    plain = ckpt.CheckpointManager(server, "team/plain")
    _save_steps(plain, range(1, 4))
    out = _cli_json(server, "policy", "set", "team/", "--default",
                    "--max-to-keep", "2")
    assert out == {"tenant": "team", "default_policy": out["default_policy"]}
    assert out["default_policy"]["max_to_keep"] == 2
    assert plain.all_steps() == [1, 2, 3]  # nothing at once
    got = _cli_json(server, "policy", "get", "team/")
    assert got["policy"]["max_to_keep"] == 2, got
    assert got["origin"]["source"] == "tenant_default", got
    got = _cli_json(server, "policy", "get", "team/plain")
    assert got["origin"]["source"] == "tenant_default", got
    assert "(tenant default)" in _cli(server, "ls").stdout
    _save_steps(plain, [4])  # its next commit applies it
    assert plain.all_steps() == [3, 4]
    # A writer's policy does not replace the tenant's default.
    greedy = ckpt.CheckpointManager(server, "team/greedy", max_to_keep=1)
    assert len(_save_steps(greedy, range(1, 4))) == 1
    assert greedy.all_steps() == [2, 3]
    # --clear: the tenant's default goes, and the writer's policy applies.
    out = _cli_json(server, "policy", "set", "team/", "--default", "--clear")
    assert out == {"tenant": "team", "cleared": True}, out
    assert _cli_json(server, "policy", "get", "team/")["policy"] is None
    assert _save_steps(greedy, [4]) == []
    assert greedy.all_steps() == [4]
    plain.close()
    greedy.close()


def test_clearing_a_jobs_policy_hands_it_back_to_its_writer(server):
    _cli(server, "policy", "set", "team/owned", "--max-to-keep", "5")
    out = _cli_json(server, "policy", "set", "team/owned", "--clear")
    assert out["cleared"] is True and out["policy"] is None, out
    assert "now applies: none" in _cli(server, "policy", "set", "team/owned",
                                       "--clear").stdout
    manager = ckpt.CheckpointManager(server, "team/owned", max_to_keep=1)
    assert _save_steps(manager, range(1, 4)) == []
    assert manager.all_steps() == [3]
    manager.close()
    result = _cli(server, "policy", "set", "team/owned", "--clear",
                  "--max-to-keep", "2", check=False)
    assert result.returncode != 0 and "no policy flags" in result.stderr


def test_policy_targets_are_checked(server):
    before = _cli(server, "ls", "--json").stdout
    for args, needle in [
            (("team/", "--max-to-keep", "2"), "add --default"),
            (("team/model", "--default", "--max-to-keep", "2"),
             "name the tenant as TENANT/"),
            (("bad tenant/", "--default", "--max-to-keep", "2"),
             "invalid tenant name"),
            (("team/", "--default", "--max-to-keep", "0"),
             "--keep-last must be a positive"),  # its alias
            (("team/x//", "--max-to-keep", "1"), "invalid job name")]:
        result = _cli(server, "policy", "set", *args, check=False)
        assert result.returncode != 0, args
        assert needle in result.stderr, (args, result.stderr)
    assert _cli(server, "ls", "--json").stdout == before
    got = _cli_json(server, "policy", "get", "team/")
    assert got["policy"] is None and got["origin"] is None, got


def test_the_python_client_shows_who_set_a_policy_and_its_warnings(server):
    client = ckpt.Client(server)
    manager = ckpt.CheckpointManager(server, "team/py", max_to_keep=5)
    _save_steps(manager, [1, 2])
    info = client.get_retention_policy_info("team/py")
    assert info["policy"]["max_to_keep"] == 5
    assert info["origin"]["source"] == "writer"
    assert info["origin"]["inferred"] is False
    assert info["origin"]["time"] > 0
    # An operator's policy whose keep_best metric no checkpoint has: stored,
    # and the server's warning reaches Python as a RetentionPolicyWarning.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        deleted = client.set_retention_policy(
            "team/py", {"max_to_keep": 1, "keep_best": (1, "val_loss", "min")})
    # keep_best decides nothing, so max_to_keep=1 alone decides.
    assert deleted == [1]
    texts = [str(w.message) for w in caught
             if issubclass(w.category, ckpt.RetentionPolicyWarning)]
    assert any("no checkpoint has metric" in t and "val_loss" in t
               for t in texts), texts
    info = client.get_retention_policy_info("team/py")
    assert info["origin"]["source"] == "operator"
    assert info["policy"]["keep_best"][1] == "val_loss"
    # A job without a policy (in a tenant without a default), and none.
    _save_steps(ckpt.CheckpointManager(server, "solo/none"), [1])
    assert client.get_retention_policy_info("solo/none") == {
        "policy": None, "origin": None}
    with pytest.raises(KeyError, match="unknown job"):
        client.get_retention_policy_info("solo/absent")


def test_the_python_client_deletes_a_pinned_checkpoint_only_with_force(server):
    client = ckpt.Client(server)
    manager = ckpt.CheckpointManager(server, "team/pins")
    _save_steps(manager, [1, 2])
    _cli(server, "pin", "team/pins", "1")
    with pytest.raises(ckpt.Error) as refused:
        client.delete_checkpoint("team/pins", 1)
    assert refused.value.code == "FAILED_PRECONDITION"
    assert "pinned" in refused.value.message
    assert manager.all_steps() == [1, 2]
    with pytest.raises(TypeError):
        client.delete_checkpoint("team/pins", 1, force="yes")
    client.delete_checkpoint("team/pins", 1, force=True)
    assert manager.all_steps() == [2]
    deleted = [e for e in _cli_json(server, "events", "team/pins")
               if e["kind"] == "deleted"]
    assert [e["detail"] for e in deleted] == [
        "was committed and pinned; the pin was overridden (force)"]
