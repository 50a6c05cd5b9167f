"""A scripted httpx transport, used ONLY to force failures a real server will not give on
demand (503, 429 with Retry-After, timeouts) for retry tests; behaviour against servers is tested
on the real ones."""

from __future__ import annotations

import httpx


class Sleeps(list):
    """A sleep() that records the delays instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def stub(responses):
    """An httpx.Client answering from a list (responses or exceptions), and the requests seen."""
    seen: list[httpx.Request] = []
    it = iter(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        r = next(it)
        if isinstance(r, Exception):
            raise r
        return r

    return httpx.Client(transport=httpx.MockTransport(handler)), seen
