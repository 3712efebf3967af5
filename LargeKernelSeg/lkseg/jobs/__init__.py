"""Background fine-tuning jobs: plain functions every front end polls.

:mod:`.control` starts, resumes and cancels jobs, :mod:`.folder` reads a job folder's state,
:mod:`.processes` checks and ends a job's processes, :mod:`.supervisor` is the detached
``python -m lkseg.jobs run JOBDIR`` process that runs the training command.

Stable entry points: ``lkseg.jobs.start_job``, ``job_status``, ``cancel_job``, ``resume_job``,
``list_jobs``, ``read_progress``, ``default_root``.
"""

from lkseg.jobs.control import cancel_job, resume_job, start_job, training_argv
from lkseg.jobs.folder import (
           ACTIVE,
           JobError,
           default_root,
           job_status,
           list_jobs,
           log_tail,
           read_progress,
)
from lkseg.utils.processes import pid_alive

__all__ = ["ACTIVE", "JobError", "cancel_job", "default_root", "job_status", "list_jobs", "log_tail", "pid_alive",
           "read_progress", "resume_job", "start_job", "training_argv"]
