"""One run over several processes (``torchrun --nproc_per_node=N train.py ...``): who is who, averaging the
learnable gradients, and putting evaluation results back together.

Every process holds the whole model and draws the same random numbers (same seed, same order); each trains on its
slice of the same global batches (engine/data.py) and the gradients of the learnable tensors are averaged before
every optimiser step, so the step is the one a single process takes on the whole global batch. Only the first
process (rank 0) writes files. Without torchrun (``WORLD_SIZE`` unset or 1) every function here is a no-op.
"""
from __future__ import annotations

import os
from typing import Iterable, List

import torch
import torch.distributed as dist


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """True in the process that logs and writes files (the only one without torchrun)."""
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def init_from_env(use_cuda: bool) -> None:
    """Join the process group torchrun describes in the environment: NCCL for GPUs, gloo on the CPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or active():
        return
    cuda = use_cuda and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group("nccl" if cuda else "gloo")


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Replace each gradient by its mean over the processes (every process then steps identically)."""
    average_tensors(param.grad for param in params if param.grad is not None)


def average_tensors(tensors: Iterable[torch.Tensor]) -> None:
    """Replace each tensor, in place, by its mean over the processes (e.g. a gradient a method computes itself)."""
    if world_size() == 1:
        return
    for tensor in tensors:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(world_size())


def gather(items: List) -> List:
    """Every process's ``items`` concatenated in rank order, on every process."""
    if world_size() == 1:
        return list(items)
    parts: List = [None] * world_size()
    dist.all_gather_object(parts, items)
    return [item for part in parts for item in part]


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
