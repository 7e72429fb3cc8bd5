"""A recommender training job for test_incremental_restart.py, run as its
own process (/usr/bin/python3 restart_trainee.py ...) so that the test can
SIGKILL it: an embedding table of ROWS x DIM float32 trained with sparse
gradients (each step rewrites about 1% of its rows, scattered) and a small
dense head trained with Adam, checkpointed by a CheckpointManager with
incremental=True.

It starts with restore_or_initialize, prints one JSON line {"ready", ...}
and then obeys one command a line on stdin, answering a JSON line each:
  save STEP  trains one step, saves it as STEP and writes what was saved
             (every tensor, cloned, by path) to SNAPSHOTS/STEP.pt before
             answering {"saved": STEP, "plan": ...} (async: once the host
             copy is taken, {"started": STEP}; the plan is the previous
             save's)
  wait       waits for the async save; {"waited": true, "plan": ...}
  exit       closes the manager and exits
"""

import argparse
import json
import os
import sys

import torch

import ckpt
from test_incremental import snapshot

ROWS, DIM, HEAD = 65536, 64, 16
BATCH = 660  # about 1% of the rows a step


class Recommender:
    def __init__(self, seed):
        torch.manual_seed(seed)
        self.embedding = torch.nn.Embedding(ROWS, DIM, sparse=True)
        self.head = torch.nn.Linear(DIM, HEAD)
        self.sparse_optimizer = torch.optim.SGD(self.embedding.parameters(),
                                                lr=0.5)
        self.dense_optimizer = torch.optim.Adam(self.head.parameters(),
                                                lr=1e-3)
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.step = 0

    def train_step(self):
        rows = torch.randint(0, ROWS, (BATCH,), generator=self.generator)
        loss = self.head(self.embedding(rows)).pow(2).mean()
        self.sparse_optimizer.zero_grad()
        self.dense_optimizer.zero_grad()
        loss.backward()
        self.sparse_optimizer.step()
        self.dense_optimizer.step()
        self.step += 1

    def state(self):
        return {"model": {"embedding.weight": self.embedding.weight,
                          "head.weight": self.head.weight,
                          "head.bias": self.head.bias},
                "dense_optimizer": self.dense_optimizer.state_dict(),
                "trained_steps": self.step}

    def load(self, state):
        with torch.no_grad():
            self.embedding.weight.copy_(state["model"]["embedding.weight"])
            self.head.weight.copy_(state["model"]["head.weight"])
            self.head.bias.copy_(state["model"]["head.bias"])
        self.dense_optimizer.load_state_dict(state["dense_optimizer"])
        self.step = state["trained_steps"]


def answer(message):
    print(json.dumps(message), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--job", required=True)
    parser.add_argument("--snapshots", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--delta-mode", default="intermittent")
    parser.add_argument("--max-chain-length", type=int, default=8)
    parser.add_argument("--async-save", action="store_true")
    args = parser.parse_args()

    model = Recommender(args.seed)
    manager = ckpt.CheckpointManager(
        args.server, args.job, incremental=True, async_save=args.async_save,
        delta_mode=args.delta_mode, max_chain_length=args.max_chain_length)
    restored = manager.restore_or_initialize(lambda: None)
    ready = {"ready": True, "restored_step": None, "seed": None}
    if restored is not None:
        model.load(restored)
        ready["restored_step"] = manager.last_restore["step"]
        ready["seed"] = manager.last_restore["incremental_seed"]
    answer(ready)

    for line in sys.stdin:
        command = line.split()
        if command[0] == "save":
            step = int(command[1])
            model.train_step()
            manager.save(model.state(), step)
            # What was saved: an async save's host copy was taken in save().
            torch.save(snapshot(model.state()),
                       os.path.join(args.snapshots, f"{step}.pt"))
            if args.async_save:
                answer({"started": step})
            else:
                answer({"saved": step, "plan": manager.last_plan})
        elif command[0] == "wait":
            manager.wait()
            answer({"waited": True, "plan": manager.last_plan})
        elif command[0] == "exit":
            manager.close()
            answer({"closed": True})
            return


if __name__ == "__main__":
    main()
