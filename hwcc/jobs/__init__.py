"""Tuning jobs: many models, for many targets and budgets, on the devices they run on, on Ray.

The third way hwcc is used, after ``hwcc compile`` and ``hwcc.compile``: a job file lists
models, targets (and for a measured target its device), budgets and data, as a matrix and
as single jobs (:mod:`hwcc.jobs.spec`); :func:`run` compiles each one, as a Ray task on a
machine that offers what it needs (:mod:`hwcc.jobs.engine`), into ``RESULTS/<job-id>/``,
and keeps ``RESULTS/summary.json``, ``summary.csv`` and ``index.html`` up to date
(:mod:`hwcc.jobs.results`, :mod:`hwcc.jobs.page`)::

    import hwcc.jobs
    result = hwcc.jobs.run("jobs.toml", "results/")
    print(result.exit_code)        # 0: every job met its budgets

Ray is an optional dependency (``pip install 'hwcc[jobs]'``); only running jobs needs it.
"""

from hwcc.jobs.driver import EXIT_UNMET, JobsResult, run
from hwcc.jobs.spec import Job, JobSpec, load_spec, parse_spec

__all__ = ["run", "JobsResult", "EXIT_UNMET", "Job", "JobSpec", "load_spec", "parse_spec"]
