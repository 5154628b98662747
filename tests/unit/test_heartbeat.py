"""The heartbeat behind the liveness probe: a loop running late, or not at all, is reported."""

from __future__ import annotations

from apitoken_operator.controller.heartbeat import Heartbeat


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_loop_on_time_is_fine_and_a_late_or_silent_one_is_not() -> None:
    clock = Clock()
    heart = Heartbeat(interval=1.0, monotonic=clock)
    clock.now += 1.0
    heart.beat(late=0.01)
    assert heart.problem(max_lag=30) is None
    clock.now += 1.0
    heart.beat(late=45.0)  # a beat that woke 45 s late: something held the loop
    assert heart.problem(max_lag=30) == "the event loop ran 45.0 s late"
    clock.now += 1.0
    heart.beat(late=0.0)
    assert heart.problem(max_lag=30) is None
    clock.now += 40.0  # no beat at all since
    assert heart.problem(max_lag=30) == "the event loop has not run its heartbeat for 39.0 s"


async def test_it_beats_on_a_running_loop() -> None:
    import asyncio

    heart = Heartbeat(interval=0.01)
    task = asyncio.create_task(heart.run())
    await asyncio.sleep(0.05)
    task.cancel()
    assert heart.problem(max_lag=30) is None and heart.lag < 30
