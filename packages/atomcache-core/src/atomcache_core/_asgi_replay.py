"""Refresh ahead over HTTP: an entry kept warm by replaying the request that read it.

A replay is the request again, later, as a `GET` without credentials and without a
client: marked in its scope's state (`REFRESH`), it renews the entry and notes how long
the entry stays fresh after (`REFRESHED`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from atomcache_core._asgi_run import ASGIApp, Message, RequestPlan, Scope
    from atomcache_core._flight.options import Outcome
    from atomcache_core._refresh import RefreshAhead

__all__ = ["REFRESH", "REFRESHED", "keep_warm", "replayer", "replaying"]

#: The scope's state key marking a refresh-ahead replay: the margin, in seconds.
REFRESH = "atomcache_refresh"
#: Where `respond` notes, for a replay, the seconds of freshness its entry has left.
REFRESHED = "atomcache_refreshed"


def replayer(
    app: ASGIApp, scope: Scope, without: Iterable[str] = ()
) -> Callable[[float], Awaitable[float | None]]:
    """Renews the entry of the request `scope` by sending it to `app` again, later.

    The replay is a `GET` with the request's fields but those named in `without`
    (lower-case: the route's credential fields, so that no replay ever acts as the
    caller who read the entry) and no body, marked with the margin under which its
    entry counts as expired (`REFRESH` in the scope's state: it takes the entry's lock
    and recomputes it, or waits for whoever does); its answer goes nowhere: `respond`
    notes in that state the seconds of freshness the entry has left after
    (`REFRESHED`), the value returned (`None`: nothing fresh).
    """
    dropped = frozenset(name.encode("latin-1") for name in without)
    headers = [
        (name, value) for name, value in scope.get("headers", ()) if name.lower() not in dropped
    ]
    snapshot = {**scope, "method": "GET", "headers": headers}

    async def replay(margin: float) -> float | None:
        state: dict[str, Any] = {REFRESH: margin}

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            pass

        await app({**snapshot, "state": state}, receive, send)
        left = state.get(REFRESHED)
        return float(left) if left is not None else None

    return replay


def replaying(scope: Scope) -> bool:
    """Whether the request is a refresh-ahead replay (not a read of the entry)."""
    state = scope.get("state")
    return state is not None and REFRESH in state


def keep_warm(
    refresher: RefreshAhead, scope: Scope, plan: RequestPlan, outcome: Outcome, fresh_for: float
) -> None:
    """Tell a replay what it renewed; else keep an entry read again warm (`refresher`)."""
    entry = outcome.entry
    if entry is None:
        return
    if replaying(scope):
        scope["state"][REFRESHED] = fresh_for
    elif plan.replay is not None and outcome.source != "computed":
        # Read again after the request that computed it: kept warm from now on (a
        # URL asked once, junk included, is left to expire).
        refresher.touch(
            plan.key,
            plan.replay,
            fresh_for=fresh_for,
            ttl=plan.flight.ttl,
            idle=plan.route.options.refresh_idle,
            compute_time=entry.compute_time,
        )
