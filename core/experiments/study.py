"""Suites and searches as Optuna studies in a relational database: workers, heartbeats, retries, the recipe check.

A study lives in a database (SQLite in the suite's folder by default, any SQLAlchemy URL with ``--storage``), so
several processes, on one machine or several, work on it at once. A worker claims a trial, trains its run (an
ordinary run directory in the suite's folder), reports every epoch's validation MAE and tells the study the
result; it stops when no trial is left to start and none is running anywhere. Nothing is lost:

- a worker that dies (killed, out of memory, its machine gone) leaves its trial RUNNING; the trial is failed and
  a retry queued (optuna's ``RetryHeartbeatStaleTrialCallback``) as soon as another worker sees that the
  worker's process is gone (same machine) or that its heartbeat is older than ``GRACE_S`` (any machine); the
  retry resumes the run from its ``last.pt``, or starts it again when the run had not saved one yet;
- SIGINT/SIGTERM let the run save ``last.pt`` at the next batch and queue its retry, so rerunning the command
  continues it; a worker signalled between runs takes no new one. The command that starts workers owns them: on
  SIGINT/SIGTERM it tells every worker, busy or idle, to stop, and exits once each has saved its run and exited; a
  worker whose launcher is gone stops the same way (it never trains on alone);
- retries (the runs interrupted or left by a dead worker) are claimed before any new run;
- a trial is claimed in one transaction (SQLite: ``BEGIN IMMEDIATE``), so two workers never claim the same one.

A study records what it was made from (the resolved recipes of its runs, a search's space); opening it with
anything else is refused in one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, Trial, TrialState

from core.errors import Interrupted, RecipeError
from core.experiments.compare import RunRecord, load_run
from core.recipe import load_recipe
from core.training import signals
from core.training.callbacks import EpochEnd

HEARTBEAT_S = 20  # a running trial's heartbeat
GRACE_S = 120  # a trial whose heartbeat is older is failed and retried (its worker is gone)
SCHEMA_TRIES = 5  # two processes creating a new database's tables at once: the later one tries again
POLL_S = 1.0  # how often an idle worker looks for work while other workers' trials run
MADE_FROM = "made_from"  # the study's user attribute recording what it was made from (set last: the study is ready)

optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own lines say what happens, not optuna's per-trial INFO


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Heartbeats and their retries, in optuna since 2.8 and 2.9, are still marked experimental: no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


# --------------------------------------------------------------------------------------------- storage
_IMMEDIATE: weakref.WeakSet[sqlalchemy.engine.Engine] = weakref.WeakSet()  # SQLite engines that lock at once


@sqlalchemy.event.listens_for(sqlalchemy.engine.Engine, "begin")
def _begin_immediate(connection) -> None:
    """SQLite's default transactions read first and lock on the first write, so two workers could both read a trial
    as WAITING and both claim it; ``BEGIN IMMEDIATE`` serialises the read and the write."""
    if connection.engine in _IMMEDIATE:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def shown(url: str) -> str:
    """A database URL as printed: without its password."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def rdb_storage(url: str, engine_kwargs: dict[str, Any]) -> RDBStorage:
    with quiet():
        return RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=HEARTBEAT_S,
            grace_period=GRACE_S,
            # no limit: a worker that dies is not replaced, so a run that kills its worker every time (memory)
            # costs one worker per try, and the command ends when none is left
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(inherit_intermediate_values=True),
        )


def default_storage(folder: Path) -> str:
    return f"sqlite:///{folder / 'study.db'}"


def cannot_open(url: str, error: Exception) -> RecipeError:
    return RecipeError(f"--storage {shown(url)}: cannot open the study database: {type(error).__name__}: {error}")


def open_storage(url: str) -> RDBStorage:
    """The study database at ``url`` with heartbeats and retries of dead workers' trials."""
    engine_kwargs: dict[str, Any] = {}
    parsed = sqlalchemy.engine.make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:  # autocommit in the driver: the "begin" event above starts the transactions once the tables exist
        engine_kwargs = {"connect_args": {"timeout": 120, "isolation_level": None}}
    for attempt in range(SCHEMA_TRIES):
        try:
            storage = rdb_storage(url, engine_kwargs)
            break
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as error:
            # another process creating the tables at the same moment ("already exists", a duplicate version row)
            if attempt == SCHEMA_TRIES - 1 or "already exists" not in str(error) and "UNIQUE" not in str(error):
                raise cannot_open(url, error) from None
            time.sleep(0.5)
        except Exception as error:  # noqa: BLE001 - a wrong URL, a missing driver, a server that does not answer
            raise cannot_open(url, error) from None
    if sqlite:  # (optuna's own first transactions, creating the tables, would wait on each other)
        _IMMEDIATE.add(storage.engine)
    return storage


# ------------------------------------------------------------------------------------------------ studies
def open_study(
    storage: RDBStorage,
    name: str,
    made_from: dict[str, Any],
    where: str,
    prepare: Callable[[optuna.Study], None] = lambda study: None,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """Create the study ``name`` (then ``prepare`` it, e.g. queue a suite's runs) or load it; a study made from
    something else than ``made_from`` (JSON values) is refused in one line naming what changed. Without a
    ``pruner`` no trial is pruned."""
    made_from = json.loads(json.dumps(made_from))
    sampler = sampler or optuna.samplers.RandomSampler(seed=0)  # a suite's trials are queued: nothing to sample
    pruner = pruner or optuna.pruners.NopPruner()  # (optuna's default would prune a suite's runs)
    try:
        study = optuna.create_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner)
        prepare(study)
        study.set_user_attr(MADE_FROM, made_from)
        return study
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    for _ in range(600):  # another process created it a moment ago and is still queueing its trials
        saved = study.user_attrs.get(MADE_FROM)
        if saved is not None:
            break
        time.sleep(0.1)
    else:
        raise RecipeError(f"{where}: the study '{name}' in {shown(storage.url)} was never finished being created")
    if saved != made_from:
        raise RecipeError(
            f"{where}: the study '{name}' in {shown(storage.url)} was made from other recipes "
            f"({changes(saved, made_from)}); rerun it unchanged, or start another with --study NAME"
        )
    return study


def changes(before: dict[str, Any], after: dict[str, Any]) -> str:
    """The first few differences between two ``made_from`` records, as 'KEY OLD -> NEW'."""
    old, new = flatten_all(before), flatten_all(after)
    keys = [key for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)]
    listed = [f"{key} {old.get(key, '(unset)')!r} -> {new.get(key, '(unset)')!r}" for key in keys[:3]]
    return "; ".join(listed) + (f"; and {len(keys) - 3} more" if len(keys) > 3 else "")


def flatten_all(value: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, inner in value.items():
        flat.update(flatten_all(inner, f"{prefix}{key}" if not prefix else f"{prefix}: {key}"))
    return flat


# ------------------------------------------------------------------------------------------------ workers
def worker_id() -> str:
    """This process, as a trial records who runs it: host, boot and process id."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = "-"
    return f"{socket.gethostname()}/{boot}:{os.getpid()}"


def gone(worker: str) -> bool:
    """Whether ``worker`` (a ``worker_id``) is a process of this machine's current boot that no longer exists."""
    host, _, pid = worker.rpartition(":")
    if host != worker_id().rpartition(":")[0] or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        pass
    return False


class Study:
    """A study and its storage, and what workers do with its trials."""

    def __init__(self, study: optuna.Study, storage: RDBStorage):
        self.study, self.storage = study, storage
        self.study_id = storage.get_study_id_from_name(study.study_name)

    def trials(self, *states: TrialState) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=states or None)

    def trial_id(self, trial: FrozenTrial | Trial) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)

    def claim_waiting(self) -> Trial | None:
        """The first queued trial, retries first (an interrupted run resumes before a new one starts), now RUNNING
        for this worker; None when none is queued."""
        for frozen in sorted(self.trials(TrialState.WAITING), key=lambda t: "failed_trial" not in t.system_attrs):
            trial_id = self.trial_id(frozen)
            if self.storage.set_trial_state_values(trial_id, TrialState.RUNNING):  # False: another worker took it
                return self.started(Trial(self.study, trial_id))
        return None

    def started(self, trial: Trial) -> Trial:
        trial.set_user_attr("worker", worker_id())
        self.storage.record_heartbeat(self.trial_id(trial))
        return trial

    def reclaim(self) -> None:
        """Fail the trials of dead workers and queue their retries: those of this machine's processes that are gone,
        and (optuna) those whose heartbeat is older than ``GRACE_S``."""
        with quiet():
            optuna.storages.fail_stale_trials(self.study)
        for frozen in self.trials(TrialState.RUNNING):
            if gone(frozen.user_attrs.get("worker", "")):
                self.fail_and_retry(self.trial_id(frozen))

    def give_back(self, trial: Trial) -> None:
        """An interrupted trial: failed, and a retry queued that resumes its run."""
        self.fail_and_retry(self.trial_id(trial))

    def fail_and_retry(self, trial_id: int) -> None:
        """Fail a running trial and queue its retry (``RetryHeartbeatStaleTrialCallback``: same run, same values),
        unless another worker did it first."""
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            if self.storage.set_trial_state_values(trial_id, TrialState.FAIL):
                self.storage.get_heartbeat_stale_trial_callback()(self.study, self.storage.get_trial(trial_id))

    @contextlib.contextmanager
    def heartbeat(self, trial: Trial) -> Iterator[None]:
        """Record the trial's heartbeat every ``HEARTBEAT_S`` seconds while the block runs."""
        done, trial_id = threading.Event(), self.trial_id(trial)

        def beat() -> None:
            while not done.wait(HEARTBEAT_S):
                with contextlib.suppress(Exception):  # a busy database: the next beat will do
                    self.storage.record_heartbeat(trial_id)

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def work(self, claim: Callable[[Study], Trial | None], run: Callable[[Trial], None]) -> None:
        """Claim and ``run`` trials until none is left to claim and none runs anywhere (a running one may still
        fail and come back as a retry). SIGINT/SIGTERM stop a run at its next batch (its retry queued) and, between
        runs, stop the loop before it claims another (``signals.recorded``)."""
        with signals.recorded():
            while True:
                self.stop_if_signalled()
                self.reclaim()
                trial = claim(self)
                if trial is None:
                    if not self.trials(TrialState.RUNNING, TrialState.WAITING):
                        return
                    time.sleep(POLL_S)
                    continue
                try:
                    with self.heartbeat(trial):
                        run(trial)
                except Interrupted:
                    self.give_back(trial)
                    name = self.study.study_name
                    print(f"=== the study '{name}' keeps the run: rerun the same command to continue it")
                    raise

    def stop_if_signalled(self) -> None:
        if stop := signals.received():
            raise Interrupted(
                stop, f"between runs; the study '{self.study.study_name}' keeps its runs: rerun the command to continue"
            )


# --------------------------------------------------------------------------------------------- one trial
def run_dirs(folder: Path, name: str) -> list[Path]:
    """The run directories of run ``name`` in ``folder`` (``<name>-<date>-<time>[-k]``), oldest first."""
    pattern = re.compile(re.escape(name) + r"-\d{8}-\d{6}(-\d+)?")
    return sorted(
        (p for p in folder.iterdir() if p.is_dir() and pattern.fullmatch(p.name)), key=lambda p: p.stat().st_mtime
    )


@contextlib.contextmanager
def output_to(log: Path | None) -> Iterator[None]:
    """The block's printed output appended to ``log`` (None: left where it goes)."""
    if log is None:
        yield
        return
    with log.open("a") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        yield


Train = Callable[..., int]  # core.run.run: (recipe path, overrides, resume_dir=, on_epoch_end=) -> exit code


def train_trial(
    trial: Trial, name: str, recipe: Path, overrides: list[str], folder: Path, train: Train, log: Path | None
) -> RunRecord | None:
    """Train run ``name`` for ``trial``: resume its run directory when an earlier attempt left a ``last.pt``, start
    it otherwise (removing what an attempt killed before its first checkpoint left); every epoch's validation MAE
    reported, the pruner asked whether to stop. Tells the study how it ended; returns the finished run, or None
    when it failed (said in a line, and kept as the trial's ``error``)."""
    trial.set_user_attr("run", name)
    stopped: list[int] = []

    def finished() -> list[Path]:
        return [p for p in run_dirs(folder, name) if (p / "metrics.json").is_file()]

    resumable = [p for p in run_dirs(folder, name) if (p / "last.pt").is_file() and p not in finished()][-1:]
    for leftover in set(run_dirs(folder, name)) - set(finished()) - set(resumable):
        shutil.rmtree(leftover, ignore_errors=True)  # an attempt killed before its first checkpoint
    with output_to(log):
        try:
            epoch_end = pruning(trial, name, load_recipe(recipe, overrides)[0].trainer.epochs, stopped)
            if resumable:
                print(f"=== resuming {resumable[0]}")
                report_history(trial, resumable[0])
                train(resumable[0] / "recipe.toml", [], resume_dir=resumable[0], on_epoch_end=epoch_end)
            elif not finished():  # else its worker died after the run ended, before telling the study
                train(recipe, overrides, on_epoch_end=epoch_end)
            record = load_run(finished()[-1])
        except Interrupted:
            raise
        except Exception as error:  # noqa: BLE001 - a failed run is reported and the study goes on
            reason = " ".join(f"{type(error).__name__}: {error}".split())
            print(f"=== run '{name}' failed: {reason}")
            trial.set_user_attr("error", reason)
            trial.study.tell(trial, state=TrialState.FAIL)
            return None
    for key, value in (
        ("run_dir", str(record.path)),
        ("epochs", record.metrics["epochs"]),
        ("max_epochs", record.recipe["trainer"]["epochs"]),
        ("test_mae", record.metrics["test"]["mae@avg"]),
        ("train_seconds", record.metrics["train_seconds"]),
    ):
        trial.set_user_attr(key, value)
    if stopped:
        trial.study.tell(trial, state=TrialState.PRUNED)
    else:
        trial.study.tell(trial, record.metrics["best_val_mae"])
    return record


def report_history(trial: Trial, run_dir: Path) -> None:
    """Report the epochs a run trained before it was stopped (those already reported are skipped)."""
    history = run_dir / "training_history.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the step is already reported": the retry inherited it
        for epoch in json.loads(history.read_text()) if history.is_file() else []:
            trial.report(epoch["val_mae"], epoch["epoch"])


def pruning(trial: Trial, name: str, epochs: int, stopped: list[int]) -> EpochEnd:
    """A trial's epoch-end callback: the epoch's val MAE reported to the study, the pruner asked whether to stop
    (not after the last of the ``epochs``: nothing is left to save); an epoch that stops the run is added to
    ``stopped``."""

    def epoch_end(epoch: int, val_mae: float) -> bool:
        trial.report(val_mae, epoch)
        if epoch < epochs and trial.should_prune():
            stopped.append(epoch)
            print(f"=== pruned '{name}' after epoch {epoch} of {epochs}: val MAE {val_mae:.4f} is not promising")
            return True
        return False

    return epoch_end


# --------------------------------------------------------------------------------------------- launching
def existing(storage: RDBStorage, name: str) -> Study | None:
    """The study ``name`` if the database holds it (as it is: no recipe check)."""
    if name not in optuna.get_all_study_names(storage):
        return None
    return Study(optuna.load_study(study_name=name, storage=storage), storage)


def launch_workers(
    command: Callable[[int], list[str]], workers: int, folder: Path, studies: Callable[[], list[Study]]
) -> list[int]:
    """Start ``workers`` processes, worker k running ``command(k)`` (each with cores / workers threads, unless
    OMP_NUM_THREADS is set; output in ``<folder>/worker-<k>.log``); wait for them, reaping a dead one at once (so
    that the others see it gone and retry its trial) and printing the ``studies``' trials as they start and end;
    returns their exit codes."""
    seen: dict[tuple[str, int], TrialState] = {}
    show_progress(studies(), seen, quiet=True)  # a continued study: only what happens from now on
    threads = max(1, (os.cpu_count() or 1) // workers)
    env = {"OMP_NUM_THREADS": str(threads), **os.environ}
    processes: list[subprocess.Popen] = []
    stop: list[int] = []

    def forward(signum: int, frame) -> None:
        """The first signal asks every worker to stop (``tell_to_stop``), a second one stops them at once."""
        stop.append(signum)
        for p in processes:
            if len(stop) == 1:
                tell_to_stop(p, signum)
            else:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signum)

    with signals.handling_signals(forward):  # before the workers start: they get the default handlers, not ours
        for k in range(1, workers + 1):
            with (folder / f"worker-{k}.log").open("a") as log:  # a session of their own: signals come from here
                processes.append(
                    subprocess.Popen(
                        [sys.executable, *command(k)],
                        stdin=subprocess.PIPE,  # the launcher's line to the worker (``follow_launcher``)
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=env,
                        start_new_session=True,
                    )
                )
            if stop:  # signalled while the workers started
                tell_to_stop(processes[-1], stop[0])
        print(
            f"=== {workers} workers ({env['OMP_NUM_THREADS']} threads each), pids "
            f"{', '.join(str(p.pid) for p in processes)}; their output: {folder}/worker-<k>.log, each run's "
            f"{folder}/<run name>.log"
        )
        while [p.poll() for p in processes].count(None):  # every one polled: a dead one reaped, not a zombie
            show_progress(studies(), seen)
            time.sleep(POLL_S)
    show_progress(studies(), seen)
    for k, p in enumerate(processes, 1):
        if p.returncode and not stop:
            print(f"=== worker {k} (pid {p.pid}) ended with exit code {p.returncode}; see {folder}/worker-{k}.log")
    if stop:
        raise Interrupted(
            stop[0], "while the workers trained; each saved its run and stopped: rerun the command to continue"
        )
    return [p.returncode for p in processes]


def tell_to_stop(worker: subprocess.Popen, signum: int) -> None:
    """Ask a worker to stop as if it got ``signum``: its launcher's line (its stdin) says so and closes."""
    with contextlib.suppress(OSError, ValueError):  # a worker already gone; a line already closed
        worker.stdin.write(f"{signum}\n".encode())
    with contextlib.suppress(OSError):
        worker.stdin.close()


def follow_launcher() -> None:
    """(In a worker) Stop as the launcher says, or on SIGTERM when the launcher is gone: a thread reads the launcher's
    line (stdin), which only ends with a signal's number or with the launcher, and signals this process."""

    def follow() -> None:
        said = sys.stdin.buffer.readline().strip()
        signum = signal.Signals(int(said)) if said.isdigit() else signal.SIGTERM
        os.kill(os.getpid(), signum)
        why = "the launcher says so" if said.isdigit() else "the launcher is gone"
        print(f"=== worker (pid {os.getpid()}) stopping as on {signum.name}: {why}", file=sys.__stdout__, flush=True)

    threading.Thread(target=follow, name="follow-launcher", daemon=True).start()


def show_progress(studies: list[Study], seen: dict[tuple[str, int], TrialState], quiet: bool = False) -> None:
    """A line for every trial that started or ended since the last call (``quiet``: only note them)."""
    for name, frozen in ((study.study.study_name, frozen) for study in studies for frozen in study.trials()):
        key = (name, frozen.number)
        if seen.get(key) == frozen.state or frozen.state == TrialState.WAITING or "surplus" in frozen.user_attrs:
            continue
        if frozen.state == TrialState.RUNNING and "run" not in frozen.user_attrs:  # not named yet: the next call
            continue
        seen[key] = frozen.state
        if quiet:
            continue
        name = frozen.user_attrs.get("run", f"trial {frozen.number}")
        if frozen.state == TrialState.RUNNING:
            print(f"=== start '{name}'")
        elif frozen.state == TrialState.COMPLETE:
            print(f"=== done '{name}': val MAE {frozen.value:.4f}")
        elif frozen.state == TrialState.PRUNED:
            print(f"=== pruned '{name}' after {frozen.user_attrs.get('epochs', '?')} epoch(s)")
        elif "error" in frozen.user_attrs:
            print(f"=== FAILED '{name}': {frozen.user_attrs['error']}")
        else:
            print(f"=== '{name}' stopped with its worker; it will be resumed")
