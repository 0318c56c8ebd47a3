"""Exponential backoff with jitter for re-queued attempts."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    """Delay before attempt ``n + 1`` after ``n`` failed attempts.

    The nominal delay doubles from ``base`` per failed attempt up to ``cap``;
    "equal jitter" then picks uniformly in ``[nominal / 2, nominal]`` so that
    jobs failing together do not come back together, while the wait never
    collapses to zero.
    """

    base: float = 1.0
    cap: float = 300.0

    def nominal(self, failed_attempts: int) -> float:
        exponent = max(0, failed_attempts - 1)
        # 2 ** 1000 overflows float math: clamp the exponent first.
        return min(self.cap, self.base * 2.0 ** min(exponent, 64))

    def delay(self, failed_attempts: int, rng: random.Random | None = None) -> float:
        nominal = self.nominal(failed_attempts)
        return (rng or random).uniform(nominal / 2, nominal)
