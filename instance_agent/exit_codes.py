"""The agent's exit codes: one name per outcome, so scripts and systemd can tell them apart."""

from __future__ import annotations

EXIT_OK = 0
EXIT_JOBS_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_STATE_UNUSABLE = 3
EXIT_IO_ERROR = 4
EXIT_INTERRUPTED = 5
EXIT_SHUTDOWN_FAILED = 6
EXIT_BUSY = 7

DESCRIPTIONS = {
    EXIT_OK: "done; or the agent detached and runs the jobs; or it is already running this role and date",
    EXIT_JOBS_FAILED: "(--foreground) finished, but a job failed, timed out or was interrupted",
    EXIT_BAD_INPUT: "bad arguments, date, role or spec: nothing started, nothing written",
    EXIT_STATE_UNUSABLE: "the state file is unreadable, corrupt or another role's: refused, file untouched",
    EXIT_IO_ERROR: "state or log directory unusable, or the detached agent failed to start",
    EXIT_INTERRUPTED: "(--foreground) stopped by a spot interruption notice, SIGTERM or SIGINT",
    EXIT_SHUTDOWN_FAILED: "the jobs finished but the shutdown (OS command or StopInstances) failed",
    EXIT_BUSY: "busy: an agent for another role or date (named on stderr) holds this VM: nothing started",
}
