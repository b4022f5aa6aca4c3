"""The rate limiter's reset header never exceeds the window, whatever the clock's float value."""

from __future__ import annotations

from spanmeter.api.ratelimit import RateLimiter


def test_reset_is_at_most_the_window() -> None:
    # 8161.962517661547 + 60 - 8161.962517661547 is 60.000000000000909 in floats: ceil gave 61.
    now = 8161.962517661547
    limiter = RateLimiter(3, 60, clock=lambda: now)
    decision = limiter.check("client")
    assert (decision.allowed, decision.reset_seconds) == (True, 60)
    now += 59.5
    assert limiter.check("client").reset_seconds == 1
    now += 0.5  # the window is over: a new one starts
    assert limiter.check("client").reset_seconds == 60
