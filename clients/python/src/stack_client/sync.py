"""A blocking facade for scripts: the same client, run on a private event loop.

    with StackClient("http://127.0.0.1:8080") as client:
        client.login(email, password)
        board = client.boards.create("Plans")
        items = client.subscribe([f"board:{board['id']}"], transport="sse")  # live now
        for item in items:
            print(item)

Background work (the token refresh timer, a subscription's reconnects) runs while a call is in
progress: a subscription followed with `subscribe` is always being iterated, and a token
refreshes itself on the next call when it is close to expiry.
"""

import asyncio
import inspect
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any

from stack_client.client import AsyncStackClient
from stack_client.live import Item, Subscription


class _Blocking:
    """Each method of `target`, blocking: coroutines are run to completion and async
    iterators (pages) become iterators."""

    def __init__(self, runner: asyncio.Runner, target: object) -> None:
        self._runner = runner
        self._target = target

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._target, name)
        if not callable(method):
            return method  # an attribute (`signed_in`, `base_url`), not a call to block on

        def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            if inspect.iscoroutine(result):
                return self._runner.run(result)
            if isinstance(result, AsyncIterator):
                return _iterate(self._runner, result)
            return result

        return call


def _iterate(runner: asyncio.Runner, items: AsyncIterator[Any]) -> Iterator[Any]:
    async def step() -> Any:
        return await anext(items)

    while True:
        try:
            yield runner.run(step())
        except StopAsyncIteration:
            return


class StackClient(_Blocking):
    """`AsyncStackClient`'s methods, blocking; `boards`, `members`, `tasks` and `comments`
    likewise."""

    def __init__(self, base_url: str) -> None:
        runner = asyncio.Runner()
        client = runner.run(_open(base_url))
        super().__init__(runner, client)
        self.client = client
        self.boards = _Blocking(runner, client.boards)
        self.members = _Blocking(runner, client.members)
        self.tasks = _Blocking(runner, client.tasks)
        self.comments = _Blocking(runner, client.comments)

    def __enter__(self) -> "StackClient":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def subscribe(self, channels: list[str], **options: Any) -> Iterator[Item]:
        """Returns once the subscription is live: then iterate its items, resuming by itself,
        until the loop is left (or it stops with `SubscriptionStopped`)."""
        subscription = self.client.live.subscribe(channels, **options)
        self._runner.run(subscription.__aenter__())
        return self._follow(subscription)

    def _follow(self, subscription: Subscription) -> Iterator[Item]:
        try:
            yield from _iterate(self._runner, aiter(subscription))
        finally:
            # Unless `close()` has ended it (and the loop) already.
            if subscription in self.client.live.subscriptions:
                self._runner.run(subscription.aclose())

    def close(self) -> None:
        self._runner.run(self.client.aclose())
        self._runner.close()


async def _open(base_url: str) -> AsyncStackClient:
    # Made inside the loop that will run it: its HTTP pool belongs to that loop.
    return AsyncStackClient(base_url)
