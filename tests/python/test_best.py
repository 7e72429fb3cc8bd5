"""The best checkpoint by a metric: CheckpointManager.best_step() and
save_best_only, by keep-best retention's rules (mode min/max/auto, NaN
never best, ties to the older checkpoint), against a real server."""

import math
import threading

import pytest
import torch

import ckpt

NAN = float("nan")
INF = float("inf")


def state(step):
    return {"w": torch.full((4,), float(step)), "step": step}


def save_all(manager, losses, metric="val_loss", start=1):
    """Saves one step per value of `losses`; the steps save() took."""
    return [step for step, loss in enumerate(losses, start)
            if manager.save(state(step), step, metrics={metric: loss})]


def test_nan_and_inf_metrics_are_stored_and_nan_is_never_best(server):
    with ckpt.CheckpointManager(server, "t/nan") as manager:
        save_all(manager, [NAN, 0.7, NAN, 0.2, INF])
        metrics = [r["metrics"]["val_loss"] for r in manager.checkpoints()]
        assert math.isnan(metrics[0]) and math.isnan(metrics[2])
        assert metrics[1::2] == [0.7, 0.2] and metrics[4] == INF
        assert manager.best_step("val_loss") == 4
        # Maximised, +inf is the best and NaN still never is.
        assert manager.best_step("val_loss", mode="max") == 5
        manager.save(state(6), 6, metrics={"val_loss": -INF})
        assert manager.best_step("val_loss") == 6


def test_best_step_by_min_max_and_auto(server):
    with ckpt.CheckpointManager(server, "t/best-step") as manager:
        rows = [(1, {"val_loss": 0.5, "val_accuracy": 0.70}),
                (2, {"val_loss": 0.3, "val_accuracy": 0.80}),
                (3, {"val_accuracy": 0.95}),  # no loss: not ranked by it
                (4, {"val_loss": 0.3, "val_accuracy": 0.80}),  # ties
                (5, {"val_loss": 0.9, "val_accuracy": 0.60})]
        for step, metrics in rows:
            manager.save(state(step), step, metrics=metrics)
        assert manager.best_step("val_loss") == 2  # auto: min; tie: older
        assert manager.best_step("val_loss", mode="min") == 2
        assert manager.best_step("val_loss", mode="max") == 5
        assert manager.best_step("val_accuracy") == 3  # auto: max
        assert manager.best_step("val_accuracy", "min") == 5
        # The step restores as any other.
        assert manager.restore(manager.best_step("val_loss"))["step"] == 2


def test_best_step_errors_say_why(server):
    with ckpt.CheckpointManager(server, "t/best-errors") as manager:
        with pytest.raises(KeyError) as error:
            manager.best_step("val_loss")  # the job has no checkpoint
        assert error.value.code == "NOT_FOUND"
        assert "none of the 0 committed checkpoints" in error.value.message
        save_all(manager, [0.5, NAN, 0.4])
        with pytest.raises(KeyError) as error:
            manager.best_step("vall_loss")  # misspelt
        assert error.value.message == (
            "none of the 3 committed checkpoints has metric 'vall_loss' to "
            "rank by")
        manager.save(state(4), 4, metrics={"train_loss": NAN})
        with pytest.raises(KeyError) as error:
            manager.best_step("train_loss")
        assert "every one of the 1 committed checkpoints with metric " \
            "'train_loss' has it NaN, which is never best" in \
            error.value.message
        with pytest.raises(ValueError, match="^mode: cannot tell whether "
                           "metric 'bleu'.*pass mode min or max"):
            manager.best_step("bleu")
        manager.save(state(5), 5, metrics={"bleu": 30.0})
        assert manager.best_step("bleu", "max") == 5  # explicit: fine
        with pytest.raises(ValueError, match="^mode must be one of"):
            manager.best_step("val_loss", mode="lowest")
        with pytest.raises(TypeError, match="^metric must be a str"):
            manager.best_step(None)


def test_best_step_sees_committed_checkpoints_only(server):
    rank0 = ckpt.CheckpointManager(server, "t/best-pending", rank=0,
                                   world_size=2)
    rank1 = ckpt.CheckpointManager(server, "t/best-pending", rank=1,
                                   world_size=2)
    for manager in (rank0, rank1):
        manager.save(state(1), 1, metrics={"val_loss": 0.5})
    rank0.save(state(2), 2, metrics={"val_loss": 0.1})  # rank 1 pending
    assert rank0.best_step("val_loss") == 1
    rank1.save(state(2), 2, metrics={"val_loss": 0.1})
    assert rank0.best_step("val_loss") == 2


def test_best_step_is_what_keep_best_retention_keeps(server):
    losses = [0.5, NAN, 0.2, 0.9, 0.2, 0.3, NAN]
    with ckpt.CheckpointManager(server, "t/best-kept",
                                keep_best=(1, "val_loss")) as manager:
        save_all(manager, losses)
        best = manager.best_step("val_loss")
        # keep_best keeps its best and the newest.
        assert manager.all_steps() == [best, len(losses)] == [3, 7]


def test_save_best_only_saves_strict_improvements_only(server):
    with ckpt.CheckpointManager(server, "t/sbo", save_best_only=True,
                                monitor="val_loss") as manager:
        taken = save_all(manager, [0.5, 0.6, 0.4, 0.4, NAN, 0.3, INF, -INF,
                                   -1e300])
        # 0.6 worse, 0.4 again a tie, NaN never an improvement, +inf worse,
        # nothing beats -inf.
        assert taken == [1, 3, 6, 8]
        assert manager.all_steps() == [1, 3, 6, 8]
        assert manager.best_step("val_loss") == 8
    with ckpt.CheckpointManager(server, "t/sbo-max", save_best_only=True,
                                monitor="val_accuracy") as manager:  # auto
        assert save_all(manager, [0.5, 0.4, 0.7, 0.7, 0.9],
                        metric="val_accuracy") == [1, 3, 5]
    with ckpt.CheckpointManager(server, "t/sbo-mode", save_best_only=True,
                                monitor="bleu", mode="max") as manager:
        assert save_all(manager, [10, 12, 11], metric="bleu") == [1, 2]


def test_save_best_only_first_value_nan_or_inf(server):
    with ckpt.CheckpointManager(server, "t/sbo-first", save_best_only=True,
                                monitor="val_loss") as manager:
        # NaN first: still not saved; +inf first: the first best.
        assert save_all(manager, [NAN, INF, 1.0]) == [2, 3]


def test_save_best_only_needs_the_monitored_metric(server):
    with ckpt.CheckpointManager(server, "t/sbo-missing", save_best_only=True,
                                monitor="val_loss") as manager:
        for metrics in (None, {"loss": 0.1}):
            with pytest.raises(ValueError, match="^save_best_only: save\\(\\) "
                               "needs the monitored metric 'val_loss'"):
                manager.save(state(1), 1, metrics=metrics)
        assert manager.all_steps() == []
        assert manager.save(state(1), 1, metrics={"val_loss": 0.1})


def test_a_restarted_job_keeps_its_best(server):
    job = "t/sbo-restart"
    with ckpt.CheckpointManager(server, job, save_best_only=True,
                                monitor="val_loss") as manager:
        assert save_all(manager, [0.5, 0.3, 0.4]) == [1, 2]
    # Steps saved meanwhile without save_best_only (newer, worse, NaN) do
    # not lower the bar: it is the best committed checkpoint's value.
    with ckpt.CheckpointManager(server, job) as manager:
        manager.save(state(4), 4, metrics={"val_loss": 0.8})
        manager.save(state(5), 5, metrics={"val_loss": NAN})
        manager.save(state(6), 6)
    with ckpt.CheckpointManager(server, job, save_best_only=True,
                                monitor="val_loss") as manager:
        assert not manager.save(state(7), 7, metrics={"val_loss": 0.3})
        assert not manager.save(state(8), 8, metrics={"val_loss": 0.35})
        assert manager.save(state(9), 9, metrics={"val_loss": 0.29})
        assert manager.all_steps() == [1, 2, 4, 5, 6, 9]
    # A job whose checkpoints lack the metric (or have it NaN) starts with
    # no best: the first value is saved.
    with ckpt.CheckpointManager(server, "t/sbo-none") as manager:
        manager.save(state(1), 1, metrics={"loss": 0.1})
        manager.save(state(2), 2, metrics={"val_loss": NAN})
    with ckpt.CheckpointManager(server, "t/sbo-none", save_best_only=True,
                                monitor="val_loss") as manager:
        assert manager.save(state(3), 3, metrics={"val_loss": 5.0})


@pytest.mark.parametrize("async_save", [False, True])
def test_a_failed_save_does_not_become_the_best(server, async_save):
    job = f"t/sbo-fail-{async_save}"
    with ckpt.CheckpointManager(server, job, save_best_only=True,
                                monitor="val_loss",
                                async_save=async_save) as manager:
        assert manager.save(state(1), 1, metrics={"val_loss": 0.5})
        # Step 2 exists already: the save fails with ALREADY_EXISTS.
        manager.client.save_shard(job, 2, [("x", "uint8", [1], [0], [1],
                                            b"x")])
        with pytest.raises(ckpt.Error) as error:
            manager.save(state(2), 2, metrics={"val_loss": 0.1})
            manager.wait()
        assert error.value.code == "ALREADY_EXISTS"
        # The bar is 0.5 again, not the failed save's 0.1.
        assert manager.save(state(3), 3, metrics={"val_loss": 0.3})
        manager.wait()
        assert not manager.save(state(4), 4, metrics={"val_loss": 0.3})
        assert manager.all_steps() == [1, 2, 3]


def test_save_best_only_with_async_save_decides_at_once(server):
    with ckpt.CheckpointManager(server, "t/sbo-async", save_best_only=True,
                                monitor="val_loss",
                                async_save=True) as manager:
        weights = torch.zeros(1000)
        assert manager.save({"w": weights}, 1, metrics={"val_loss": 0.5})
        weights += 1  # after save returns: not in the checkpoint
        assert not manager.save({"w": weights}, 2,
                                metrics={"val_loss": 0.7})
        assert manager.save({"w": weights}, 3, metrics={"val_loss": 0.2})
        manager.wait()
        assert manager.all_steps() == [1, 3]
        assert torch.equal(manager.restore(1)["w"], torch.zeros(1000))
        assert torch.equal(manager.restore(3)["w"], torch.ones(1000))


def test_save_best_only_with_checkpoint_interval(server):
    # The interval paces the evaluation points (0, 3, 6, 9, ...), whether
    # save_best_only takes them or not; save_best_only filters them.
    with ckpt.CheckpointManager(server, "t/sbo-interval",
                                checkpoint_interval=3, save_best_only=True,
                                monitor="val_loss") as manager:
        losses = [0.9, 0.1, 0.1, 0.95, 0.1, 0.1, 0.5, 0.1, 0.1, 0.6, 0.1,
                  0.1, 0.4]
        taken = [step for step, loss in enumerate(losses)
                 if manager.save(state(step), step,
                                 metrics={"val_loss": loss})]
        assert taken == [0, 6, 12]
        # Steps the interval skips need no metric.
        assert not manager.save(state(13), 13)


def test_ranks_passing_the_same_values_take_the_same_decisions(server):
    job = "t/sbo-ranks"
    losses = [0.5, 0.6, 0.4, 0.45, 0.2]
    decisions = {}

    def run(rank):
        with ckpt.CheckpointManager(server, job, rank=rank, world_size=2,
                                    save_best_only=True,
                                    monitor="val_loss") as manager:
            decisions[rank] = save_all(manager, losses)

    threads = [threading.Thread(target=run, args=(rank,)) for rank in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert decisions[0] == decisions[1] == [1, 3, 5]
    # Every checkpoint a rank took committed.
    client = ckpt.Client(server)
    records = client.list_checkpoints(job, include_uncommitted=True)
    assert [(r["step"], r["state"]) for r in records] == [
        (1, "committed"), (3, "committed"), (5, "committed")]


def test_save_best_only_and_keep_best_differ(server):
    losses = [0.5, 0.3, 0.4, 0.2, 0.6]
    # save_best_only never deletes: each improvement stays, and the newest
    # checkpoint is the last improvement, not the last step.
    with ckpt.CheckpointManager(server, "t/diff-sbo", save_best_only=True,
                                monitor="val_loss") as manager:
        save_all(manager, losses)
        assert manager.all_steps() == [1, 2, 4]
    # keep_best saves every step and prunes after each commit to its best
    # and the newest.
    with ckpt.CheckpointManager(server, "t/diff-kb",
                                keep_best=(1, "val_loss")) as manager:
        save_all(manager, losses)
        assert manager.all_steps() == [4, 5]
    # Together: only the best is left after every save.
    with ckpt.CheckpointManager(server, "t/diff-both", save_best_only=True,
                                monitor="val_loss",
                                keep_best=(1, "val_loss")) as manager:
        save_all(manager, losses)
        assert manager.all_steps() == [4]
