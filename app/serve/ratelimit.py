"""The optional rate limit per API key (``serve.rate_limit``), with the ``limits`` library's moving
window in this worker's memory: a key over its limit answers 429 with ``Retry-After``. It is counted
after the key is verified, so nobody can spend another key's allowance by naming its id."""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


class KeyRateLimit:
    def __init__(self, spec: str) -> None:
        self.items: list[RateLimitItem] = parse_many(spec)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def retry_after(self, key_id: str) -> int | None:
        """None when the key may go on (the request is counted), else whole seconds until it may."""
        for item in self.items:
            if not self.limiter.hit(item, key_id):
                reset = self.limiter.get_window_stats(item, key_id).reset_time
                return max(1, math.ceil(reset - time.time()))
        return None


def key_rate_limit(spec: str | None) -> KeyRateLimit | None:
    return KeyRateLimit(spec) if spec else None
