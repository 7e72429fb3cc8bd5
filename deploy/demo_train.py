"""The main job: a PyTorch training run that checkpoints through ckpt-server.

An MLP classifies synthetic data (generated here from a fixed seed; nothing
is downloaded), trained with Adam, a StepLR schedule and dropout. Every
--save-every steps the whole training state goes to the server through
ckpt.CheckpointManager (async save, the server keeps the last 3): model,
optimizer and scheduler state dicts, the step, the data loader's position
(epoch, batch index, this epoch's shuffle order and the shuffle generator)
and the torch, numpy and Python RNG states. On start it resumes from the
job's latest committed checkpoint, if any.

    demo_train.py --server HOST:PORT --job demo/mlp --steps 60 \
        --save-every 5 --crash-at 23     # dies after step 23 (exit 3)
    demo_train.py --server HOST:PORT --job demo/mlp --steps 60 \
        --save-every 5 --verify          # resumes, finishes, compares

--verify then trains an uninterrupted run from scratch in this process and
checks that the final weights and optimizer state are bit-identical
(torch.equal on every tensor); it exits 1 when they are not.
"""

import argparse
import os
import random
import sys
import time

import numpy as np
import torch

import ckpt

SEED = 20261122
FEATURES, CLASSES, SAMPLES, BATCH = 32, 4, 1024, 32
CRASH_EXIT_CODE = 3


def make_dataset():
    """Inputs and labels of a random teacher network, from a fixed seed."""
    generator = torch.Generator().manual_seed(SEED)
    x = torch.randn(SAMPLES, FEATURES, generator=generator)
    teacher = torch.randn(FEATURES, CLASSES, generator=generator)
    y = (x @ teacher + 0.5 * torch.randn(SAMPLES, CLASSES,
                                         generator=generator)).argmax(dim=1)
    return x, y


class Loader:
    """Shuffled batches over epochs; its position is part of the state."""

    def __init__(self, x, y):
        self.x, self.y = x, y
        self.generator = torch.Generator().manual_seed(SEED + 1)
        self.epoch = 0
        self.index = 0  # next batch within the epoch
        self.order = torch.randperm(len(x), generator=self.generator)

    def next_batch(self):
        if self.index * BATCH >= len(self.x):
            self.epoch += 1
            self.index = 0
            self.order = torch.randperm(len(self.x),
                                        generator=self.generator)
        rows = self.order[self.index * BATCH:(self.index + 1) * BATCH]
        self.index += 1
        return self.x[rows], self.y[rows]

    def state_dict(self):
        return {"epoch": self.epoch, "index": self.index,
                "order": self.order.clone(),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.epoch, self.index = state["epoch"], state["index"]
        self.order = state["order"].clone()
        self.generator.set_state(state["generator"])


class Trainer:
    def __init__(self):
        torch.manual_seed(SEED)
        np.random.seed(SEED)
        random.seed(SEED)
        self.model = torch.nn.Sequential(
            torch.nn.Linear(FEATURES, 128), torch.nn.ReLU(),
            torch.nn.Dropout(0.1),
            torch.nn.Linear(128, 128), torch.nn.ReLU(),
            torch.nn.Linear(128, CLASSES))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=3e-3)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=20, gamma=0.5)
        self.loader = Loader(*make_dataset())
        self.step = 0

    def train_step(self):
        x, y = self.loader.next_batch()
        # Input jitter from numpy's RNG and a Python-RNG coin for label
        # smoothing: all three RNGs drive training, so all three must be
        # restored for a bit-identical resume.
        x = x + torch.from_numpy(
            np.random.normal(0.0, 0.01, size=x.shape).astype(np.float32))
        smoothing = 0.1 if random.random() < 0.5 else 0.0
        self.model.train()
        loss = torch.nn.functional.cross_entropy(
            self.model(x), y, label_smoothing=smoothing)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return loss.item()

    def state_dict(self):
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "loader": self.loader.state_dict(),
            "rng": {"torch": torch.get_rng_state(),
                    "numpy": np.random.get_state(),
                    "python": random.getstate()},
        }

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = state["step"]
        self.loader.load_state_dict(state["loader"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])


def tensor_mismatches(a, b, path):
    """Paths where a and b differ: tensors by torch.equal (dtype and shape
    included), everything else by ==."""
    if isinstance(a, torch.Tensor):
        same = isinstance(b, torch.Tensor) and a.dtype == b.dtype and \
            a.shape == b.shape and torch.equal(a, b)
        return [] if same else [path]
    if isinstance(a, dict):
        if not isinstance(b, dict) or list(a) != list(b):
            return [path]
        return [m for key in a
                for m in tensor_mismatches(a[key], b[key], f"{path}/{key}")]
    if isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b):
            return [path]
        return [m for i, (x, y) in enumerate(zip(a, b))
                for m in tensor_mismatches(x, y, f"{path}/{i}")]
    return [] if a == b else [path]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default=os.environ.get("CKPT_SERVER"),
                        help="HOST:PORT of ckpt-server (default: "
                             "$CKPT_SERVER)")
    parser.add_argument("--job", default="demo/mlp")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--save-every", type=int, default=5)
    parser.add_argument("--crash-at", type=int, default=None,
                        help="die with os._exit right after this step")
    parser.add_argument("--verify", action="store_true",
                        help="compare with an uninterrupted run at the end")
    parser.add_argument("--sync", action="store_true",
                        help="synchronous saves (default: async_save)")
    args = parser.parse_args()
    if not args.server:
        parser.error("--server or $CKPT_SERVER is required")
    if args.save_every < 1:
        parser.error("--save-every must be >= 1")
    return args


def main():
    args = parse_args()
    torch.set_num_threads(1)  # deterministic and quick on a small machine
    trainer = Trainer()
    blocked = []
    with ckpt.CheckpointManager(args.server, args.job, max_to_keep=3,
                                async_save=not args.sync) as manager:
        state = manager.restore_or_initialize(lambda: None)
        if state is None:
            print(f"{args.job}: no checkpoint, training from scratch")
        else:
            trainer.load_state_dict(state)
            print(f"{args.job}: resumed from checkpoint at step "
                  f"{trainer.step} (epoch {trainer.loader.epoch}, batch "
                  f"{trainer.loader.index})")
        while trainer.step < args.steps:
            loss = trainer.train_step()
            if trainer.step == args.crash_at:
                print(f"step {trainer.step}: loss {loss:.4f}; simulated "
                      f"crash (os._exit({CRASH_EXIT_CODE}))", flush=True)
                sys.stderr.flush()
                os._exit(CRASH_EXIT_CODE)
            if trainer.step % args.save_every == 0:
                start = time.perf_counter()
                manager.save(trainer.state_dict(), trainer.step,
                             metrics={"loss": loss})
                blocked.append(time.perf_counter() - start)
                print(f"step {trainer.step}: loss {loss:.4f}, checkpoint "
                      f"saved (save() blocked {blocked[-1] * 1e3:.1f} ms)")
        manager.wait()
        print(f"{args.job}: trained to step {trainer.step}; checkpoints "
              f"on the server: {manager.all_steps()}")

    if args.verify:
        reference = Trainer()
        while reference.step < args.steps:
            reference.train_step()
        mismatches = tensor_mismatches(
            reference.model.state_dict(), trainer.model.state_dict(),
            "model") + tensor_mismatches(
            reference.optimizer.state_dict(),
            trainer.optimizer.state_dict(), "optimizer")
        if mismatches:
            print(f"VERIFY FAILED: {len(mismatches)} tensors differ from an "
                  f"uninterrupted run, first: {mismatches[:5]}")
            return 1
        tensors = len(reference.model.state_dict()) + sum(
            len(s) for s in reference.optimizer.state_dict()["state"]
            .values())
        print(f"VERIFY OK: weights and optimizer state ({tensors} tensors) "
              f"are bit-identical to an uninterrupted {args.steps}-step run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
