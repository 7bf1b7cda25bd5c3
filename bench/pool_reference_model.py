"""A model of the reference pool service (Node.js, in-memory state), run on a request trace.

``GET /:projectId`` reads the idle list, then after its AWS latency writes its claim in memory, with
no lock: requests whose read falls before another's write can pick the same instance (a double
allocation). Its refresh loop sets ``desired = total + (buffer - idle)`` counting neither idle nor
total among the booting instances, so every refresh during a boot asks again (overshoot); no max
cap and no scale-in.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field


@dataclass
class ReferenceOutcome:
    requests: int = 0
    double_allocations: int = 0  # requests handed an instance another request also got
    refused: int = 0  # requests that found no idle instance
    peak_desired: int = 0
    overshoot: int = 0  # most desired above claimed + buffer at any refresh
    refreshes: int = 0
    allocations: dict[str, str] = field(default_factory=dict)  # project → instance


def run_reference(
    arrivals: list[float],
    *,
    buffer: int = 5,
    initial_ready: int = 5,
    latency: float = 0.2,
    refresh_every: float = 10.0,
    boot_seconds: float = 60.0,
    horizon: float | None = None,
) -> ReferenceOutcome:
    """Requests arrive at ``arrivals`` (seconds); each read → claim takes ``latency``."""
    outcome = ReferenceOutcome(requests=len(arrivals))
    ready = [f"i-{n}" for n in range(initial_ready)]
    claimed: dict[str, str] = {}  # instance → first project
    booting: list[float] = []  # ready-at times
    end = horizon if horizon is not None else (max(arrivals, default=0.0) + boot_seconds + refresh_every)
    events: list[tuple[float, int, str, int]] = []  # (time, order, kind, index)
    for index, at in enumerate(arrivals):
        heapq.heappush(events, (at, 1, "read", index))
    tick = 0.0
    while tick <= end:
        heapq.heappush(events, (tick, 0, "refresh", 0))
        tick += refresh_every
    picked: dict[int, str] = {}
    launched = initial_ready
    while events:
        now, _, kind, index = heapq.heappop(events)
        while booting and booting[0] <= now:
            heapq.heappop(booting)
            ready.append(f"i-{launched}")
            launched += 1
        if kind == "read":
            idle = [i for i in ready if i not in claimed]
            if not idle:
                outcome.refused += 1
                continue
            picked[index] = idle[0]
            heapq.heappush(events, (now + latency, 2, "write", index))
        elif kind == "write":
            instance = picked[index]
            project = f"p-{index}"
            if instance in claimed:
                outcome.double_allocations += 1
            else:
                claimed[instance] = project
            outcome.allocations[project] = instance
        else:
            outcome.refreshes += 1
            total = len(ready)  # booting instances are neither idle nor in the total
            idle = total - len(claimed)
            if idle < buffer:
                # desired = total + (buffer - idle): each refresh during a boot launches again.
                for _ in range(buffer - idle):
                    heapq.heappush(booting, now + boot_seconds)
            wanted = total + len(booting)
            outcome.peak_desired = max(outcome.peak_desired, wanted)
            outcome.overshoot = max(outcome.overshoot, wanted - (len(claimed) + buffer))
    return outcome
