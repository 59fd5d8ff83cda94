"""Data-parallel training on several processes (PyTorch DDP), started by torchrun or by Slurm's srun:

    torchrun --nproc_per_node=2 -m deeprob_cli.train dataset=synthetic trainer.epochs=1
    torchrun --nproc_per_node=2 -m deeprob_cli train dataset=synthetic trainer.epochs=1
    srun --ntasks=2 deeprob train dataset=synthetic trainer.epochs=1        # inside a Slurm allocation
    deeprob train -m ... hydra/launcher=slurm hydra.launcher.tasks_per_node=2   # each sweep job on 2 tasks

torchrun sets WORLD_SIZE, RANK, LOCAL_RANK and MASTER_ADDR/PORT in each process's environment; in a Slurm job
step of several tasks without torchrun, from_slurm() derives the same variables from SLURM_PROCID, SLURM_NTASKS
and SLURM_LOCALID (the rendezvous on the step's first node, a port derived from the job id). Without either,
every function here is a no-op and `deeprob train` is the single-process run it always was. With them:
- backend gloo for CPU tensors, NCCL for CUDA ones (each process on cuda:LOCAL_RANK);
- trainer.batch_size is per process: one step consumes world_size × trainer.batch_size images (the effective
  batch). Every rank draws the same permutation and takes every world_size-th image of each global batch, and
  DDP averages the gradients, so a step follows the mean loss of the whole effective batch;
- model init is identical on every rank (same seed; DDP also broadcasts rank 0's weights), the augmentation and
  dropout draws differ per rank;
- rank 0 alone writes TensorBoard events, checkpoints, summary.json and Hydra's .hydra/ and train.log; all ranks
  use rank 0's clock for the run folder's ${now:...}, so exactly one folder results;
- a non-finite loss or a stop signal on any rank stops every rank at the same step (no rank is left waiting).
"""
import atexit
import hashlib
import logging
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime

import torch
import torch.distributed as dist

from . import UserError

log = logging.getLogger("deeprob")
ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
# per-rank random streams: rank r adds r × this to the seed (rank 0 keeps the single-process seed)
RANK_SEED_STRIDE = 1000


def launched() -> bool:
    """True in a process that torchrun started (or that from_slurm() set up like one)."""
    return all(name in os.environ for name in ENV)


def requeued() -> bool:
    """True in a Slurm job that Slurm has restarted: requeued after pre-emption (`scontrol requeue`), or by
    submitit after its time-limit signal (which requeues the same way). Such a job continues its own run."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0


def from_slurm() -> bool:
    """In a Slurm job step of several tasks (srun --ntasks=N, or a sweep job with tasks_per_node=N) and not under
    torchrun: set torchrun's variables from Slurm's, so the rest of this module treats the tasks as DDP ranks.
    True when it did."""
    if launched() or "SLURM_STEP_ID" not in os.environ or "SLURM_PROCID" not in os.environ:
        return False
    tasks = int(os.environ.get("SLURM_STEP_NUM_TASKS") or os.environ.get("SLURM_NTASKS") or 1)
    if tasks < 2:
        return False
    on_node = os.environ.get("SLURM_STEP_TASKS_PER_NODE") or os.environ.get("SLURM_TASKS_PER_NODE") or "1"
    os.environ.update(WORLD_SIZE=str(tasks), RANK=os.environ["SLURM_PROCID"],
                      LOCAL_RANK=os.environ.get("SLURM_LOCALID", "0"),
                      LOCAL_WORLD_SIZE=re.match(r"\d+", on_node).group())  # "2(x3)": 2 tasks on each of 3 nodes
    os.environ.setdefault("MASTER_ADDR", first_host(os.environ.get("SLURM_STEP_NODELIST")
                                                    or os.environ.get("SLURM_JOB_NODELIST", "")))
    # every task computes the same port; job ids differ between concurrent jobs (set MASTER_PORT to choose one)
    job, step = int(os.environ.get("SLURM_JOB_ID", 0)), int(os.environ.get("SLURM_STEP_ID", 0) or 0)
    os.environ.setdefault("MASTER_PORT", str(20000 + (job * 16 + step) % 40000))
    return True


def first_host(nodelist: str) -> str:
    """The first host name of a Slurm node list ("gpu[03-05],cpu1" -> "gpu03"); localhost when empty."""
    if not nodelist:
        return "127.0.0.1"
    try:  # scontrol expands every form Slurm writes
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                             timeout=30, check=True).stdout.split()
        if out:
            return out[0]
    except (OSError, subprocess.SubprocessError):
        pass
    head = re.match(r"([^,\[]+)(?:\[(\d+))?", nodelist)
    return head.group(1) + (head.group(2) or "")


def active() -> bool:
    """True once setup() joined a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """True on the process that writes (rank 0, or the only one)."""
    return rank() == 0


def setup():
    """Under torchrun or srun --ntasks=N, before Hydra reads sys.argv: join the process group, pin the run folder
    to rank 0's clock, and keep ranks other than 0 out of Hydra's folder (no .hydra/, no train.log, warnings
    only)."""
    from_slurm()
    if not launched() or dist.is_initialized():
        return
    if any(a in ("-m", "--multirun") for a in sys.argv[1:]):
        raise UserError("-m: torchrun (or srun --ntasks) trains one configuration; run the sweep without it "
                        "(hydra.launcher.tasks_per_node=N gives each job N processes), or launch it once per "
                        "configuration")
    join()
    clock = [time.time()]
    dist.broadcast_object_list(clock, src=0, device=torch.device("cpu"))
    args = sys.argv[1:]
    extra = []
    if not any(a.startswith(("hydra.run.dir=", "--config-dir")) for a in args):
        extra.append(f"hydra.run.dir='{run_dir(clock[0])}'")
    if rank() != 0:
        if "hydra.output_subdir=null" not in args:
            extra.append("hydra.output_subdir=null")
        extra += ["hydra/job_logging=stdout", "hydra.job_logging.root.level=WARNING"]
    # Hydra takes the overrides as one contiguous run: join the user's, placed before their first one
    first = next((i for i, a in enumerate(args) if "=" in a and not a.startswith("-")), len(args))
    sys.argv[1:] = [*args[:first], *extra, *args[first:]]


def join():
    """Join the process group of the ranks named by the environment (torchrun's variables), once."""
    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    atexit.register(teardown)


def run_dir(clock: float) -> str:
    """conf/train.yaml's hydra.run.dir with every ${now:FORMAT} filled in from the given time."""
    from omegaconf import OmegaConf

    from .config import CONFIG_DIR

    pattern = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "train.yaml").hydra.run, resolve=False)["dir"]
    return re.sub(r"\$\{now:([^}]*)\}", lambda m: datetime.fromtimestamp(clock).strftime(m.group(1)), pattern)


def teardown():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def device(chosen: torch.device) -> torch.device:
    """This process's device: a CUDA choice becomes cuda:LOCAL_RANK under torchrun."""
    if launched() and chosen.type == "cuda":
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return chosen


def threads_per_process():
    """Under torchrun, the number of processes that share this machine's cores (for trainer.threads=null)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if launched() else None


def rank_seed(seed: int) -> int:
    """A seed of this rank's own: augmentation differs between ranks; rank 0 keeps `seed`."""
    return seed + RANK_SEED_STRIDE * rank()


def effective_batch(batch_size: int, n_train: int) -> int:
    """Images per optimizer step over all processes."""
    total = batch_size * world_size()
    if total > n_train:
        raise UserError(f"trainer.batch_size: {batch_size} per process × {world_size()} processes exceeds the "
                        f"{n_train} training images; lower trainer.batch_size")
    if active():
        log.info("DDP: %d processes (%s), effective batch %d = %d per process × %d", world_size(),
                 dist.get_backend(), total, batch_size, world_size())
    return total


def shard(index: torch.Tensor) -> torch.Tensor:
    """This rank's part of a global batch of indices: every world_size-th one, starting at its rank."""
    return index[rank()::world_size()] if active() else index


def wrap(model: torch.nn.Module, sync_bn: bool, seed: int) -> torch.nn.Module:
    """The module the training step calls: DDP around model under torchrun (rank 0's weights broadcast, gradients
    all-reduced), else model itself. `model` keeps its plain state_dict, so checkpoints load anywhere."""
    if not active():
        return model
    on_cuda = next(model.parameters()).is_cuda
    if sync_bn:
        if not on_cuda:
            raise UserError("trainer.sync_bn: true needs CUDA devices (torch's SyncBatchNorm has no CPU kernel); "
                            "use trainer.sync_bn=false on CPU")
        torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # replaces the BatchNorm children in place
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[torch.cuda.current_device()] if on_cuda
                                                    else None)
    torch.manual_seed(rank_seed(seed))  # dropout & co. draw differently on each rank from here on
    return ddp


def from_rank0(value):
    """Rank 0's value on every rank (any picklable value); the value itself in a single process."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, device=torch.device("cpu"))
    return box[0]


def all_finite(value: torch.Tensor) -> bool:
    """True when value is finite on every rank (all ranks get the same answer, so all stop together)."""
    ok = torch.isfinite(value.detach()).all().to(torch.float32)
    if active():
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok)


def share_stop(stop):
    """A SIGINT/SIGTERM that reached any rank counts on every rank from this step on (StopSignals' fields)."""
    if not active():
        return
    code = torch.tensor([stop.code], dtype=torch.int64)
    dist.all_reduce(code, op=dist.ReduceOp.MAX)
    if code.item() and not stop.signal:
        stop.code, stop.signal = int(code.item()), signal.Signals(int(code.item()) - 128).name


def mean(losses: list) -> list:
    """Per-step values averaged over the ranks (each rank's own values when alone)."""
    if not active() or not losses:
        return losses
    stacked = torch.stack(losses)
    dist.all_reduce(stacked)
    return list((stacked / world_size()).unbind())


def total(count):
    """A count summed over the ranks."""
    if not active():
        return count
    count = torch.as_tensor(count).clone()
    dist.all_reduce(count)
    return count


def gather(value) -> list:
    """Every rank's value, in rank order ([value] for a single process)."""
    if not active():
        return [value]
    every = [None] * world_size()
    dist.all_gather_object(every, value)
    return every


def digests(model: torch.nn.Module) -> list:
    """sha256 of each rank's parameters (in rank order): equal strings mean the replicas hold identical weights."""
    return gather(parameter_digest(model))


def checksums(model: torch.nn.Module) -> dict:
    """For summary.json under torchrun: every rank's parameter digest (nothing for a single process)."""
    return {"weights_sha256": digests(model)} if active() else {}


def parameter_digest(model: torch.nn.Module) -> str:
    """sha256 over the bytes of every parameter, in named_parameters() order."""
    h = hashlib.sha256()
    for _, p in model.named_parameters():
        h.update(p.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class Silent:
    """Stands in for the TensorBoard Monitor on ranks other than 0: writes nothing, never asks for a snapshot."""

    def due(self, *args, **kwargs) -> bool:
        return False

    def __getattr__(self, name):
        return lambda *args, **kwargs: None
