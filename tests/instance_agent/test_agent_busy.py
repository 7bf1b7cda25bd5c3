"""One VM serves one run at a time: another date's or role's agent holding the lock is exit 7.

Two runs of the DAG on one VM (a backfill of two dates at once) must not both read "success":
the agent that finds the state directory locked by another role or date says ``busy`` and
exits 7; only the same role and date is ``already_running`` (exit 0), whose jobs are in hand.
"""

from __future__ import annotations

import json
import os

import pytest
from agent_testing import ROLE, RUN_DATE

from instance_agent import cli, exit_codes
from instance_agent.agent import RunOptions, holder_text
from instance_agent.lock import Holder, LockBusy, StateDirLock

OTHER_DATE = "2026-11-24"
# exit_codes.EXIT_BUSY (TestHolderText checks it): a literal, so these tests run against any agent.
EXIT_BUSY = 7


def _answer(completed) -> dict:
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 1, f"one line of JSON expected, got {completed.stdout!r} ({completed.stderr!r})"
    return json.loads(lines[0])


@pytest.fixture
def held(agent):
    """Hold the agent's lock from this process with a given holder text, as a live agent would."""
    locks: list[StateDirLock] = []

    def hold(text: str) -> None:
        agent.state_dir.mkdir(parents=True, exist_ok=True)
        lock = StateDirLock(str(agent.state_dir))
        lock.acquire()
        lock.describe_holder(text)
        locks.append(lock)

    yield hold
    for lock in locks:
        lock.release()


class TestAnotherRunHoldsTheVm:
    def test_another_date_while_one_runs_is_exit_7_naming_the_holder_and_runs_nothing(self, agent):
        first_spec = agent.spec([agent.counting_job("trade", sleep=3)])
        first = agent.run(first_spec, date=OTHER_DATE, foreground=False)
        assert first.returncode == 0, first.stderr
        holder_pid = _answer(first)["pid"]

        second = agent.run(agent.spec([agent.counting_job("other")]), date=RUN_DATE, foreground=False)

        # Before: exit 0 and "already_running", so the DAG took the second date's run_agent for
        # a success while its jobs never ran.
        assert second.returncode == EXIT_BUSY, second.stderr
        answer = _answer(second)
        assert answer["status"] == "busy"
        assert (answer["role"], answer["date"]) == (ROLE, RUN_DATE)
        assert (answer["holder_role"], answer["holder_date"], answer["holder_pid"]) == (
            ROLE,
            OTHER_DATE,
            holder_pid,
        )
        assert (
            f"fleet-agent: busy: the agent of role {ROLE} for {OTHER_DATE} (pid {holder_pid}) holds "
            f"{agent.state_dir / 'agent.lock'}; nothing started for role {ROLE} for {RUN_DATE} (exit 7"
        ) in second.stderr
        agent.wait_finished(OTHER_DATE)
        assert agent.count("other") == 0
        assert not agent.state_path(RUN_DATE).exists(), "a busy agent writes no state for its date"
        assert agent.count("trade") == 1

    def test_another_role_on_the_same_vm_is_exit_7(self, agent, held):
        held(f"pid 4242 role pricing date {RUN_DATE}\n")

        completed = agent.run(agent.spec([agent.counting_job("trade")]))

        assert completed.returncode == EXIT_BUSY, completed.stderr
        assert _answer(completed)["holder_role"] == "pricing"
        assert "the agent of role pricing for 2026-11-23 (pid 4242)" in completed.stderr
        assert agent.count("trade") == 0

    @pytest.mark.parametrize(
        "holder",
        [
            # A role or date that merely contains ours is another one: no substring matching.
            f"pid 42 role {ROLE}2 date {RUN_DATE}",
            f"pid 42 role x{ROLE} date {RUN_DATE}",
            f"pid 42 role {ROLE} date {RUN_DATE}0",
            f"pid 42 role {ROLE} date {RUN_DATE} role {ROLE}",
        ],
    )
    def test_a_holder_that_only_looks_like_this_run_is_another_one(self, agent, held, holder):
        held(holder + "\n")

        completed = agent.run(agent.spec([agent.counting_job("trade")]))

        assert completed.returncode == EXIT_BUSY, completed.stderr
        assert agent.count("trade") == 0

    @pytest.mark.parametrize("holder", ["", "an agent from before 2026", "pid 42 role tasks"])
    def test_a_holder_that_cannot_be_read_is_busy_too(self, agent, held, holder):
        # Empty: the instant between another agent's lock and its holder line. Not known to be
        # this run's: exit 7, and run_agent's retry looks again.
        held(holder)

        completed = agent.run(agent.spec([agent.counting_job("trade")]))

        assert completed.returncode == EXIT_BUSY, completed.stderr
        answer = _answer(completed)
        assert answer["status"] == "busy" and "holder_role" not in answer
        assert f"another agent (its lock file says {holder or 'nothing'})" in completed.stderr
        assert agent.count("trade") == 0


class TestSameRunStillRunning:
    def test_the_same_role_and_date_is_already_running_and_exit_0(self, agent, held):
        held(f"pid 42 role {ROLE} date {RUN_DATE}\n")

        completed = agent.run(agent.spec([agent.counting_job("trade")]))

        assert completed.returncode == 0, completed.stderr
        answer = _answer(completed)
        assert answer == {
            "status": "already_running",
            "role": ROLE,
            "date": RUN_DATE,
            "holder": f"pid 42 role {ROLE} date {RUN_DATE}",
        }
        assert agent.count("trade") == 0

    def test_a_holder_line_written_a_moment_late_is_read_again(self, tmp_path, capsys):
        # Two agents of one run started together: the loser may find the lock taken and the
        # holder line not yet written (it read ""). It reads the line again before answering.
        lock_file = tmp_path / "agent.lock"
        lock_file.write_text(f"pid 42 role {ROLE} date {RUN_DATE}\n")

        code = cli._answer_busy(LockBusy(str(lock_file), ""), ROLE, RUN_DATE)

        assert code == 0
        assert json.loads(capsys.readouterr().out)["status"] == "already_running"


class TestHolderText:
    @pytest.mark.parametrize(("role", "date"), [("tasks", "2026-11-23"), ("uni-swap_2.v3", "1999-01-31")])
    def test_what_the_agent_writes_is_what_a_second_agent_reads(self, tmp_path, role, date):
        options = RunOptions(
            role=role, run_date=date, state_dir=str(tmp_path), log_dir=str(tmp_path), shutdown="none"
        )

        # The lock file holds at most what _read() returns: stripped, 200 bytes.
        assert Holder.parse(holder_text(options).strip()) == Holder(pid=os.getpid(), role=role, date=date)

    def test_exit_7_is_documented_for_help_and_scripts(self, agent):
        assert exit_codes.EXIT_BUSY == EXIT_BUSY
        assert "another role or date" in exit_codes.DESCRIPTIONS[EXIT_BUSY]
        assert f"  {EXIT_BUSY}  busy: an agent for another role or date" in agent.cli("--help").stdout
