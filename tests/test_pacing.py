"""The rate limiter against a fake clock: exact, so these tests are not timing-dependent.

Several limiters drawing from one ``LocalSchedule`` stand for several sender processes drawing
from the database's schedule (``store.rates``, tested in test_rates.py): the same rule.
"""

import itertools
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.sending.pacing import HEADROOM, LATE, LocalSchedule, RateLimiter, backoff


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def limiter(rate, clock, schedule=None, oversleep=lambda: 0.0):
    return RateLimiter(rate, schedule or LocalSchedule(), clock=clock,
                       sleep=lambda seconds: clock.sleep(seconds + oversleep()))


def slots(rate, count, clock=None):
    clock = clock or Clock()
    paced = limiter(rate, clock)
    times = []
    for _ in range(count):
        paced.acquire()
        times.append(clock.now)
    return times


def max_in_any_second(times, length=1.0):
    """The most of ``times`` in any window of ``length`` seconds."""
    return max(sum(1 for t in times if start <= t < start + length) for start in times)


@given(st.floats(min_value=0.5, max_value=5000), st.integers(min_value=1, max_value=400))
def test_never_more_than_rate_in_any_one_second_window(rate, count):
    times = slots(rate, count)
    assert max_in_any_second(times) <= max(1, int(rate))


def test_evenly_spaced_just_under_the_rate():
    """Ten a second means one every 1/9.75 s: 2.5% headroom for jitter on the way to SES."""
    times = slots(10, 21)
    assert times[-1] - times[0] == pytest.approx(20 / (10 * HEADROOM))
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(times)}
    assert gaps == {round(1 / (10 * HEADROOM), 9)}


@given(st.floats(min_value=1, max_value=2000), st.integers(min_value=1, max_value=3),
       st.lists(st.tuples(st.integers(min_value=0, max_value=2),
                          st.floats(min_value=0, max_value=0.1),
                          st.floats(min_value=0, max_value=0.005)), min_size=2, max_size=300))
def test_senders_sharing_a_schedule_never_exceed_the_rate_together(rate, senders, turns):
    """Up to three senders take turns (in any order) on one schedule; each may wake up to
    100 ms late, then take up to 5 ms more to get its request out. What arrives stays within
    the rate in every one-second window: a slot missed by more than LATE is given up."""
    clock = Clock()
    schedule = LocalSchedule()
    late = [0.0]

    def once():  # a late wake-up is a moment's hitch, not the machine's pace
        oversleep, late[0] = late[0], 0.0
        return oversleep

    paced = [limiter(rate, clock, schedule, oversleep=once) for _ in range(senders)]
    arrivals = []
    for who, oversleep, on_the_way in turns:
        late[0] = oversleep
        paced[who % senders].acquire()
        arrivals.append(clock.now + on_the_way)
    assert max_in_any_second(arrivals) <= max(1, int(rate))


def test_a_sender_that_wakes_too_late_gives_its_slot_up():
    clock = Clock()
    oversleep = iter([0.5, 0.0, 0.0])
    paced = limiter(10, clock, oversleep=lambda: next(oversleep))
    paced.acquire()  # the first slot is now: no sleep
    start = clock.now
    paced.acquire()  # its slot at +0.102; woke at +0.602: too late, so it takes the next one
    assert clock.now - start == pytest.approx(0.5 + 1 / (10 * HEADROOM))


def test_a_machine_too_busy_to_wake_anyone_on_time_still_sends():
    clock = Clock()
    paced = limiter(10, clock, oversleep=lambda: 0.5)
    for _ in range(20):
        paced.acquire()
    assert clock.now < 1000.0 + 20 * 3 * 0.7


def test_unlimited_never_waits():
    clock = Clock()
    assert slots(None, 1000, clock) == [1000.0] * 1000


def test_slow_down_once_a_second_never_below_the_floor_then_recover():
    clock = Clock()
    paced = limiter(10, clock)
    paced.slow_down()
    paced.slow_down()  # the same burst of throttling: ignored
    assert paced.rate == 8
    for _ in range(50):
        clock.now += 1.0
        paced.slow_down()
    assert paced.rate == 1.0
    clock.now += 5.0
    rates = []
    for _ in range(40):
        paced.acquire()
        rates.append(paced.rate)
        clock.now += 1.0
    assert rates[0] == pytest.approx(1.1) and rates[-1] == 10  # back to the target, gradually
    assert all(b >= a for a, b in itertools.pairwise(rates))


def test_a_slow_down_widens_the_slots_drawn_after_it():
    """Each sender throttled by the provider slows down on its own (they all get throttled
    when together they go too fast); the schedule keeps their slots apart as before."""
    clock = Clock()
    paced = limiter(10, clock)
    paced.slow_down()
    paced.acquire()
    paced.acquire()
    assert clock.now - 1000.0 == pytest.approx(1 / (8 * HEADROOM))


def test_threads_share_one_budget():
    """Real threads and the real clock: 40 acquisitions at 100/s take about 0.4 s."""
    paced = RateLimiter(100)
    stamps = []
    lock = threading.Lock()

    def work():
        for _ in range(5):
            paced.acquire()
            with lock:
                stamps.append(paced.clock())

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stamps.sort()
    assert len(stamps) == 40
    assert stamps[-1] - stamps[0] >= 39 / (100 * HEADROOM) - LATE  # never faster than the rate


def test_backoff_is_jittered_and_capped():
    assert backoff(0, rand=lambda: 1.0) == 0.5
    assert backoff(3, rand=lambda: 1.0) == 4.0
    assert backoff(20, rand=lambda: 1.0) == 30.0
    assert backoff(3, rand=lambda: 0.25) == 1.0
