"""Data-parallel training under `torchrun`: which process this is, and the set-up around it.

`torchrun --standalone --nproc_per_node=N -m ddlm train ...` starts N processes and sets
WORLD_SIZE, RANK and LOCAL_RANK. Each process trains a replica on its own batches;
DistributedDataParallel averages gradients during backward. Only rank 0 writes files.
A plain run (no torchrun) is world size 1 and none of this does anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    size: int  # number of processes
    rank: int  # this process's index; 0 writes files
    device: torch.device  # this process's device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: torch.device) -> World:
    """Read torchrun's variables and join the process group (gloo on CPU, nccl on CUDA)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if size > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(size, rank, device)


def wrap(model: torch.nn.Module, world: World) -> torch.nn.Module:
    """The model as the training step calls it: DDP-wrapped when there are several processes."""
    if world.size == 1:
        return model
    ids = [world.device.index] if world.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def teardown(world: World) -> None:
    """Leave the process group cleanly (a barrier first: without it torchrun sometimes
    crashes at shutdown)."""
    if world.size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
