"""Whose turn it is on the fleet: one run of the DAG at a time on its VMs, whatever started it.

``max_active_runs=1`` does not bind a backfill, so two runs can reach the same VMs at once. A
run's first task, ``wait_turn``, takes a turn for the whole run; its own task-instance state is
the protocol's one register, which every run reads with one ``get_task_states`` call. Another
run's ``wait_turn`` ``success`` holds the fleet until that run ends, ``running`` is checking
right now, a state in :data:`WAITING` waits (the run id that sorts first goes first).

Why two runs cannot both go (:func:`decide_go`, in the worker, while ``running``): the one that
read first was already ``running`` and stays so until its ``success``, so the other's later read
sees it checking or holding; no timing assumption. :func:`decide_gate` (the triggerer) only says
when to look again; :func:`decide_rejoin` is a cleared run's check before a step acts on a VM
(:mod:`operators.fleet_turn_sensors`). docs/architecture.md ("One run at a time") has the whole
argument. :func:`read_turn` makes the calls; the ``decide_*`` functions are pure.
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
    """One reading: every run's ``wait_turn`` state (``states``), and the other runs among those
    holding, checking or waiting that are still queued or running (``active``)."""

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
    return Turn(tuple(_holders(view) + _earlier(view)))


def decide_go(view: TurnView) -> Turn:
    """The worker's question: may this run take the fleet now? (The safety rule, module doc.)"""
    later = [run for run in view.others([CHECKING]) if run > view.run_id]
    return Turn(tuple(_holders(view) + _earlier(view) + _checking(later)))


def decide_rejoin(view: TurnView) -> Turn:
    """A cleared run's question before one of its steps acts: is the fleet (again) this run's?

    A waiting run cannot go while this one is active (it sees this run's ``wait_turn``
    success): only the holders and the runs checking right now matter.
    """
    return Turn(tuple(_holders(view) + _checking(view.others([CHECKING]))))


def _holders(view: TurnView) -> list[Blocker]:
    return [
        Blocker(run, "holds the fleet: its wait_turn succeeded and the run is still going")
        for run in view.others([HOLDING])
    ]


def _checking(runs: Iterable[str]) -> list[Blocker]:
    return [Blocker(run, "checks its turn right now and may go; looking again") for run in runs]


def _earlier(view: TurnView) -> list[Blocker]:
    return [
        Blocker(run, f"waits for its turn too ({view.states[run]}) and goes first: its run id sorts first")
        for run in view.others(WAITING | {CHECKING})
        if run < view.run_id
    ]


# -- reading ---------------------------------------------------------------------------------------


class TurnReader(Protocol):
    """What :func:`read_turn` needs from Airflow (:class:`SdkTurnReader`, or a test's fake)."""

    def task_states(self, dag_id: str, task_id: str) -> Mapping[str, str | None]: ...

    def active_count(self, dag_id: str, run_ids: Sequence[str]) -> int: ...


class SdkTurnReader:
    """The Task SDK's ``RuntimeTaskInstance`` calls: a worker and the triggerer may not touch the
    metadata database, but both may ask the API server (``GetTaskStates``, ``GetDRCount``)."""

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
    """The runs of ``run_ids`` that ``count`` says are active: almost all ended long ago, so one
    count per batch of runs, then halves of a batch that has some."""
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
