"""The rate limiter against a fake clock: exact, so these tests are not timing-dependent."""

import itertools
import threading

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from newsletter.sending.pacing import WINDOW, RateLimiter, backoff


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def slots(rate, count, clock=None):
    clock = clock or Clock()
    limiter = RateLimiter(rate, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(count):
        limiter.acquire()
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
    """Ten a second means one every 0.11 s: 10% headroom for jitter on the way to SES."""
    times = slots(10, 21)
    assert times[-1] - times[0] == pytest.approx(2.0 * WINDOW)
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(times)}
    assert gaps == {round(WINDOW / 10, 9)}


@given(st.floats(min_value=1, max_value=2000), st.integers(min_value=2, max_value=300),
       st.lists(st.floats(min_value=0, max_value=0.1), min_size=300, max_size=300))
def test_late_departures_up_to_100_ms_still_never_exceed_the_rate(rate, count, lateness):
    """What the provider sees: each send leaves up to 100 ms after its slot."""
    departures = sorted(t + late for t, late in zip(slots(rate, count), lateness, strict=False))
    assert max_in_any_second(departures) <= max(1, int(rate))


def test_unlimited_never_waits():
    clock = Clock()
    assert slots(None, 1000, clock) == [1000.0] * 1000


def test_slow_down_once_a_second_never_below_the_floor_then_recover():
    clock = Clock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    limiter.slow_down()
    limiter.slow_down()  # the same burst of throttling: ignored
    assert limiter.rate == 8
    for _ in range(50):
        clock.now += 1.0
        limiter.slow_down()
    assert limiter.rate == 1.0
    clock.now += 5.0
    rates = []
    for _ in range(40):
        limiter.acquire()
        rates.append(limiter.rate)
        clock.now += 1.0
    assert rates[0] == pytest.approx(1.1) and rates[-1] == 10  # back to the target, gradually
    assert all(b >= a for a, b in itertools.pairwise(rates))


def test_threads_share_one_budget():
    """Real threads and the real clock: 40 acquisitions at 100/s take about 0.43 s."""
    limiter = RateLimiter(100)
    stamps = []
    lock = threading.Lock()

    def work():
        for _ in range(5):
            limiter.acquire()
            with lock:
                stamps.append(limiter.clock())

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stamps.sort()
    assert len(stamps) == 40
    assert stamps[-1] - stamps[0] >= 39 * WINDOW / 100 - 0.005  # never faster than the rate


def test_backoff_is_jittered_and_capped():
    assert backoff(0, rand=lambda: 1.0) == 0.5
    assert backoff(3, rand=lambda: 1.0) == 4.0
    assert backoff(20, rand=lambda: 1.0) == 30.0
    assert backoff(3, rand=lambda: 0.25) == 1.0


@given(st.floats(min_value=1, max_value=500),
       st.lists(st.floats(min_value=0, max_value=0.5), min_size=50, max_size=200))
@example(1.0, [0.0] * 21 + [0.5] + [0.0] * 28)  # once let two leave 1 ulp under a second apart
def test_callers_that_wake_late_still_leave_within_the_rate(rate, lateness):
    """Many threads reserve slots at once; some wake late and would bunch up with the punctual
    ones. Played in wake-up order on a fake clock, the departures stay within the rate."""
    clock = Clock()
    limiter = RateLimiter(rate, clock=clock, sleep=clock.sleep)
    wakes = sorted(limiter._reserve() + late for late in lateness)
    departures = []
    for wake in wakes:
        clock.now = max(clock.now, wake)
        while (wait := limiter._depart()) > 0:
            clock.now += wait
        departures.append(clock.now)
    # Within the rate over WINDOW seconds, so up to 100 ms of jitter on the way to the provider
    # cannot put one more into any of its seconds.
    assert max_in_any_second(departures, WINDOW) <= max(1, int(rate))


def test_late_wake_ups_do_bunch_without_the_departure_check():
    """The case the departure check exists for: planned slots alone would let 14 go in 1 s."""
    limiter = RateLimiter(10, clock=Clock(), sleep=lambda seconds: None)
    slots = [limiter._reserve() for _ in range(30)]
    wakes = sorted(slot + (0.5 if n < 5 else 0.0) for n, slot in enumerate(slots))
    assert max_in_any_second(wakes) > 10
