"""Tests for operators.fleet_turn: whose turn it is on the fleet (the decisions and the reading)."""

from __future__ import annotations

import random

import pytest
from operators.fleet_turn import (
    BATCH_CHARS,
    BATCH_RUNS,
    Blocker,
    Turn,
    TurnView,
    decide_gate,
    decide_go,
    decide_rejoin,
    find_active,
    read_turn,
)

ME = "backfill__2026-11-21T00:00:00+00:00"
EARLIER = "backfill__2026-11-20T00:00:00+00:00"
LATER = "backfill__2026-11-22T00:00:00+00:00"
MANUAL = "manual__2026-11-21T09:30:00+00:00_Xy12ab"  # sorts after every backfill run

HOLDS = "holds the fleet"
WAITS = "waits for its turn too"
CHECKS = "checks its turn right now"


def _view(**others: tuple[str | None, bool]) -> TurnView:
    """This run checking, and ``{name: (wait_turn state, run still active)}`` for the others."""
    runs = {"earlier": EARLIER, "later": LATER, "manual": MANUAL}
    states = {ME: "running", **{runs[name]: state for name, (state, _) in others.items()}}
    active = frozenset(runs[name] for name, (_, alive) in others.items() if alive)
    return TurnView(run_id=ME, states=states, active=active)


def _reasons(turn: Turn) -> list[tuple[str, str]]:
    found = []
    for blocker in turn.blockers:
        why = next(w for w in (HOLDS, WAITS, CHECKS) if w in blocker.why)
        found.append((blocker.run_id, why))
    return found


# (others, blockers of the gate (triggerer), of the go (worker), of a cleared run's step (rejoin))
TABLE = [
    pytest.param({}, [], [], [], id="alone"),
    pytest.param(
        {"earlier": ("success", True)},
        [(EARLIER, HOLDS)],
        [(EARLIER, HOLDS)],
        [(EARLIER, HOLDS)],
        id="earlier-holds",
    ),
    # A later date that got the fleet first keeps it until its run ends: no pre-emption.
    pytest.param(
        {"later": ("success", True)}, [(LATER, HOLDS)], [(LATER, HOLDS)], [(LATER, HOLDS)], id="later-holds"
    ),
    pytest.param({"earlier": ("success", False)}, [], [], [], id="holder-whose-run-ended"),
    pytest.param(
        {"earlier": ("deferred", True)}, [(EARLIER, WAITS)], [(EARLIER, WAITS)], [], id="earlier-waits"
    ),
    pytest.param(
        {"earlier": ("up_for_retry", True)}, [(EARLIER, WAITS)], [(EARLIER, WAITS)], [], id="earlier-retry"
    ),
    pytest.param(
        {"earlier": ("queued", True)}, [(EARLIER, WAITS)], [(EARLIER, WAITS)], [], id="earlier-queued"
    ),
    pytest.param(
        {"earlier": ("running", True)},
        [(EARLIER, WAITS)],
        [(EARLIER, WAITS)],
        [(EARLIER, CHECKS)],
        id="earlier-checks",
    ),
    pytest.param({"later": ("deferred", True)}, [], [], [], id="later-waits-behind-me"),
    # The one rule the gate does not have: a later run checking right now may be about to go.
    pytest.param({"later": ("running", True)}, [], [(LATER, CHECKS)], [(LATER, CHECKS)], id="later-checks"),
    pytest.param(
        {"manual": ("running", True)}, [], [(MANUAL, CHECKS)], [(MANUAL, CHECKS)], id="manual-checks"
    ),
    # A run marked failed while its wait_turn was deferred: a stale state, not a waiter.
    pytest.param({"earlier": ("deferred", False)}, [], [], [], id="earlier-waits-but-run-ended"),
    pytest.param({"earlier": ("running", False)}, [], [], [], id="checker-whose-run-ended"),
    # Not started yet (its run may be queued behind max_active_runs): it will see this run.
    pytest.param({"earlier": (None, True)}, [], [], [], id="earlier-not-started"),
    pytest.param({"earlier": ("failed", True)}, [], [], [], id="earlier-failed"),
    pytest.param({"earlier": ("upstream_failed", True)}, [], [], [], id="earlier-upstream-failed"),
    pytest.param(
        {"earlier": ("deferred", True), "later": ("success", True), "manual": ("running", True)},
        [(LATER, HOLDS), (EARLIER, WAITS)],
        [(LATER, HOLDS), (EARLIER, WAITS), (MANUAL, CHECKS)],
        [(LATER, HOLDS), (MANUAL, CHECKS)],
        id="all-at-once",
    ),
]


class TestDecisions:
    @pytest.mark.parametrize(("others", "gate", "go", "rejoin"), TABLE)
    def test_the_table(self, others, gate, go, rejoin):
        view = _view(**others)

        assert _reasons(decide_gate(view)) == gate
        assert _reasons(decide_go(view)) == go
        assert decide_go(view).go is (not go)
        assert _reasons(decide_rejoin(view)) == rejoin

    def test_the_description_names_each_run_and_why(self):
        turn = decide_go(_view(earlier=("deferred", True), later=("success", True)))

        assert turn.describe() == (
            f"{LATER} (holds the fleet: its wait_turn succeeded and the run is still going); "
            f"{EARLIER} (waits for its turn too (deferred) and goes first: its run id sorts first)"
        )
        assert decide_go(_view()).describe() == "nobody ahead"


# -- the protocol, every interleaving -------------------------------------------------------------


def _explore(rule, runs: list[str], tries: int) -> list[tuple]:
    """Every interleaving of ``runs`` taking their turn; the states where two hold the fleet at once.

    Each run, one atomic step at a time: commit ``running``; read every wait_turn state; read
    which runs are active (a second call, as read_turn makes it); then go (``success``, the
    fleet is its own until its run ends) or defer and start over (at most ``tries`` times). A
    holder may end its run at any later step.
    """
    start = tuple(("idle", tries, None, None) for _ in runs)  # (phase, tries left, states read, active read)
    ended0 = (False,) * len(runs)
    seen, stack, bad = set(), [(start, ended0)], []
    while stack:
        procs, ended = stack.pop()
        if (procs, ended) in seen:
            continue
        seen.add((procs, ended))
        holding = [i for i, p in enumerate(procs) if p[0] == "success" and not ended[i]]
        if len(holding) > 1:
            bad.append((procs, ended))
            continue
        states = {
            runs[i]: {"idle": None, "deferred": "deferred"}.get(p[0], p[0]) for i, p in enumerate(procs)
        }
        states = {run: ("running" if s in ("read", "counted") else s) for run, s in states.items()}
        for i, (phase, left, read, counted) in enumerate(procs):
            nxt = None
            if phase in ("idle", "deferred") and left > 0:
                nxt = ("running", left - 1, None, None)
            elif phase == "running":
                nxt = ("read", left, tuple(sorted(states.items(), key=str)), None)
            elif phase == "read":
                active = tuple(r for j, r in enumerate(runs) if not ended[j] and j != i)
                nxt = ("counted", left, read, active)
            elif phase == "counted":
                view = TurnView(run_id=runs[i], states=dict(read), active=frozenset(counted))
                nxt = ("success" if rule(view).go else "deferred", left, None, None)
            if nxt is not None:
                stack.append(((*procs[:i], nxt, *procs[i + 1 :]), ended))
            if phase == "success" and not ended[i]:
                stack.append((procs, (*ended[:i], True, *ended[i + 1 :])))
    return bad


class TestTheProtocolIsExclusive:
    @pytest.mark.parametrize("runs", [[EARLIER, LATER], [EARLIER, ME, LATER]], ids=["two-runs", "three-runs"])
    def test_no_interleaving_gives_the_fleet_to_two_runs(self, runs):
        assert _explore(decide_go, runs, tries=2) == []

    def test_the_gate_alone_would_let_two_runs_in(self):
        # Why the worker also waits for a later run that is checking: without that rule, the
        # later run reads before the earlier one exists, the earlier reads the later one still
        # checking, and both go. (A "nobody ahead twice in a row" rule has the same hole
        # whenever the later run's success is written after the earlier run's second look.)
        assert _explore(decide_gate, [EARLIER, LATER], tries=1) != []


def _explore_a_clear(rejoin, others: list[str], tries: int) -> list[tuple]:
    """Run ``CLEARED`` held the fleet, ended, and is cleared; ``others`` take their turn meanwhile.

    The cleared run's ``wait_turn`` keeps its ``success``; one of its steps, one atomic step at
    a time: read every wait_turn state, read which runs are active, then act on the fleet when
    ``rejoin`` lets it (else look again, at most ``tries`` times). The others follow
    :func:`_explore`'s protocol. Returns the states where the cleared run acts while another
    run holds the fleet, or two others hold it.
    """
    runs = [CLEARED, *others]
    # The cleared run: held → over (ended) → reopened (cleared) → read → counted → acting.
    start = (("held", tries, None, None), *(("idle", tries, None, None) for _ in others))
    seen, stack, bad = set(), [(start, (False,) * len(runs))], []
    while stack:
        procs, ended = stack.pop()
        if (procs, ended) in seen:
            continue
        seen.add((procs, ended))
        holding = [i for i, p in enumerate(procs) if i and p[0] == "success" and not ended[i]]
        if len(holding) > 1 or (holding and procs[0][0] == "acting"):
            bad.append((procs, ended))
            continue
        states = {CLEARED: "success"}
        for i, p in enumerate(procs[1:], start=1):
            state = {"idle": None, "deferred": "deferred"}.get(p[0], p[0])
            states[runs[i]] = "running" if state in ("read", "counted") else state
        active = {runs[i] for i, p in enumerate(procs) if (p[0] != "over" if i == 0 else not ended[i])}
        for i, (phase, left, read, counted) in enumerate(procs):
            nxt = None
            if i == 0:
                if phase == "held":
                    nxt = ("over", left, None, None)
                elif phase == "over":
                    nxt = ("reopened", left, None, None)
                elif phase == "reopened" and left > 0:
                    nxt = ("read", left - 1, tuple(sorted(states.items(), key=str)), None)
                elif phase == "read":
                    nxt = ("counted", left, read, tuple(sorted(active - {CLEARED})))
                elif phase == "counted":
                    view = TurnView(run_id=CLEARED, states=dict(read), active=frozenset(counted))
                    nxt = ("acting" if rejoin(view).go else "reopened", left, None, None)
            elif phase in ("idle", "deferred") and left > 0:
                nxt = ("running", left - 1, None, None)
            elif phase == "running":
                nxt = ("read", left, tuple(sorted(states.items(), key=str)), None)
            elif phase == "read":
                nxt = ("counted", left, read, tuple(sorted(active - {runs[i]})))
            elif phase == "counted":
                view = TurnView(run_id=runs[i], states=dict(read), active=frozenset(counted))
                nxt = ("success" if decide_go(view).go else "deferred", left, None, None)
            if nxt is not None:
                stack.append(((*procs[:i], nxt, *procs[i + 1 :]), ended))
            if i and phase == "success" and not ended[i]:
                stack.append((procs, (*ended[:i], True, *ended[i + 1 :])))
    return bad


CLEARED = "scheduled__2026-11-19T00:00:00+00:00"


class TestAClearedRunRejoins:
    @pytest.mark.parametrize("others", [[EARLIER], [EARLIER, LATER]], ids=["one-other", "two-others"])
    def test_no_interleaving_lets_a_cleared_runs_step_act_beside_another_holder(self, others):
        assert _explore_a_clear(decide_rejoin, others, tries=2) == []

    def test_acting_on_the_stale_turn_would_share_the_fleet(self):
        # Before the guard: a cleared run's step acted at once (its wait_turn still read success).
        assert _explore_a_clear(lambda view: Turn(()), [EARLIER], tries=1) != []

    def test_holders_alone_are_not_enough(self):
        # A run checking right now may have read this run while it was over, and go.
        def holders_only(view: TurnView) -> Turn:
            return Turn(tuple(Blocker(run, HOLDS) for run in view.others(["success"])))

        assert _explore_a_clear(holders_only, [EARLIER], tries=1) != []


# -- reading ---------------------------------------------------------------------------------------


class FakeReader:
    def __init__(self, states: dict[str, str | None], active: set[str]) -> None:
        self.states, self.active = states, active
        self.counts: list[list[str]] = []

    def task_states(self, dag_id, task_id):
        assert (dag_id, task_id) == ("fleet_daily", "wait_turn")
        return self.states

    def active_count(self, dag_id, run_ids):
        assert run_ids, "an empty run_ids filter would count every run of the DAG"
        self.counts.append(list(run_ids))
        return len(set(run_ids) & self.active)


class TestReadTurn:
    def test_only_runs_that_hold_check_or_wait_are_asked_about_and_a_years_history_is_cheap(self):
        history = {f"scheduled__2025-{day:03d}": "success" for day in range(365)}
        states = {**history, ME: "running", EARLIER: "deferred", LATER: None, MANUAL: "failed"}
        reader = FakeReader(states, active={ME, EARLIER, LATER, MANUAL, "scheduled__2025-364"})

        view = read_turn(reader, dag_id="fleet_daily", task_id="wait_turn", run_id=ME)

        assert view.active == {EARLIER, "scheduled__2025-364"}
        asked = {run for batch in reader.counts for run in batch}
        assert asked == set(history) | {EARLIER}
        assert len(reader.counts) < 30  # one per batch of 50, and a few halvings
        assert decide_go(view).describe().startswith("scheduled__2025-364 (holds the fleet")

    @pytest.mark.parametrize("seed", range(20))
    def test_find_active_finds_exactly_the_active_runs(self, seed):
        rng = random.Random(seed)
        runs = [f"backfill__2026-{n:05d}" + "x" * rng.randrange(0, 200) for n in range(rng.randrange(0, 300))]
        active = {run for run in runs if rng.random() < 0.05}
        reader = FakeReader({}, active)

        assert sorted(find_active(lambda ids: reader.active_count("fleet_daily", ids), runs)) == sorted(
            active
        )
        for batch in reader.counts:
            # The run ids go into the URL's query string: keep each call's list short.
            assert len(batch) <= BATCH_RUNS
            assert sum(map(len, batch)) <= max(BATCH_CHARS, max(map(len, batch)))
