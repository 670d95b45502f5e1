"""Running jobs on Ray: the one module of hwcc that imports it.

Ray (an existing engine, not one of hwcc's own) gives what tuning jobs need: resources a
task asks for and holds while it runs, tasks retried when their worker dies, and a local
instance that needs nothing set up. hwcc uses it in the plainest way:

* one task per job (:func:`submit`), asking for one CPU and, for a measured target, one
  unit of its device's resource ``hwcc-device:<device>``. A machine offers a device with
  ``ray start --resources '{"hwcc-device:xeon-8380": 1}'``; with one unit, Ray runs one
  such job on it at a time, so no measurement is disturbed by another job's;
* ``max_retries``: a task whose worker process or node died is run again, and the job
  resumes from its checkpoint (:mod:`hwcc.jobs.worker`). A job's own failure (bad
  model, unreachable budget) is not an exception and is not retried;
* a small actor (:class:`_Board`) where running jobs post their progress, which the
  driver reads while it waits.

With no address, :func:`connect` starts a Ray instance on this machine that offers every
device the job file names: the machine is then each of them. ``"auto"`` or
``ray://HOST:PORT`` joins a running cluster, whose machines offer their own devices.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

from hwcc.errors import HwccError
from hwcc.jobs.spec import Job

__all__ = ["Engine", "connect", "MAX_RETRIES"]

MAX_RETRIES = 3


def _ray():
    try:
        import ray
    except ImportError:
        raise HwccError(
            "tuning jobs run on Ray, which is not installed",
            "install the extra: pip install 'hwcc[jobs]'",
        ) from None
    return ray


class Engine:
    """A connection to Ray: submits jobs, reads their progress, waits for them."""

    def __init__(self, ray: Any, started: bool):
        self.ray, self.started = ray, started
        self.board = _board_class(ray).options(num_cpus=0).remote()
        self._task = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(_run_remote)

    def offered(self) -> set[str]:
        """The resources some node of the cluster offers (device names included)."""
        return set(self.ray.cluster_resources())

    def submit(self, job: Job, results: str, token: str, tables: Mapping[str, bytes]) -> Any:
        """Start ``job``; returns the reference its answer arrives on."""
        resources = {job.resource: 1} if job.resource else {}
        task = self._task.options(num_cpus=1, resources=resources, name=f"hwcc-job:{job.id}")
        return task.remote(job.to_json(), results, token, dict(tables), self.board)

    def wait(self, refs: Iterable[Any], timeout: float) -> list[Any]:
        """The refs among ``refs`` that are ready, after at most ``timeout`` seconds."""
        refs = list(refs)
        if not refs:
            return []
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:  # take every other one ready by now too
            more, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
            ready = list(dict.fromkeys(ready + more))
        return ready

    def answer(self, ref: Any) -> dict[str, Any]:
        """A finished job's answer; a task Ray gave up on (its retries spent) as a failure."""
        try:
            return self.ray.get(ref)
        except Exception as e:  # RayTaskError, WorkerCrashedError, NodeDiedError, ...
            return {
                "status": "failed",
                "error": f"its worker was lost {MAX_RETRIES + 1} times: {type(e).__name__}",
                "hint": str(e).splitlines()[0][:300] if str(e) else None,
            }

    def cancel(self, refs: Iterable[Any], wait_s: float = 30.0) -> None:
        """Stop the tasks of ``refs``, running or not (their checkpoints stay), and wait up
        to ``wait_s`` until they have ended. Ray kills a cancelled task's worker after
        ``cancel`` returns; until it is dead its compile holds the job's output lock, and a
        driver run again at once found the job's folder taken and failed the job."""
        refs = list(refs)
        for ref in refs:
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # already ended, or its node is gone: nothing left to stop
                pass
        if refs:
            try:
                self.ray.wait(refs, num_returns=len(refs), timeout=wait_s)
            except Exception:  # the cluster is gone: nothing runs any more
                pass

    def progress(self) -> dict[str, dict[str, Any]]:
        """What each running job posted last (job id -> progress)."""
        return self.ray.get(self.board.snapshot.remote())

    def close(self) -> None:
        try:
            self.ray.kill(self.board)
        except Exception:  # the cluster is already gone
            pass
        if self.started:
            self.ray.shutdown()


def connect(address: str | None, devices: Iterable[str]) -> Engine:
    """Join the Ray cluster at ``address``, or start one here offering ``devices``.

    Raises:
        HwccError: Ray is not installed, or the cluster cannot be reached.
    """
    ray = _ray()
    if ray.is_initialized():  # a caller (a test, a notebook) already connected
        return Engine(ray, started=False)
    quiet = {"log_to_driver": False, "include_dashboard": False, "configure_logging": False}
    try:
        if address is None:
            resources = {f"hwcc-device:{d}": 1 for d in sorted(set(devices))}
            # "local": a new instance even where a cluster started by `ray start` is running,
            # which Ray would otherwise join
            ray.init(address="local", resources=resources, **quiet)
        else:
            ray.init(
                address=address, **{k: v for k, v in quiet.items() if k != "include_dashboard"}
            )
    except Exception as e:  # Ray says why in its own exception types (and ray:// needs ray[client])
        if address is None:
            raise HwccError(f"cannot start Ray on this machine: {e}") from None
        raise HwccError(
            f"cannot join the Ray cluster at {address}: {e}",
            "start one with 'ray start --head', or leave out --address to run on this machine",
        ) from None
    return Engine(ray, started=True)


def _run_remote(
    job: dict[str, Any], results: str, token: str, tables: dict[str, bytes], board: Any
) -> dict[str, Any]:
    """The Ray task: one job, on whichever node Ray placed it."""
    import ray

    from hwcc.jobs.worker import run_job

    ctx = ray.get_runtime_context()
    node = {"node_id": ctx.get_node_id(), "node_ip": ray.util.get_node_ip_address()}
    spec = Job.from_json(job)

    def report(info: dict[str, Any]) -> None:
        board.post.remote(spec.id, {**info, **node})

    return run_job(spec, results, token, tables, node, report)


class _Board:
    """Each running job's last progress message (a Ray actor: see :func:`_board_class`)."""

    def __init__(self) -> None:
        self.latest: dict[str, dict[str, Any]] = {}

    def post(self, job_id: str, info: dict[str, Any]) -> None:
        self.latest[job_id] = {**self.latest.get(job_id, {}), **info}

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return dict(self.latest)


@functools.cache
def _board_class(ray: Any) -> Any:
    """:class:`_Board` as a Ray actor class, made once per process (decorated here, not at
    import, so that importing this module does not need Ray)."""
    return ray.remote(_Board)
