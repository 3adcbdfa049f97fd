"""Pull one peer's commits of one owner, page by page from the persisted cursor.

Each page is checked (`protocol.parse_pull_response`), its commits applied one by one
(`Receiver.apply`: each in its own transaction, a commit already held is a no-op), and only then
is the cursor saved. A crash mid-page leaves the cursor before the page: the page is fetched
again after a restart and its applied commits are no-ops, so nothing is lost or doubled.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from identity_hub.sync import peers, protocol
from identity_hub.sync.peers import Peer
from identity_hub.sync.receiver import Outcome, Receiver, Tally

logger = logging.getLogger(__name__)

Progress = Callable[[Peer, int, int], None]  # (peer, cursor, peer's last_seq)


class PeerLink(Protocol):
    """Sends one request to the peer hub, signed as this hub; returns the peer's response.
    `HubClient.send` over the encrypted transport is the production link."""

    def __call__(self, request: dict[str, Any]) -> Awaitable[dict[str, Any]]: ...


@dataclasses.dataclass
class PullResult:
    peer: Peer
    pages: int = 0
    tally: Tally = dataclasses.field(default_factory=Tally)

    @property
    def pulled(self) -> int:
        t = self.tally
        return t.stored + t.held + t.parked + t.refused


async def pull_peer(receiver: Receiver, link: PeerLink, peer: Peer, *, hub_did: str,
                    limit: int = protocol.DEFAULT_LIMIT, max_page_bytes: int | None = None,
                    max_pages: int | None = None,
                    progress: Progress | None = None,
                    on_applied: Callable[[int], None] | None = None,
                    stop: Callable[[], bool] | None = None) -> PullResult:
    """Pull `peer` until its log of the owner is exhausted (or `max_pages` pages).

    `limit` (sync_page_commits) caps the commits of a page; `max_page_bytes`
    (sync_max_page_bytes) asks the peer for pages that fit it (the link stops reading beyond).
    `on_applied(seq)` is called after each commit of a page is applied (before the cursor is
    saved), for progress displays; `stop()` true ends the pull between pages, or between commits
    of a page (whose cursor is then not saved: the page is fetched again next time). Exceptions from
    the link or a bad page propagate with the cursor at the last fully applied page.

    Raises:
        protocol.SyncProtocolError: the peer answered something that is not a valid page.
        Exception: whatever the link raises (peer unreachable, refusal).
    """
    db = receiver.db
    fresh = await peers.get_peer(db, peer.id)
    cursor = (fresh or peer).cursor
    result = PullResult(fresh or peer)
    while max_pages is None or result.pages < max_pages:
        request = protocol.pull_request(hub_did, peer.peer_did, peer.owner, cursor, limit,
                                        max_page_bytes)
        page = protocol.parse_pull_response(await link(request), after=cursor, limit=limit)
        page_tally = Tally()
        stopped = False
        for seq, wire in page.commits:
            if stop is not None and stop():  # the hub is stopping: the page is fetched again
                stopped = True
                break
            page_tally.add(await receiver.apply(peer.owner, wire))
            if on_applied is not None:
                on_applied(seq)
        if stopped:
            break
        # Parked commits wait for a grant (retried once anything new is stored) or for an
        # unreachable signer DID (retried on every round, hence also on an empty page).
        if (page_tally.stored or not page.commits) and await peers.parked_count(db, peer.owner):
            retried = await receiver.retry_parked(peer.owner)
            page_tally.stored += retried.stored
            page_tally.parked -= retried.stored + retried.held + retried.refused
            page_tally.refused += retried.refused
        if page.commits:
            cursor = page.commits[-1][0]
        await peers.save_page(db, peer.id, cursor, page.last_seq, page_tally.refused)
        result.pages += 1
        for name in ("stored", "held", "parked", "refused"):
            setattr(result.tally, name, getattr(result.tally, name) + getattr(page_tally, name))
        if progress is not None:
            progress(result.peer, cursor, page.last_seq)
        if not page.commits or cursor >= page.last_seq or (stop is not None and stop()):
            break
    if result.tally.refused:
        logger.warning("sync: %d commit(s) of %s from %s refused", result.tally.refused,
                       peer.owner[:60], peer.url)
    result.peer = await peers.get_peer(db, peer.id) or result.peer
    return result


__all__ = ["Outcome", "PeerLink", "PullResult", "pull_peer"]
