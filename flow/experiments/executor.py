"""Run independent tasks (sweep points, Pareto points, synthesis jobs) here, one after another, or on Ray.

A :class:`Task` is a plain, picklable description: a key unique in the grid, a function (a
``"package.module:function"`` reference or a top-level function), its keyword arguments, and the
resources one run reserves (``num_cpus``, ``num_gpus``). :func:`run_tasks` runs a list of them

* in this process, one after another (``workers`` None or 1 and no address): Ray is not imported;
* on a local Ray instance with ``workers`` CPUs, started and shut down by the call, so at most
  ``workers`` one-CPU tasks run at a time;
* on an existing Ray cluster: ``address="ray://<head>:10001"`` (Ray Client), ``"auto"`` or
  ``"<head>:6379"`` (a driver on a cluster node), or the same in the ``RAY_ADDRESS`` environment variable.

Results. Every task gives one :class:`TaskResult`, passed to ``on_result`` on the driver as soon as it
finishes (completion order) and returned in task order. A task that raises gives a failed result (its
error type and message on one line, and the traceback text for a log); the other tasks still run. So
does a task whose worker process dies (Ray retries it ``retries`` times first). Ctrl-C cancels the
tasks not yet finished and re-raises KeyboardInterrupt; a caller that records each result as it
arrives resumes an interrupted grid by leaving out the keys it already has.

Files back to the driver. On a cluster a task runs on another machine, whose disk the driver never
sees. A task function may therefore return ``TaskOutput(value, files={relative path: bytes})``: the
executor writes each file under the driver's ``files_root`` (a temporary file in the same folder, then
a rename, so no reader sees half a file) before ``on_result`` is called, and the result's ``value``
is ``TaskOutput.value``. This is how reports written on a worker (``hw_reports/<build>/summary.json``)
reach the driver, and how content-keyed cache entries (synthesis results, checkpoints) made by one task
are kept for later ones: the driver's copy is the shared one, and a later task gets an entry in its
arguments or finds it on a filesystem all workers share. The sequential path and a local instance
write the files the same way, so one task function serves all three modes.

Where tasks run. On a local instance each worker starts in the driver's working directory with the
repository root first on ``PYTHONPATH``: ``flow`` and ``models`` import from this checkout, nothing is
copied. On a cluster the repository, without ``build/``, ``hw_reports/``, ``checkpoints/`` and ``.git``,
is uploaded as Ray's ``working_dir`` and each task starts in its copy (relative outputs land there:
return them as files); ``upload_code=False`` skips the upload when the worker image already has the
same code on its ``PYTHONPATH``. In every Ray mode the workers get the driver's values of
:data:`PASSED_ENV` (``FINN_BUILD_DIR``, the Xilinx tool paths) and ``env``. Ray sets ``OMP_NUM_THREADS``
of a worker to its task's ``num_cpus``, so torch and numpy stay within the CPUs a task reserved.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import math
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from flow.core.errors import FlowError

REPO_ROOT = Path(__file__).resolve().parents[2]
ADDRESS_ENV = "RAY_ADDRESS"
# Environment variables a worker needs to find FINN's build folder and the Xilinx tools, copied from the driver.
PASSED_ENV = ("FINN_BUILD_DIR", "XILINX_VIVADO", "XILINX_HLS", "HLS_PATH", "VIVADO_PATH", "FINN_XILINX_PATH")
# What the cluster upload leaves out (gitignore syntax, relative to the repository root): outputs and caches.
UPLOAD_EXCLUDES = ["/.git/", "/.venv/", "/build/", "/checkpoints/", "/hw_reports/", "__pycache__/", "*.pyc"]
_ADDRESS = re.compile(r"^(ray://)?(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):\d{1,5}$")
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
_FUNCTION_REF = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def gpus_for(device: str) -> int:
    """The GPUs a task on torch ``device`` reserves: one for a CUDA device, none otherwise."""
    return 1 if device.startswith("cuda") else 0


@dataclass(frozen=True)
class Task:
    """One unit of work: ``function(**kwargs)``, reserving ``num_cpus`` CPUs and ``num_gpus`` GPUs on Ray.

    ``function`` is ``"package.module:function"`` (imported where the task runs; the module must exist
    here too) or a function defined at module level. ``key`` names the task in results and logs and is
    unique among the tasks of one :func:`run_tasks` call. Resources are counts (fractions allowed) that
    Ray reserves; a training task with ``device="cuda"`` asks for ``num_gpus=gpus_for(device)``, one.
    """

    key: str
    function: str | Callable[..., Any]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    num_cpus: float = 1.0
    num_gpus: float = 0.0

    def __post_init__(self):
        if not isinstance(self.key, str) or not self.key:
            raise FlowError(f"task key {self.key!r}: give a non-empty string")
        _check_function(self.key, self.function)
        if not isinstance(self.kwargs, Mapping) or not all(isinstance(name, str) for name in self.kwargs):
            raise FlowError(f"task {self.key!r}: kwargs must be a mapping from argument names to values, "
                            f"got {type(self.kwargs).__name__}")
        for name in ("num_cpus", "num_gpus"):
            amount = getattr(self, name)
            if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not amount >= 0:
                raise FlowError(f"task {self.key!r}: {name}={amount!r}; give a number >= 0")


@dataclass(frozen=True)
class TaskOutput:
    """A task function's return value plus files for the driver.

    ``files`` maps a path relative to the driver's ``files_root`` (POSIX form, no ``..``) to the file's
    bytes; the executor writes them there atomically. A task may also return a bare value (no files).
    """

    value: Any = None
    files: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskResult:
    """The outcome of one task, on the driver.

    ``ok`` is False for a task that raised, whose worker died, or whose files could not be written;
    then ``error`` is ``"<ErrorType>: <first line of the message>"`` and ``traceback`` the full text.
    ``files`` are the driver-side paths written from the task's :class:`TaskOutput`; ``seconds`` is
    the wall time of the function call where it ran; ``worker`` is ``"<host>:<pid>"`` of that process.
    """

    key: str
    ok: bool
    value: Any = None
    error: str | None = None
    traceback: str | None = None
    files: tuple[Path, ...] = ()
    seconds: float | None = None
    worker: str | None = None


@dataclass(frozen=True)
class _Outcome:
    """What :func:`_execute` sends back from wherever the task ran."""

    ok: bool
    value: Any = None
    files: Mapping[str, bytes] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    seconds: float | None = None
    worker: str | None = None


def run_tasks(
    tasks: Sequence[Task],
    *,
    workers: int | None = None,
    address: str | None = None,
    files_root: str | Path = ".",
    on_result: Callable[[TaskResult], None] | None = None,
    env: Mapping[str, str] | None = None,
    upload_code: bool = True,
    retries: int = 1,
    progress: bool = True,
    description: str = "tasks",
) -> list[TaskResult]:
    """Run ``tasks``; return one :class:`TaskResult` per task, in task order (see the module docstring).

    ``workers``: None or 1 runs them here, one after another; N > 1 starts a local Ray instance with N
    CPUs; with a cluster it caps how many tasks are in flight (None: all, Ray queues them).
    ``address`` (or ``RAY_ADDRESS``): the Ray cluster to send the tasks to instead.
    ``files_root``: the driver-side folder that :class:`TaskOutput` files are written under.
    ``on_result``: called on the driver with each result as it finishes, after its files are written.
    ``env``: environment variables for the workers, on top of the driver's :data:`PASSED_ENV`.
    ``upload_code``: on a cluster, ship this repository as the tasks' working directory.
    ``retries``: how often Ray reruns a task whose worker process or node died (not one that raised).
    ``progress``: show a progress bar (finished and failed tasks) and one line per failure on stderr.
    Raises FlowError for bad arguments before anything runs; KeyboardInterrupt after cancelling on Ctrl-C.
    """
    tasks = list(tasks)
    for task in tasks:
        if not isinstance(task, Task):
            raise FlowError(f"run_tasks takes Task objects, got {type(task).__name__}: {task!r}")
    duplicates = sorted(key for key, count in Counter(task.key for task in tasks).items() if count > 1)
    if duplicates:
        raise FlowError(f"task keys must be unique in a grid; repeated: {', '.join(map(repr, duplicates))}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise FlowError(f"workers={workers!r}: give a whole number of tasks to run at a time, 1 or more "
                        "(1 runs them here, one after another)")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise FlowError(f"retries={retries!r}: give a whole number >= 0")
    env_vars = _worker_env(env)
    address = _resolve_address(address)
    root = Path(files_root).resolve()
    if not tasks:
        return []

    results: dict[str, TaskResult] = {}
    bar = _ProgressBar(len(tasks), description, enabled=progress)

    def deliver(task: Task, outcome: _Outcome):
        result = _finish(task, outcome, root)
        results[task.key] = result
        bar.count(result)
        if on_result is not None:
            on_result(result)

    try:
        if address is None and (workers is None or workers == 1):
            for task in tasks:
                deliver(task, _execute(task))
        else:
            _run_on_ray(tasks, deliver, workers=workers, address=address, env_vars=env_vars,
                        upload_code=upload_code, retries=retries, log=bar.write)
    finally:
        bar.close()
    return [results[task.key] for task in tasks]


def _run_on_ray(tasks: list[Task], deliver, *, workers, address, env_vars, upload_code, retries, log):
    """Run ``tasks`` on a local Ray instance (address None) or a cluster; ``deliver`` each outcome."""
    import ray

    if ray.is_initialized():
        raise FlowError("Ray is already initialized in this process; run_tasks starts and stops its own "
                        "Ray connection: call ray.shutdown() first")
    # Ray's own start-up messages (INFO, the token-authentication notice) are noise for a grid run;
    # errors still show, and the tasks' own output is still forwarded.
    quiet = {"logging_level": logging.ERROR, "log_to_driver": True}
    # ray.init makes SIGTERM raise SystemExit (so a terminated grid cancels its tasks); restored at the end
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_sigterm = signal.getsignal(signal.SIGTERM) if in_main_thread else None
    pending: dict[Any, Task] = {}
    try:
        if address is None:
            # Workers inherit the environment of the processes ray.init starts. A runtime_env would do the
            # same but keeps Ray from using the worker processes it starts in advance: the first tasks
            # then wait seconds for new ones (measured: about 6 s against under 1 s on 2 cores).
            python_path = [str(REPO_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
            local_env = {**env_vars, "PYTHONPATH": os.pathsep.join(python_path)}
            # Usage statistics are off unless the user asked for them (a local instance is often offline).
            local_env.setdefault("RAY_USAGE_STATS_ENABLED", os.environ.get("RAY_USAGE_STATS_ENABLED", "0"))
            with _environment(local_env):
                # "local": a new instance even when `ray start` left a cluster running on this machine
                ray.init(address="local", num_cpus=workers, include_dashboard=False, **quiet)
        else:
            runtime_env: dict[str, Any] = {"env_vars": dict(env_vars)} if env_vars else {}
            if upload_code:
                runtime_env.update(working_dir=str(REPO_ROOT), excludes=list(UPLOAD_EXCLUDES))
            _check_reachable(address)
            try:
                ray.init(address=address, runtime_env=runtime_env or None, **quiet)
            except (ConnectionError, RuntimeError) as err:
                raise FlowError(
                    f"cannot connect to the Ray cluster at {address!r} (address= or {ADDRESS_ENV}): "
                    f"{error_line(err.__cause__ or err)}. A cluster started by `ray start` (Ray 2.60) checks a token: "
                    "the driver needs RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN or "
                    "~/.ray/auth_token)") from err
        _check_resources(tasks, ray.cluster_resources(), local=address is None, workers=workers, log=log)
        remote_execute = ray.remote(_execute)
        in_flight_cap = workers if address is not None and workers else len(tasks)
        waiting = deque(tasks)

        def submit():
            while waiting and len(pending) < in_flight_cap:
                task = waiting.popleft()
                try:
                    ref = remote_execute.options(num_cpus=task.num_cpus, num_gpus=task.num_gpus,
                                                 max_retries=retries, name=task.key).remote(task)
                except Exception as err:  # e.g. an argument that cannot be pickled: this task fails, not the grid
                    deliver(task, _failure(err, context="could not send the task: "))
                    continue
                pending[ref] = task

        submit()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                task = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as err:  # worker died, out of memory, result not picklable
                    # a RayTaskError's own first line only names the task; its cause names the error
                    cause = getattr(err, "cause", None)
                    named = cause if isinstance(cause, BaseException) else err
                    outcome = replace(_failure(err), error=error_line(named))
                deliver(task, outcome)
            submit()
    except BaseException:
        # Ctrl-C, or an error in the caller's callback: stop what still runs. A local instance would end
        # with ray.shutdown anyway; on a cluster the tasks would otherwise run on.
        for ref in pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:
                pass
        raise
    finally:
        ray.shutdown()
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


@contextlib.contextmanager
def _environment(values: Mapping[str, str]):
    """Set environment variables of this process for the duration of the block, then restore them."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _execute(task: Task) -> _Outcome:
    """Run one task where it was scheduled; the task's own exceptions become a failed outcome."""
    worker = f"{socket.gethostname()}:{os.getpid()}"
    start = time.perf_counter()
    try:
        returned = resolve_function(task.function)(**task.kwargs)
    except (Exception, SystemExit) as err:
        return _failure(err, seconds=time.perf_counter() - start, worker=worker)
    seconds = time.perf_counter() - start
    if isinstance(returned, TaskOutput):
        return _Outcome(ok=True, value=returned.value, files=dict(returned.files), seconds=seconds, worker=worker)
    return _Outcome(ok=True, value=returned, seconds=seconds, worker=worker)


def resolve_function(function: str | Callable[..., Any]) -> Callable[..., Any]:
    """The callable a task names: a ``"package.module:function"`` reference is imported here."""
    if callable(function):
        return function
    module_name, _, name = function.partition(":")
    module = importlib.import_module(module_name)
    found = getattr(module, name, None)
    if not callable(found):
        raise FlowError(f"function {function!r}: module {module_name!r} has no function {name!r}")
    return found


def write_files(root: Path, files: Mapping[str, bytes]) -> tuple[Path, ...]:
    """Write ``files`` (relative POSIX path -> bytes) under ``root``, each atomically; return the paths.

    All paths and contents are checked before the first write, so a bad entry writes nothing.
    """
    targets = []
    for relative, data in files.items():
        parts = PurePosixPath(relative).parts if isinstance(relative, str) else ()
        if not parts or parts[0] == "/" or ".." in parts:
            raise FlowError(f"file path {relative!r}: give a path relative to the driver's files root, "
                            "without '..'")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise FlowError(f"file {relative!r}: content must be bytes, got {type(data).__name__}")
        targets.append((root.joinpath(*parts), data))
    for target, data in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            temporary.write_bytes(data)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
    return tuple(target for target, _ in targets)


def error_line(err: BaseException, context: str = "") -> str:
    """``"<ErrorType>: <context><message>"`` on one line, or the type and context alone.

    The message is the first non-empty line of the error's text; where that text carries a traceback
    (Ray's errors about a remote task), its last line, which names the error underneath.
    """
    lines = [line.strip() for line in _ANSI_ESCAPE.sub("", str(err)).splitlines() if line.strip()]
    if lines and any(line.startswith("Traceback (most recent call last)") for line in lines):
        lines = lines[-1:]
    text = (context + (lines[0] if lines else "")).rstrip(": ")
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _failure(err: BaseException, context: str = "", seconds: float | None = None,
             worker: str | None = None) -> _Outcome:
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    return _Outcome(ok=False, error=error_line(err, context), traceback=text, seconds=seconds, worker=worker)


def _finish(task: Task, outcome: _Outcome, root: Path) -> TaskResult:
    """The driver-side result of an outcome: its files written under ``root``."""
    common = {"key": task.key, "seconds": outcome.seconds, "worker": outcome.worker}
    if not outcome.ok:
        return TaskResult(ok=False, error=outcome.error, traceback=outcome.traceback, **common)
    try:
        written = write_files(root, outcome.files)
    except (FlowError, OSError) as err:
        failed = _failure(err, context="writing the task's files: ")
        return TaskResult(ok=False, error=failed.error, traceback=failed.traceback, **common)
    return TaskResult(ok=True, value=outcome.value, files=written, **common)


def _check_function(key: str, function) -> None:
    if isinstance(function, str):
        if not _FUNCTION_REF.match(function):
            raise FlowError(f"task {key!r}: function {function!r}; give 'package.module:function' or a function")
        module_name = function.partition(":")[0]
        try:
            found = importlib.util.find_spec(module_name)
        except ImportError:
            found = None
        if found is None:
            raise FlowError(f"task {key!r}: function {function!r}: no module {module_name!r} on this Python path")
    elif callable(function):
        qualname = getattr(function, "__qualname__", "")
        if not qualname or "<" in qualname:
            raise FlowError(f"task {key!r}: function {qualname or function!r} is not defined at module level "
                            "(a lambda or nested function); give 'package.module:function' or a top-level function")
    else:
        raise FlowError(f"task {key!r}: function {function!r}; give 'package.module:function' or a function")


def _worker_env(env: Mapping[str, str] | None) -> dict[str, str]:
    passed = {name: os.environ[name] for name in PASSED_ENV if os.environ.get(name)}
    for name, value in (env or {}).items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise FlowError(f"env {name!r}={value!r}: names and values must be strings")
        passed[name] = value
    return passed


def _resolve_address(address: str | None) -> str | None:
    address = address or os.environ.get(ADDRESS_ENV) or None
    if address is not None and address != "auto" and not _ADDRESS.match(address):
        raise FlowError(f"Ray address {address!r}: give 'auto', 'ray://<head>:10001' or '<head>:6379' "
                        f"(argument address= or {ADDRESS_ENV})")
    return address


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail fast when nothing listens at a ``[ray://]host:port`` address (Ray itself retries for minutes)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as err:
        raise FlowError(f"Ray address {address!r} (address= or {ADDRESS_ENV}): nothing answers there "
                        f"({error_line(err)}); is the head node running (`ray start --head`)?") from None


def _check_resources(tasks: list[Task], available: Mapping[str, float], *, local: bool, workers, log) -> None:
    """Fail fast when a task can never be scheduled on a local instance; warn on a cluster (it may grow)."""
    for task in tasks:
        for name, wanted in (("CPU", task.num_cpus), ("GPU", task.num_gpus)):
            have = available.get(name, 0.0)
            if wanted <= have:
                continue
            if local and name == "CPU":
                raise FlowError(f"task {task.key!r} asks for num_cpus={task.num_cpus} but the local Ray instance "
                                f"has workers={workers} CPUs; give workers={math.ceil(wanted)} or more")
            if local:
                raise FlowError(f"task {task.key!r} asks for num_gpus={task.num_gpus} but Ray finds {have:g} "
                                "GPUs on this machine")
            log(f"task {task.key!r} asks for {wanted:g} {name} but the cluster has {have:g} now; "
                "it waits until a node with enough joins")


class _ProgressBar:
    """A tqdm bar on stderr counting finished tasks, with the failures in its postfix."""

    def __init__(self, total: int, description: str, enabled: bool):
        self.failed = 0
        self.enabled = enabled
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=description, unit="task", file=sys.stderr, dynamic_ncols=True)

    def count(self, result: TaskResult):
        if result.ok:
            if self.bar is not None:
                self.bar.update(1)
            return
        self.failed += 1
        self.write(f"{result.key}: failed: {result.error}")
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.failed} failed", refresh=False)
            self.bar.update(1)

    def write(self, line: str):
        if self.enabled:
            from tqdm import tqdm

            tqdm.write(line, file=sys.stderr)

    def close(self):
        if self.bar is not None:
            self.bar.close()
