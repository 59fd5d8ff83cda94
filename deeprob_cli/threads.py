"""CPU threads on a machine that is not idle: OpenMP's wait policy and each run's share of the cores.

    deeprob train                      # trainer.threads=null: this run's share of the cores it may use
    deeprob train trainer.threads=1    # pinned

Why (measured in benchmarks/bench_contention.py; the CPU named beside each figure in the README):
- OpenMP threads that finish their part of an operation spin, waiting for the next one. When another process
  holds a core, the spinning thread and the busy one share it, the other threads wait for the slow one at every
  operation's end, and the run fell to 0.2–0.5× the speed of simply giving the core up. With the passive wait
  policy a waiting thread sleeps instead, so all threads beside a busy core run about as fast as one thread.
  The policy is read once, when torch loads its OpenMP runtime: `deeprob_cli` sets it on import, before torch.
- Two runs side by side that each take every core run 4 threads on 2 cores; each takes its share instead:
  the cores this process may use (os.sched_getaffinity: taskset, cgroups, Slurm) divided among the deeprob
  runs alive on this machine for this user, counted from a small registry of process ids.
- A busy core still costs a run that keeps a thread on it: every operation waits for its slowest thread, and on
  an Intel Xeon (AMX, 2 cores) two passive threads beside a busy loop ran 0.62× one thread. So the share is also
  capped at the cores other processes left free during the run's start-up (/proc/stat, own CPU time subtracted).
A run's thread count is fixed when it starts (and a resumed run keeps its own): torch splits its CPU reductions
by thread count, so changing it during a run would change its numbers. A run started while another one is
already training takes the remaining share; the earlier one keeps its count.
Torch-free: the entrance imports this before torch.
"""
import atexit
import os
import tempfile
import time
from pathlib import Path

# set only where the user has chosen none of them (GOMP: GNU OpenMP, which torch's Linux wheels use; KMP: Intel's)
WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def passive_wait(environ=os.environ) -> bool:
    """OMP_WAIT_POLICY=PASSIVE unless the user set a wait policy; True when it was set here."""
    if any(k in environ for k in WAIT_SETTINGS):
        return False
    environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def usable_cores() -> int:
    """The cores this process may run on (affinity mask), not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def registry() -> Path:
    """One file per live deeprob run of this user on this machine: $DEEPROB_REGISTRY, else
    <tmp>/deeprob-<uid>/runs (machine-local, unlike a home folder that may be shared over the network)."""
    if os.environ.get("DEEPROB_REGISTRY"):
        return Path(os.environ["DEEPROB_REGISTRY"])
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"deeprob-{uid}" / "runs"


def _started(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), so that a reused process id is not counted."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process with this id
        return False
    return not started or _started(pid) == started


def register(folder: Path | None = None) -> None:
    """Count this process among the live runs until it exits (idempotent; a dead process's entry is ignored and
    removed by the next count)."""
    folder = folder or registry()
    if not _launch:
        _launch.append(_cpu_snapshot())
    if not _registered:
        _registered.append(folder)
        atexit.register(unregister, folder)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        (folder / str(os.getpid())).write_text(_started(os.getpid()))
    except OSError:  # an unwritable temp folder: the run counts itself only
        pass


_registered = []


def unregister(folder: Path | None = None) -> None:
    try:
        ((folder or registry()) / str(os.getpid())).unlink()
    except OSError:
        pass


def live_runs(folder: Path | None = None) -> int:
    """deeprob runs alive now, this process included."""
    folder = folder or registry()
    alive = {os.getpid()}
    try:
        entries = list(folder.iterdir())
    except OSError:
        return 1
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            started = entry.read_text().strip()
        except OSError:
            continue
        if _alive(int(entry.name), started):
            alive.add(int(entry.name))
        else:
            try:
                entry.unlink()
            except OSError:
                pass
    return len(alive)


def share(threads: int | None, processes: int | None = None, folder: Path | None = None, busy: float = 0.0) -> int:
    """trainer.threads → torch's thread count: as asked; else the usable cores divided among the processes a
    launcher starts together (joblib's n_jobs, torchrun's local processes) or the live runs, whichever are more,
    and never more than the cores other processes left free (`busy`: cores they kept busy, see busy_cores)."""
    if threads:
        return int(threads)
    cores = usable_cores()
    if processes is not None and processes < 0:  # joblib's n_jobs=-1: one job per core
        processes = cores
    sharers = max(processes or 1, live_runs(folder))
    return max(1, min(cores // sharers, cores - int(busy + 0.5)))


def _cpu_snapshot():
    """(wall seconds, busy seconds of the usable cores summed, this process's CPU seconds) from /proc/stat."""
    try:
        cores = {f"cpu{i}" for i in os.sched_getaffinity(0)}
        busy = 0
        for line in Path("/proc/stat").read_text().splitlines():
            fields = line.split()
            if fields and fields[0] in cores:  # user nice system idle iowait irq softirq steal ...
                values = list(map(int, fields[1:9]))
                busy += sum(values) - values[3] - values[4]
        own = os.times()
        return time.monotonic(), busy / os.sysconf("SC_CLK_TCK"), own.user + own.system
    except (AttributeError, OSError, ValueError):
        return None


_launch = []


def busy_cores(since=None) -> float:
    """Cores other processes kept busy since `since` (a _cpu_snapshot; default: when this process registered,
    i.e. its start-up, a second or more), from the kernel's CPU accounting; 0 where that cannot be read or the
    window is too short to tell."""
    since = since or (_launch[0] if _launch else None)
    now = _cpu_snapshot()
    if since is None or now is None or now[0] - since[0] < 0.5:
        return 0.0
    (t0, busy0, own0), (t1, busy1, own1) = since, now
    return max(0.0, ((busy1 - busy0) - (own1 - own0)) / (t1 - t0))
