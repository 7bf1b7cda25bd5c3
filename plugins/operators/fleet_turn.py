"""Whose turn it is on the fleet: one run of the DAG at a time on its VMs, whatever started it.

The DAG's ``max_active_runs=1`` does not bind a backfill (each backfill has its own limit, 10
by default, and its runs do not count against the DAG's), so two runs can reach the same VMs
at once. A run's first task, ``wait_turn``, takes a turn for the whole run; it is the only
writer of this protocol, and its one register is its own task-instance state, which every run
reads with one ``get_task_states`` call of the Task SDK. For another run ``X``:

================================================  ==============================================
``X``'s ``wait_turn`` (and ``X`` queued/running)  what it means for this run
================================================  ==============================================
``success``                                       X holds the fleet until X's run ends
``running``                                       X is checking its turn right now
``deferred``, ``scheduled``, ``queued``,          X waits for its turn; the one whose run id
``up_for_retry``, ``up_for_reschedule``,          sorts first goes first (a backfill's runs:
``restarting``                                    ``backfill__<date>``, in date order)
anything else, or X's run finished                nothing: X does not touch the fleet
================================================  ==============================================

**The rule that makes it safe** (:func:`decide_go`, run in the worker, in state ``running``):
go only when no other active run holds the fleet or is checking, and none that sorts first
waits. Two runs R and Y cannot both go with overlapping work. Say R read the states first (at
``c_R``). R's state was committed ``running`` before that read (the task runner marks a task
running before it executes it) and stays ``running`` until R's ``success`` is committed, since
a run that goes returns at once. So at Y's later read, R is ``running`` (Y sees a checker: Y
does not go) or ``success`` (Y sees a holder, unless R's run has ended by Y's second call, and
then R's VM work is over). This needs no timing assumption, only that the metadata database
returns what was committed before a read. A "nobody ahead, twice in a row" rule would need one:
that a run which decided to go is ``success`` within one poll interval, which a busy scheduler
does not promise (the decision is made in the triggerer, the ``success`` written by a worker
that the scheduler has yet to start).

The wait itself (:func:`decide_gate`, run in the triggerer) is only about *when to look*: it
lets the run resume once no active run holds the fleet and none that sorts before it waits.
The run then checks again in the worker, and defers again when it must. Order only decides who
goes first: the earliest waiter's gate is always open, and a ``running`` check lasts a moment,
so the queue moves.

**A run cleared after its turn** (a person's Clear re-opens an ended run) may find the fleet taken
by a run that went while it was over. ``wait_turn`` is a setup task, so Airflow clears it with any
step it guards and the run queues again; a Clear that leaves it out (a "clear failed", the signer's
pair alone) leaves its stale ``success``. So every step that acts on a VM checks, in a run that
has been cleared, :func:`decide_rejoin` first (:mod:`operators.fleet_turn_guard`): no other active
run holds the fleet or is checking. While the cleared run is active its stale ``success`` keeps
every newcomer waiting, so once nobody else holds the fleet it is this run's again. The agent's
lock (exit 7, another role or date holds this VM) stays the backstop.

Reading is separate from deciding: :func:`read_turn` makes the calls once, the ``decide_*``
functions are pure (table-tested), and the sensor and the trigger act on their answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from operators.fleet_aws import FleetError

HOLDING = "success"
CHECKING = "running"
WAITING = frozenset({"deferred", "scheduled", "queued", "up_for_retry", "up_for_reschedule", "restarting"})
# A run whose state is one of these may still do VM work (a cleared run goes back to queued).
ACTIVE_RUN_STATES = ("queued", "running")

# The run ids of one count call: the Task SDK sends them in the URL's query string.
BATCH_RUNS = 50
BATCH_CHARS = 2000


@dataclass(frozen=True)
class TurnView:
    """One reading: every run's ``wait_turn`` state, and which of those runs are still active.

    :param run_id: this run
    :param states: ``{run_id: state of its wait_turn}`` for every run of the DAG that has one
    :param active: the other runs, among those with a holding, checking or waiting
        ``wait_turn``, whose run is queued or running
    """

    run_id: str
    states: Mapping[str, str | None]
    active: frozenset[str]

    def others(self, states: Iterable[str]) -> list[str]:
        wanted = set(states)
        return sorted(
            run
            for run, state in self.states.items()
            if run != self.run_id and state in wanted and run in self.active
        )


@dataclass(frozen=True)
class Blocker:
    run_id: str
    why: str

    def __str__(self) -> str:
        return f"{self.run_id} ({self.why})"


@dataclass(frozen=True)
class Turn:
    """A decision: ``go``, or the runs in the way and why."""

    blockers: tuple[Blocker, ...]

    @property
    def go(self) -> bool:
        return not self.blockers

    def describe(self) -> str:
        return "; ".join(str(blocker) for blocker in self.blockers) or "nobody ahead"


def decide_gate(view: TurnView) -> Turn:
    """The triggerer's question: may this run look again in the worker? (Liveness, not safety.)"""
    return Turn(tuple(_ahead(view)))


def decide_go(view: TurnView) -> Turn:
    """The worker's question: may this run take the fleet now? (The safety rule, module doc.)"""
    later_checking = [
        Blocker(run, "checks its turn right now and may go; looking again")
        for run in view.others([CHECKING])
        if run > view.run_id
    ]
    return Turn(tuple(_ahead(view) + later_checking))


def decide_rejoin(view: TurnView) -> Turn:
    """A cleared run's question before one of its steps acts: is the fleet (again) this run's?

    Only the runs that may have gone while this one was over matter: those holding the fleet and
    those checking right now. A waiting run cannot go while this one is active (it sees this
    run's ``wait_turn`` success), so it is no reason to wait.
    """
    return Turn(
        tuple(
            _holders(view)
            + [
                Blocker(run, "checks its turn right now and may go; looking again")
                for run in view.others([CHECKING])
            ]
        )
    )


def _holders(view: TurnView) -> list[Blocker]:
    return [
        Blocker(run, "holds the fleet: its wait_turn succeeded and the run is still going")
        for run in view.others([HOLDING])
    ]


def _ahead(view: TurnView) -> list[Blocker]:
    earlier = [
        Blocker(run, f"waits for its turn too ({view.states[run]}) and goes first: its run id sorts first")
        for run in view.others(WAITING | {CHECKING})
        if run < view.run_id
    ]
    return _holders(view) + earlier


# -- reading ---------------------------------------------------------------------------------------


class TurnReader(Protocol):
    """What :func:`read_turn` needs from Airflow: the Task SDK's calls (:class:`SdkTurnReader`)."""

    def task_states(self, dag_id: str, task_id: str) -> Mapping[str, str | None]: ...

    def active_count(self, dag_id: str, run_ids: Sequence[str]) -> int: ...


class SdkTurnReader:
    """The Task SDK's ``RuntimeTaskInstance`` calls, in a worker or in the triggerer.

    Neither may touch the metadata database; both may ask the API server through the
    supervisor (the triggerer serves ``GetTaskStates`` and ``GetDRCount``).
    """

    def task_states(self, dag_id: str, task_id: str) -> dict[str, str | None]:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        found = _sdk_call(
            RuntimeTaskInstance.get_task_states, dag_id=dag_id, task_ids=[task_id], map_index=-1
        )
        return {run_id: tasks.get(task_id) for run_id, tasks in found.items()}

    def active_count(self, dag_id: str, run_ids: Sequence[str]) -> int:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        if not run_ids:  # an empty run_ids filter means no filter: every run of the DAG
            return 0
        return _sdk_call(
            RuntimeTaskInstance.get_dr_count,
            dag_id=dag_id,
            run_ids=list(run_ids),
            states=list(ACTIVE_RUN_STATES),
        )


def _sdk_call(call: Callable[..., Any], **kwargs: Any) -> Any:
    from airflow.sdk.exceptions import AirflowRuntimeError

    try:
        return call(**kwargs)
    except AirflowRuntimeError as error:
        # The poll loop turns a FleetError into an `error` event; the task's retries apply.
        raise FleetError(f"could not read the other runs' turns: {error}") from error


def read_turn(reader: TurnReader, *, dag_id: str, task_id: str, run_id: str) -> TurnView:
    """Read every run's ``wait_turn`` state, then which of the runs that matter are active.

    In that order: a run seen holding or checking that has ended since is done with the fleet.
    """
    states = dict(reader.task_states(dag_id, task_id))
    relevant = sorted(
        run
        for run, state in states.items()
        if run != run_id and (state in WAITING or state in (HOLDING, CHECKING))
    )
    active = find_active(lambda runs: reader.active_count(dag_id, runs), relevant)
    return TurnView(run_id=run_id, states=states, active=frozenset(active))


def find_active(count: Callable[[Sequence[str]], int], run_ids: Sequence[str]) -> list[str]:
    """The runs of ``run_ids`` that ``count`` says are active, with few calls.

    Every run of the DAG's history whose ``wait_turn`` succeeded is a candidate, and almost all
    of them ended long ago: one count per batch of runs, then halves of a batch that has some.
    """
    found: list[str] = []
    for batch in _batches(run_ids):
        _bisect(count, batch, found)
    return found


def _bisect(count: Callable[[Sequence[str]], int], runs: Sequence[str], found: list[str]) -> None:
    active = count(runs) if runs else 0
    if active == 0:
        return
    if active >= len(runs):
        found.extend(runs)
        return
    middle = len(runs) // 2
    _bisect(count, runs[:middle], found)
    _bisect(count, runs[middle:], found)


def _batches(run_ids: Sequence[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    size = 0
    for run in run_ids:
        if batch and (len(batch) == BATCH_RUNS or size + len(run) > BATCH_CHARS):
            yield batch
            batch, size = [], 0
        batch.append(run)
        size += len(run)
    if batch:
        yield batch
