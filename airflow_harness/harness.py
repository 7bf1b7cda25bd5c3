"""Real Airflow (scheduler, triggerer, DAG processor, API server) in subprocesses, driven by REST.

```python
with AirflowHarness(tmp / "airflow", fleet_config=config, aws_connection=sim.airflow_connection()) as af:
    af.wait_for_dag()                                          # parsed, no import errors, unpaused
    result = af.wait_for_run(af.trigger("2026-11-23"))         # a RunResult (logical date 00:00Z)
    result.state, result.tasks["tasks.report"].state, af.xcom(result.run_id, "tasks.report")
    runs = af.wait_for_backfill(af.backfill("2026-11-20", "2026-11-21"), timeout=400)
```

A run that cannot start ends its wait within :data:`STALL_AFTER` seconds, naming why.
"""

from __future__ import annotations

import contextlib
import time
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from airflow_harness import run_status
from airflow_harness.components import AirflowComponents, HarnessError
from airflow_harness.run_status import TERMINAL_RUN_STATES, RunResult

DAG_ID = "fleet_daily"
# A run still queued, or with no task started, this long after its wait began is stuck: the wait
# ends with the reason instead of running out its whole timeout.
STALL_AFTER = 60.0


class AirflowHarness(AirflowComponents):
    """The components (see :class:`AirflowComponents` for the arguments) and ``fleet_daily``'s runs."""

    def wait_for_dag(self, dag_id: str = DAG_ID, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until the DAG is parsed (raise with the import errors if it cannot be), then unpause it."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_processes()
            errors = self.api("GET", "/api/v2/importErrors", limit=100)["import_errors"]
            if errors:
                shown = "\n".join(f"{e.get('filename')}:\n{e.get('stack_trace')}" for e in errors)
                raise HarnessError(f"the DAG processor reported import errors:\n{shown}")
            with contextlib.suppress(HarnessError):
                dag = self.api("GET", f"/api/v2/dags/{dag_id}")
                break
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"DAG {dag_id} not parsed after {timeout:.0f} s\n" + self.log_tail("dag-processor")
                )
            time.sleep(1)
        if dag.get("is_paused"):
            dag = self.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        return dag

    def trigger(
        self,
        logical_date: str | date | datetime | None,
        conf: Mapping[str, Any] | None = None,
        *,
        dag_id: str = DAG_ID,
        run_id: str | None = None,
    ) -> str:
        """Trigger a run with ``conf`` as its params; its run id.

        :param logical_date: a day (its midnight, UTC), an aware datetime, or ``None`` (like the UI)
        """
        body = {"logical_date": _iso(logical_date), "conf": dict(conf or {}), "dag_run_id": run_id}
        return self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)["dag_run_id"]

    def task_instances(self, run_id: str, dag_id: str = DAG_ID) -> list[dict[str, Any]]:
        return self.api("GET", _run_path(dag_id, run_id, "/taskInstances"), limit=200)["task_instances"]

    def xcom(self, run_id: str, task_id: str, key: str = "return_value", dag_id: str = DAG_ID) -> Any:
        """A task's XCom value (``None`` when it pushed none, e.g. a skipped role's report)."""
        path = _run_path(dag_id, run_id, f"/taskInstances/{task_id}/xcomEntries/{key}")
        try:
            return self.api("GET", path, deserialize=True)["value"]
        except HarnessError as error:
            if "HTTP 404" in str(error):
                return None
            raise

    def wait_for_run(
        self,
        run_id: str,
        timeout: float = 300.0,
        dag_id: str = DAG_ID,
        poll: float = 1.0,
        stall_after: float | None = STALL_AFTER,
        on_poll: Callable[[dict[str, Any], list[dict[str, Any]]], None] | None = None,
    ) -> RunResult:
        """Poll until the run succeeded or failed; record the states its tasks went through.

        :param stall_after: seconds after which a run still queued, or with no task started,
            ends the wait with :class:`HarnessError` naming why (``None``: wait the whole timeout)
        :param on_poll: called with the run and its task instances (the API's JSON) at every poll
        """
        seen: dict[str, list[str]] = {}
        picked: set[str] = set()
        began = time.monotonic()
        log_offset = self._log_size("scheduler")
        while True:
            self.check_processes()
            run = self.api("GET", _run_path(dag_id, run_id))
            tis = self.task_instances(run_id, dag_id)
            if on_poll is not None:
                on_poll(run, tis)
            for ti in tis:
                states = seen.setdefault(ti["task_id"], [])
                if ti.get("state") and (not states or states[-1] != ti["state"]):
                    states.append(ti["state"])
                if (ti.get("trigger") or {}).get("triggerer_id") is not None:
                    picked.add(ti["task_id"])
            if run["state"] in TERMINAL_RUN_STATES:
                return run_status.run_result(run, tis, seen, picked)
            now = time.monotonic()
            stalled = (
                stall_after is not None and now - began > stall_after and not run_status.progressing(run, tis)
            )
            if stalled or now > began + timeout:
                reasons = "; ".join(self._why_stuck(run, dag_id, log_offset)) or (
                    "no reason found in the scheduler's log"
                )
                states = ", ".join(f"{ti['task_id']}={ti.get('state')}" for ti in tis)
                raise HarnessError(
                    f"run {run_id} still {run['state']} after {now - began:.0f} s"
                    f"{' with no task started' if stalled else ''}: "
                    f"{reasons}\ntasks: {states}\n" + self.log_tails(("scheduler", "triggerer"))
                )
            time.sleep(poll)

    def _why_stuck(self, run: dict[str, Any], dag_id: str, log_offset: int) -> list[str]:
        try:
            dag = self.api("GET", f"/api/v2/dags/{dag_id}")
            running = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns", state="running")["dag_runs"]
            others = [r for r in running if r["dag_run_id"] != run["dag_run_id"]]
        except HarnessError:
            dag, others = None, []
        return run_status.why_stuck(
            run,
            now=datetime.now(UTC),
            dag=dag,
            other_runs=others,
            scheduler_lines=self._log_since("scheduler", log_offset),
        )

    def run_result(self, run_id: str, dag_id: str = DAG_ID) -> RunResult:
        """A run's current result, without waiting (and without the polled states)."""
        run = self.api("GET", _run_path(dag_id, run_id))
        return run_status.run_result(run, self.task_instances(run_id, dag_id))

    def clear(
        self,
        run_id: str,
        task_ids: list[str],
        *,
        include_downstream: bool = False,
        include_upstream: bool = False,
        only_failed: bool = False,
        dag_id: str = DAG_ID,
    ) -> list[dict[str, Any]]:
        """Clear task instances of a run as the UI's Clear button does (the run goes back to
        ``queued``, the scheduler runs them again); the cleared instances."""
        body = {
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": task_ids,
            "include_downstream": include_downstream,
            "include_upstream": include_upstream,
            "only_failed": only_failed,
            "reset_dag_runs": True,
        }
        return self.api("POST", f"/api/v2/dags/{dag_id}/clearTaskInstances", body)["task_instances"]

    def backfill(
        self,
        from_date: str | date | datetime,
        to_date: str | date | datetime,
        conf: Mapping[str, Any] | None = None,
        *,
        dag_id: str = DAG_ID,
        max_active_runs: int = 1,
    ) -> int:
        """A backfill of the days from ``from_date`` to ``to_date``; its id.

        ``max_active_runs`` is the backfill's own: Airflow does not apply the DAG's
        ``max_active_runs=1`` to backfill runs (its default is 10), and two dates at once on the
        same machines would make their agents refuse each other. Keep it 1.
        """
        body = {
            "dag_id": dag_id,
            "from_date": _iso(from_date),
            "to_date": _iso(to_date),
            "max_active_runs": max_active_runs,
            "dag_run_conf": dict(conf or {}),
        }
        for attempt in range(5):
            try:
                return self.api("POST", "/api/v2/backfills", body)["id"]
            except HarnessError as error:
                # SQLite: the API answers 503 while the scheduler holds the lock; it is short.
                if "HTTP 503" not in str(error) or attempt == 4:
                    raise
            time.sleep(1)
        raise AssertionError("unreachable")

    def backfill_runs(self, backfill_id: int, dag_id: str = DAG_ID) -> list[dict[str, Any]]:
        """The runs of a backfill, oldest logical date first.

        The REST API's runs do not name their backfill: they are the ``backfill`` runs whose
        logical dates lie in the backfill's range.
        """
        backfill = self.api("GET", f"/api/v2/backfills/{backfill_id}")
        return self.api(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns",
            limit=100,
            run_type="backfill",
            logical_date_gte=backfill["from_date"],
            logical_date_lte=backfill["to_date"],
            order_by="logical_date",
        )["dag_runs"]

    def wait_for_backfill(
        self, backfill_id: int, timeout: float = 600.0, dag_id: str = DAG_ID
    ) -> list[RunResult]:
        """Wait until the backfill completed; the results of its runs, oldest logical date first."""
        deadline = time.monotonic() + timeout
        results: dict[str, RunResult] = {}
        while True:
            self.check_processes()
            runs = self.backfill_runs(backfill_id, dag_id)
            for run in runs:
                run_id = run["dag_run_id"]
                if run_id in results:
                    continue
                if run["state"] == "running":  # follow it closely: its tasks' states are recorded
                    results[run_id] = self.wait_for_run(run_id, max(1.0, deadline - time.monotonic()), dag_id)
                elif run["state"] in TERMINAL_RUN_STATES:
                    results[run_id] = self.run_result(run_id, dag_id)
            backfill = self.api("GET", f"/api/v2/backfills/{backfill_id}")
            if backfill.get("completed_at") and all(run["dag_run_id"] in results for run in runs):
                return [results[run["dag_run_id"]] for run in runs]
            if time.monotonic() > deadline:
                seen = ", ".join(f"{run['dag_run_id']}={run['state']}" for run in runs)
                raise HarnessError(
                    f"backfill {backfill_id} not complete after {timeout:.0f} s; runs: {seen}\n"
                    + self.log_tails(("scheduler", "triggerer"))
                )
            time.sleep(1)


def _run_path(dag_id: str, run_id: str, rest: str = "") -> str:
    return f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}{rest}"


def _iso(moment: str | date | datetime | None) -> str | None:
    """A day (its midnight, UTC) or an aware datetime as ISO-8601 with an offset."""
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment) if "T" in moment else date.fromisoformat(moment)
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    if moment.tzinfo is None:
        raise ValueError(f"a naive datetime is ambiguous, give a timezone: {moment!r}")
    return moment.isoformat()
