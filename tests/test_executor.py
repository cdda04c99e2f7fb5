"""flow.experiments.executor: the same grid here (no Ray) and on a local Ray instance (real Ray, 2 workers)."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flow.core.accumulator import datatype_bound_bits
from flow.core.errors import FlowError
from flow.experiments.executor import Task, TaskOutput, run_tasks

REPO = Path(__file__).resolve().parent.parent
# Referenced by name, so the tasks import this module where they run (a Ray worker finds it through the
# repository root on its PYTHONPATH, not through the driver's working directory).
POINT = "tests.test_executor:sweep_point"


def sweep_point(p: int, rendezvous: str | None = None) -> TaskOutput:
    """A sweep point in miniature: P=1 fails; otherwise a value and a report file for the driver.

    With ``rendezvous`` (a folder), the point waits until the other point of the grid has started too,
    so it only succeeds when both run at the same time.
    """
    if rendezvous:
        Path(rendezvous, f"P{p}").touch()
        deadline = time.monotonic() + 60
        while len(list(Path(rendezvous).iterdir())) < 2:
            if time.monotonic() > deadline:
                raise TimeoutError(f"P={p}: the other point never started")
            time.sleep(0.05)
    if p < 2:
        raise FlowError(f"P={p} is too narrow for any accumulator")
    # the linear model's 784 binary inputs and 8-bit weights: 19-bit data-type bound
    bound = datatype_bound_bits(k=784, weight_bits=8, input_bits=1, input_signed=False)
    summary = {"acc_bits": p, "datatype_bound": bound}
    return TaskOutput(value=summary, files={f"hw_reports/P{p}/summary.json": json.dumps(summary).encode()})


def grid(rendezvous=None) -> list[Task]:
    kwargs = {"rendezvous": str(rendezvous)} if rendezvous else {}
    return [Task("P16", POINT, {"p": 16, **kwargs}), Task("P1", POINT, {"p": 1, **kwargs})]


def check_grid_results(results, seen, root: Path):
    assert [result.key for result in results] == ["P16", "P1"]
    done, failed = results
    assert done.ok and done.value == {"acc_bits": 16, "datatype_bound": 19} and done.error is None
    assert done.files == (root / "hw_reports" / "P16" / "summary.json",)
    assert json.loads(done.files[0].read_text()) == {"acc_bits": 16, "datatype_bound": 19}
    assert not failed.ok and failed.value is None and failed.files == ()
    assert failed.error == "FlowError: P=1 is too narrow for any accumulator"
    assert "Traceback" in failed.traceback and "in sweep_point" in failed.traceback
    # only the finished point's file is there: no temporary file left, nothing for the failed point
    written = sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())
    assert written == ["hw_reports/P16/summary.json"]
    assert sorted(result.key for result in seen) == ["P1", "P16"]
    assert {result.key: result for result in seen} == {result.key: result for result in results}


def test_grid_on_a_local_ray_instance_runs_two_at_once_and_keeps_the_failure(tmp_path, monkeypatch):
    import ray
    # workers must find the project through the executor's set-up, not through the driver's directory
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    rendezvous = tmp_path / "rendezvous"
    rendezvous.mkdir()
    root = tmp_path / "driver"
    seen = []
    results = run_tasks(grid(rendezvous), workers=2, files_root=root, on_result=seen.append, progress=False)
    check_grid_results(results, seen, root)
    # both points met at the rendezvous: they ran at the same time, in two worker processes
    assert sorted(p.name for p in rendezvous.iterdir()) == ["P1", "P16"]
    workers = {result.worker for result in results}
    assert len(workers) == 2 and f"{os.uname().nodename}:{os.getpid()}" not in workers
    assert not ray.is_initialized()


def test_sequential_path_gives_the_same_results_without_importing_ray(tmp_path):
    script = f"""
import json, sys
from pathlib import Path
sys.path.insert(0, {str(REPO)!r})
from flow.experiments.executor import run_tasks
from tests.test_executor import check_grid_results, grid
seen = []
root = Path({str(tmp_path)!r})
results = run_tasks(grid(), files_root=root, on_result=seen.append, progress=False)
check_grid_results(results, seen, root)
print(json.dumps({{"ray_imported": "ray" in sys.modules, "workers": sorted({{r.worker for r in results}})}}))
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["ray_imported"] is False
    assert len(report["workers"]) == 1  # both tasks ran in that one process


def press_ctrl_c():
    raise KeyboardInterrupt


def test_sequential_ctrl_c_keeps_finished_results_and_skips_the_rest(tmp_path):
    seen = []
    tasks = [Task("bound", "flow.core.accumulator:datatype_bound_bits",
                  {"k": 784, "weight_bits": 8, "input_bits": 1, "input_signed": False}),
             Task("interrupt", "tests.test_executor:press_ctrl_c"),
             Task("never", POINT, {"p": 12})]
    with pytest.raises(KeyboardInterrupt):
        run_tasks(tasks, files_root=tmp_path, on_result=seen.append, progress=False)
    assert [(result.key, result.value) for result in seen] == [("bound", 19)]
    assert not (tmp_path / "hw_reports").exists()


def test_bad_output_file_paths_fail_only_their_task(tmp_path):
    tasks = [Task("escape", "tests.test_executor:file_named", {"name": "../outside.txt"}),
             Task("absolute", "tests.test_executor:file_named", {"name": "/tmp/absolute.txt"}),
             Task("text", "tests.test_executor:file_named", {"name": "ok.txt", "content": "not bytes"}),
             Task("fine", "tests.test_executor:file_named", {"name": "a/b.txt"})]
    results = run_tasks(tasks, files_root=tmp_path / "root", progress=False)
    assert [result.ok for result in results] == [False, False, False, True]
    assert results[0].error == ("FlowError: writing the task's files: file path '../outside.txt': give a path "
                                "relative to the driver's files root, without '..'")
    assert "'/tmp/absolute.txt'" in results[1].error
    assert results[2].error == "FlowError: writing the task's files: file 'ok.txt': content must be bytes, got str"
    assert (tmp_path / "root" / "a" / "b.txt").read_bytes() == b"x"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["b.txt"]


def file_named(name: str, content=b"x") -> TaskOutput:
    return TaskOutput(value=None, files={name: content})


@pytest.mark.parametrize("call, message", [
    (lambda: run_tasks([], workers=0), "workers=0: give a whole number"),
    (lambda: run_tasks([], workers=2.5), "workers=2.5: give a whole number"),
    (lambda: run_tasks([Task("a", POINT), Task("a", POINT)]), "repeated: 'a'"),
    (lambda: Task("a", "flow.core.accumulator.datatype_bound_bits"), "give 'package.module:function'"),
    (lambda: Task("a", "flow.nosuch:f"), "no module 'flow.nosuch'"),
    (lambda: Task("a", lambda: 1), "not defined at module level"),
    (lambda: Task("a", POINT, num_gpus=-1), "num_gpus=-1; give a number >= 0"),
    (lambda: Task("", POINT), "task key ''"),
    (lambda: run_tasks([], address="headnode"), "Ray address 'headnode'"),
    (lambda: run_tasks([], address="ray://head:port"), "Ray address 'ray://head:port'"),
])
def test_bad_input_is_named(call, message):
    with pytest.raises(FlowError) as raised:
        call()
    assert message in str(raised.value)


def test_ray_address_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "nohost")
    with pytest.raises(FlowError, match="Ray address 'nohost'"):
        run_tasks([Task("a", POINT, {"p": 16})])


def test_an_address_where_nothing_listens_fails_fast(monkeypatch):
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(FlowError, match=f"Ray address '127.0.0.1:{port}' .*nothing answers there"):
        run_tasks([Task("a", POINT, {"p": 16})], progress=False)
    assert time.monotonic() - start < 20


def sleeping_processes(seconds: str) -> list:
    import psutil

    return [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", seconds]]


@pytest.mark.slow
def test_ctrl_c_on_a_local_ray_instance_stops_running_tasks(monkeypatch):
    """Ctrl-C while a task runs a subprocess: run_tasks re-raises promptly, and nothing is left running."""
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    seconds = str(600 + os.getpid() % 300)  # a sleep nobody else runs
    tasks = [Task("quick", "os:getpid"), Task("long", "subprocess:run", {"args": ["sleep", seconds]})]

    running_when_pressed = []

    def press_ctrl_c_once_the_long_task_runs(result):
        deadline = time.monotonic() + 60
        while not sleeping_processes(seconds) and time.monotonic() < deadline:
            time.sleep(0.1)
        running_when_pressed.append(len(sleeping_processes(seconds)))
        raise KeyboardInterrupt

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_tasks(tasks, workers=2, on_result=press_ctrl_c_once_the_long_task_runs, progress=False)
    assert running_when_pressed == [1]
    assert time.monotonic() - start < 120
    assert not ray.is_initialized()
    time.sleep(2)
    assert sleeping_processes(seconds) == []
