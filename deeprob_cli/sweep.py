"""Sweep bookkeeping, hooked into Hydra as a callback (conf/train.yaml: hydra.callbacks), and deeprob's Slurm
launcher (hydra/launcher=slurm, registered by hydra_plugins/deeprob_launcher):

    deeprob train -m activation=relu,tanh dataset=synthetic hydra/launcher=slurm hydra.launcher.partition=debug

At the end of every `deeprob train -m ...` the callback writes <sweep dir>/sweep.json — each job's overrides,
status, val accuracy, error and, on Slurm, its job id and restarts — and logs one line: how many jobs completed,
failed or diverged.
"""
import json
import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, run_job, setup_globals
from hydra.experimental.callback import Callback
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf, open_dict, read_write

from .naming import job_order
from .folders import atomic_write, write_json

log = logging.getLogger("deeprob")
SLURM_RECORD = "slurm.json"  # in each job folder, written by SlurmLauncher at every (re)start of the job
PINNED = "deeprob_subdir"  # in submitit's folder for a Slurm job (which its restarts share): the job's folder name
# statuses deeprob itself ends a job with; a job that Slurm ended otherwise gets its reason recorded
FINAL = ("completed", "failed", "diverged")


def collect(sweep_dir: Path) -> list:
    """One record per job folder of a sweep, in job order."""
    jobs = []
    for overrides in sorted(Path(sweep_dir).glob("*/.hydra/overrides.yaml"), key=lambda p: job_order(p.parent.parent)):
        job = overrides.parent.parent
        summary = job / "summary.json"
        s = json.loads(summary.read_text()) if summary.is_file() else {"status": "unfinished"}
        record = {"job": job.name, "overrides": list(OmegaConf.load(overrides)), "status": s.get("status"),
                  "val_acc": s.get("val_acc"), "error": s.get("error")}
        if (job / SLURM_RECORD).is_file():
            slurm = json.loads((job / SLURM_RECORD).read_text())
            record.update(slurm_job=slurm.get("job_id"), restarts=slurm.get("restarts", 0))
        jobs.append(record)
    return jobs


class SweepSummary(Callback):
    def on_multirun_end(self, config, **kwargs):
        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = collect(sweep_dir)
        write_json(sweep_dir / "sweep.json", {"jobs": jobs})
        counts = {}
        for job in jobs:
            counts[job["status"]] = counts.get(job["status"], 0) + 1
        restarted = sum(1 for job in jobs if job.get("restarts"))
        log.info("sweep: %s%s; details in %s", ", ".join(f"{n} {s}" for s, n in counts.items()),
                 f" ({restarted} restarted by Slurm)" if restarted else "", sweep_dir / "sweep.json")
        width = max([len(job["job"]) for job in jobs] + [3])
        for job in jobs:  # a compact results table, then where to look further
            acc = job.get("val_acc")
            log.info("  %-*s  %-11s %s", width, job["job"], job["status"],
                     f"val {100 * acc:.2f} %" if isinstance(acc, (int, float)) else "")
        log.info("error bars over seeds, curves and what differs: deeprob compare %s", sweep_dir)
        for job in jobs:
            if job["status"] != "completed":
                log.warning("job %s (%s): %s %s", job["job"], " ".join(job["overrides"]), job["status"],
                            job["error"] or "")


def write_text(path: Path, text: str):
    """Write atomically (folders.atomic_write): a reader, or a job killed half-way, never sees half a file."""
    atomic_write(Path(path), text.encode())


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    """hydra-submitit-launcher's Slurm launcher with what a sweep of deeprob jobs needs on a real cluster:
    - a job Slurm restarts (pre-emption, or submitit's requeue after its time-limit signal) continues its run
      (train.py asks distributed.requeued()); submitit's signal first lets the training loop finish its step and
      checkpoint, then submitit's own handler resubmits and requeues (at most max_num_timeout times for time
      limits); each start is recorded in the job's slurm.json, so sweep.json shows restarts;
    - tasks_per_node=N trains one DDP run on the N tasks: rank 0 writes .hydra/, train.log and the results;
    - the queue is followed without a warning per poll when accounting (sacct) is off (QueueWatcher);
    - a job that Slurm ended outside Python (time limit, memory, cancellation, node failure) gets the reason in
      its summary.json and sweep.json, and the other jobs' results are kept.
    """

    def __call__(self, sweep_overrides, job_dir_key, job_num, job_id, singleton_state):
        """Runs inside the Slurm job, once per task."""
        import submitit

        from . import distributed  # imports torch: only inside the job

        Singleton.set_state(singleton_state)
        setup_globals()
        multi = distributed.from_slurm()  # tasks_per_node > 1: torchrun's variables from Slurm's
        rank = int(os.environ.get("RANK", 0))
        # ranks > 0 leave Hydra's folder to rank 0, as under torchrun (distributed.setup)
        quiet = ["hydra.output_subdir=null", "hydra/job_logging=stdout", "hydra.job_logging.root.level=WARNING"]
        config = self.hydra_context.config_loader.load_sweep_config(self.config,
                                                                    [*sweep_overrides, *(quiet if rank else [])])
        job = submitit.JobEnvironment()
        with open_dict(config.hydra.job):
            config.hydra.job.id = job.job_id
            config.hydra.job.num = job_num
        if multi:
            distributed.join()
        elif os.environ.get("SLURM_CPUS_PER_TASK") and "OMP_NUM_THREADS" not in os.environ:
            # torch would otherwise start a thread per core of the whole node, however few cpus_per_task were given
            import torch

            torch.set_num_threads(int(os.environ["SLURM_CPUS_PER_TASK"]))
        # the folder is named when the job first starts and kept: a restart (or rank 1) naming it afresh would
        # find it taken and pick another (naming.job_name), and never see its own checkpoint
        subdir = distributed.from_rank0(pinned_subdir(config, Path(job.paths.folder)) if rank == 0 else None)
        with read_write(config.hydra.sweep), open_dict(config.hydra.sweep):
            config.hydra.sweep.subdir = subdir
        if rank == 0:
            record_start(Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir),
                         config.hydra.job.id)
        signal_first = TimeLimitSignal()
        try:
            return run_job(hydra_context=self.hydra_context, task_function=self.task_function, config=config,
                           job_dir_key=job_dir_key, job_subdir_key="hydra.sweep.subdir")
        except SystemExit:  # deeprob stopped at the signal with a checkpoint: now submitit's protocol requeues
            signal_first.hand_over()
            raise

    def launch(self, job_overrides, initial_job_idx):
        """Submit the sweep as one job array, then follow it; a job Slurm ended without a result is reported in
        its own folder rather than aborting the sweep (the plugin would raise on the first such job)."""
        import submitit
        from submitit.slurm.slurm import SlurmJob

        params = dict(self.params)
        executor = submitit.AutoExecutor(cluster="slurm", folder=params.pop("submitit_folder"),
                                         slurm_max_num_timeout=params.pop("max_num_timeout"))
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in shared else f"slurm_{k}": v for k, v in params.items()})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info("Slurm sweep: %d jobs into %s", len(job_overrides), sweep_dir)
        numbered = [(initial_job_idx + i, list(overrides)) for i, overrides in enumerate(job_overrides)]
        watcher, SlurmJob.watcher = SlurmJob.watcher, QueueWatcher()  # jobs register with the class's watcher
        try:
            jobs = executor.map_array(self, [o for _, o in numbered], ["hydra.sweep.dir"] * len(numbered),
                                      [n for n, _ in numbered], [f"job_id_for_{n}" for n, _ in numbered],
                                      [Singleton.get_state()] * len(numbered))
            for (num, overrides), job in zip(numbered, jobs):
                log.info("\t#%d : %s  (Slurm job %s)", num, " ".join(overrides), job.job_id)
            returns = {}
            for job in submitit.helpers.as_completed(jobs, poll_frequency=2):
                i = jobs.index(job)
                returns[i] = self._outcome(job, *numbered[i])
        finally:
            SlurmJob.watcher = watcher
        return [returns[i] for i in range(len(jobs))]

    def _outcome(self, job, num: int, overrides: list) -> JobReturn:
        try:
            outcome = job.results()[0]
        except Exception as e:  # Slurm ended it outside Python: no result, or submitit's own error
            reason = ended_reason(job, e)
            folder = self._job_dir(job)
            if folder is not None:
                record_end(folder, reason)
            log.warning("#%d: %s", num, reason)
            # COMPLETED with no value, as deeprob's own failed jobs return: Hydra's sweepers raise on FAILED
            return JobReturn(overrides=overrides, working_dir=str(folder), task_name="train",
                             status=JobStatus.COMPLETED, _return_value=None)
        folder = (Path(outcome.hydra_cfg.hydra.runtime.output_dir) if outcome.hydra_cfg is not None
                  else self._job_dir(job))
        value = outcome._return_value if outcome.status == JobStatus.COMPLETED else None
        log.info("#%d: %s%s", num, (folder and read_status(folder)) or outcome.status.name.lower(),
                 f" (val_acc {value:.4g})" if isinstance(value, float) else "")
        return outcome

    def _job_dir(self, job) -> Path | None:
        """The job's folder, as the job named it when it started (None if it never started)."""
        pin = Path(job.paths.folder) / PINNED
        return Path(str(self.config.hydra.sweep.dir)) / pin.read_text() if pin.is_file() else None


def pinned_subdir(config, submitit_folder: Path) -> str:
    """This job's folder name within the sweep: named (hydra.sweep.subdir) at its first start and written to
    submitit's folder for the Slurm job, then read back at every restart."""
    from hydra.core.hydra_config import HydraConfig

    pin = submitit_folder / PINNED
    if pin.is_file():
        return pin.read_text()
    HydraConfig.instance().set_config(config)  # the name follows this job's overrides (naming.job_name)
    name = str(config.hydra.sweep.subdir)
    submitit_folder.mkdir(parents=True, exist_ok=True)
    write_text(pin, name)
    return name


def read_status(folder: Path):
    summary = folder / "summary.json"
    try:
        return json.loads(summary.read_text()).get("status")
    except (OSError, ValueError):
        return None


def record_start(folder: Path, job_id: str):
    """slurm.json in the job's folder: its Slurm job id and how often Slurm has restarted it so far."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / SLURM_RECORD, {"job_id": job_id, "restarts": int(os.environ.get("SLURM_RESTART_COUNT") or 0),
                                       "tasks": int(os.environ.get("SLURM_NTASKS") or 1),
                                       "nodes": os.environ.get("SLURM_JOB_NODELIST")})


def record_end(folder: Path, reason: str):
    """A job that Slurm ended outside deeprob: its summary.json says why (an interrupted run keeps its status and
    resume command; a missing or unfinished one becomes failed)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        summary = {}
    if summary.get("status") in FINAL:
        return
    if summary.get("status") != "interrupted":
        summary["status"] = "failed"
    write_json(folder / "summary.json", {**summary, "error": reason})


def ended_reason(job, error: Exception) -> str:
    """One line: the job, how Slurm reports it, the last line of its error, and where its log is."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip() and not set(line.strip()) <= {"-"}]
    # submitit's message starts with the job and state; the job's own last error line is the most specific part
    tail = next((line for line in reversed(lines) if not line.startswith(("You can check", "or at paths", "- /"))),
                type(error).__name__)
    try:
        state = job.watcher.get_state(job.job_id, mode="force")
    except Exception:
        state = "UNKNOWN"
    return f"Slurm job {job.job_id} ended ({state}) without a result: {tail} (log: {job.paths.stderr})"


class TimeLimitSignal:
    """submitit's pre-emption / time-limit signal (USR2, `signal_delay_s` before the limit): passed first to the
    training loop's stop handler, so the step finishes and a checkpoint is written at it; hand_over() then runs
    submitit's own handler, which resubmits the job and requeues it. Outside the training loop (no stop handler
    of deeprob's on SIGTERM) submitit's handler runs at once and the job resumes from its last checkpoint."""

    def __init__(self):
        from submitit import JobEnvironment
        from submitit.core.job_environment import SignalHandler

        self.signum = JobEnvironment._usr_sig()
        self.submitit = signal.getsignal(self.signum)
        self.pending = False
        self._submitits = SignalHandler
        if threading.current_thread() is threading.main_thread() and callable(self.submitit):
            signal.signal(self.signum, self._handle)

    def _handle(self, signum, frame):
        stop = signal.getsignal(signal.SIGTERM)
        if callable(stop) and not isinstance(getattr(stop, "__self__", None), self._submitits):
            self.pending = True
            stop(signum, frame)  # train.py's StopSignals: checkpoint after this step, status interrupted
        else:
            self.submitit(signum, frame)

    def hand_over(self):
        if self.pending:
            self.pending = False
            self.submitit(self.signum, None)  # dumps the resubmission, `scontrol requeue`, exits


def QueueWatcher(delay_s: int = 30):
    """submitit's Slurm job watcher, asking sacct while Slurm keeps accounting and squeue where it does not. (With
    accounting off, submitit's own watcher warns on every poll, and, never learning a job's state, would wait
    forever for a job Slurm had ended without a result.) A repeated error is logged once. Built on first use, so
    that importing this module does not import submitit."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    class Watcher(SlurmInfoWatcher):
        accounting = True
        said: set

        def update(self):
            command = self._make_command()
            if command is None:
                return
            self._num_calls += 1
            self.said = getattr(self, "said", set())
            info = self._ask_sacct(command) if self.accounting else None
            if info is None:
                info = self._ask_squeue()
            if info is not None:
                self._info_dict.update(info)
            self._last_status_check = time.time()
            for job_id in self._registered - self._finished:
                if self.is_done(job_id, mode="cache"):
                    self._finished.add(job_id)

        def _ask_sacct(self, command):
            done = _run(command)
            if done.returncode == 0:
                return self.read_info(done.stdout)
            if "accounting storage is disabled" in done.stderr.lower() or "slurmdbd" in done.stderr.lower():
                self.accounting = False  # for good: ask squeue from now on
                self._once(logging.INFO, "Slurm accounting is off (sacct: %s); following the jobs with squeue",
                           done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode)
            else:
                self._once(logging.WARNING, "sacct failed (%s); asking squeue", done.stderr.strip() or done.returncode)
            return None

        def _ask_squeue(self):
            """{job id: {"State": ...}} from squeue; a job it no longer lists has ended (state ENDED)."""
            mains = sorted({x.split("_")[0] for x in self._registered - self._finished})
            done = _run(["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T", "--jobs",
                         ",".join(mains)])
            if done.returncode != 0 and "invalid job id" not in done.stderr.lower():
                self._once(logging.WARNING, "squeue failed (%s); job states may be late",
                           done.stderr.strip() or done.returncode)
                return None
            listed = dict(line.split("|", 1) for line in done.stdout.split() if "|" in line)
            return {job: {"State": listed.get(job, "ENDED")} for job in self._registered - self._finished}

        def _once(self, level, message, *args):
            key = message % args
            if key not in self.said:
                self.said.add(key)
                log.log(level, message, *args)

    return Watcher(delay_s=delay_s)


def _run(command):
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return subprocess.CompletedProcess(command, 1, "", str(e))
