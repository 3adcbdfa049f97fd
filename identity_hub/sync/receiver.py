"""Verify and store one replicated commit, through the same `CommitService` as local writes.

A replicated commit passes the checks a client's commit passes, judged only by the commit and
the commits this hub holds, so that every hub decides alike:

* shape and size (`parse_commit`, at most `max_commit_bytes`), `sub` = the owner being synced
  (never another owner's data), the interface rules, the payload agreeing with the commit's
  context and type;
* `committed_at` not beyond the clock skew in the future (an old one is expected);
* the signature, by the key the `kid` names in the signer's DID document;
* a signer other than the owner needs a grant in force at `committed_at`
  (`permissions.exclusion.covering_grants`, by type IRI), as for a client's write (unlike a
  client's write, not also at this hub's now): without one the commit is stored *excluded*
  (held, so every hub holds the same commits, but not folded), and counts once a grant covering
  it arrives (permissions/exclusion.py; docs/replication.md).

Local-only write rules that depend on arrival order (update of an object not seen yet, the
Profile singleton, the unrevocable grant window judged against this hub's clock) are not applied:
the peer applied them when it accepted the commit, and the fold orders what arrives.

An automerge change whose dependencies (or whose object's counting create) this hub does not
hold yet is parked (`sync_parked`) and retried when more commits arrive; a commit whose
signer's DID cannot be fetched now is parked and retried every round. Anything else refused is
logged and dropped (never stored).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from identity_hub.commits.service import CommitService
from identity_hub.commits.verify import verify_commit
from identity_hub.did import DidResolver
from identity_hub.errors import (
    BadRequest,
    HubError,
    MissingDependencies,
    PermissionsRequired,
    TemporarilyUnavailable,
)
from identity_hub.permissions import exclusion
from identity_hub.permissions.grant import GRANT_CONTEXT, GRANT_TYPE, parse_grant
from identity_hub.permissions.scope import GRANTABLE_INTERFACES
from identity_hub.protocol.commit import DEFAULT_MAX_COMMIT_BYTES, Commit, parse_commit
from identity_hub.storage import store
from identity_hub.storage.writes import now_us
from identity_hub.sync import peers

logger = logging.getLogger(__name__)


class Outcome(enum.StrEnum):
    STORED = "stored"
    HELD = "held"  # already held: a no-op
    PARKED = "parked"  # cannot be judged yet (dependencies, signer DID), kept to retry
    REFUSED = "refused"


@dataclasses.dataclass
class Tally:
    stored: int = 0
    held: int = 0
    parked: int = 0
    refused: int = 0
    grants_stored: int = 0

    def add(self, outcome: Outcome) -> None:
        setattr(self, outcome.value, getattr(self, outcome.value) + 1)


class _Park(Exception):
    pass


class Receiver:
    """Applies replicated commits of one hub's owners."""

    def __init__(self, commits: CommitService, resolver: DidResolver, *,
                 skew_seconds: int = 300, max_json_depth: int = 64,
                 max_commit_bytes: int = DEFAULT_MAX_COMMIT_BYTES) -> None:
        self.commits = commits
        self.db = commits.db
        self.resolver = resolver
        self.skew_us = skew_seconds * 1_000_000
        self.max_json_depth = max_json_depth
        self.max_commit_bytes = max_commit_bytes

    async def apply(self, owner: str, wire: Any) -> Outcome:
        """Verify and store one commit of `owner` (see the module docstring). Never raises a
        HubError: refusals are logged and returned as an Outcome."""
        try:
            commit = parse_commit(wire, max_bytes=self.max_commit_bytes)
            if await self._held(owner, commit.rev):  # the usual case of a re-pull: no checks
                return Outcome.HELD
            payload = self._check_shape(owner, commit)
            if payload is not None:
                await self._check_types(commit, payload)
            await verify_commit(commit, self.resolver)
        except TemporarilyUnavailable as exc:
            # The signer's DID could not be fetched now: keep the commit and try it again later,
            # rather than let the cursor move past a commit that may well be valid.
            await peers.park(self.db, owner, commit.rev, wire, exc.message)
            logger.info("sync: parked commit %s of %s: %s", commit.rev[:12], owner[:60],
                        exc.message)
            return Outcome.PARKED
        except HubError as exc:
            logger.warning("sync: refused a commit of %s: %s (%s)", owner[:60], exc.message,
                           exc.target)
            return Outcome.REFUSED
        try:
            result = await self.commits.write(owner, commit, self._authorize(owner, commit),
                                              payload=payload)
        except (_Park, MissingDependencies, TemporarilyUnavailable) as park:
            # An automerge change whose dependencies (or counting create) are not here yet (a
            # commit parked itself, or a peer that sends commits out of order), or the automerge
            # engine down for a moment: kept to retry. (A missing grant is no reason: such a
            # commit is stored excluded.)
            reason = str(park) if isinstance(park, _Park) else park.message
            await peers.park(self.db, owner, commit.rev, wire, reason)
            logger.info("sync: parked commit %s of %s: %s", commit.rev[:12], owner[:60], reason)
            return Outcome.PARKED
        except HubError as exc:
            logger.warning("sync: refused commit %s of %s: %s", commit.rev[:12], owner[:60],
                           exc.message)
            return Outcome.REFUSED
        if result.excluded:
            logger.info("sync: stored commit %s of %s excluded: no grant covers it at its "
                        "committed_at", commit.rev[:12], owner[:60])
        return Outcome.STORED if result.stored else Outcome.HELD

    async def _held(self, owner: str, rev: str) -> bool:
        async with self.db.read() as conn:
            oid = await store.owner_id(conn, owner)
            return oid is not None and bool(await store.query_commits(
                conn, oid, object_ids=None, revisions=[rev], after=0, limit=1))

    def _check_shape(self, owner: str, commit: Commit) -> dict[str, Any] | None:
        """The rules that need no database; the payload decoded (None for deletes, automerge).

        Raises:
            BadRequest
        """
        if commit.sub != owner:
            raise BadRequest("commit for another owner", target="commit.protected.sub")
        if commit.interface == "Actions":
            raise BadRequest("Actions are not stored", target="commit.protected.interface")
        if commit.interface == "Permissions" and (
                commit.context != GRANT_CONTEXT or commit.type != GRANT_TYPE
                or commit.commit_strategy != "basic"):
            raise BadRequest("not a PermissionGrant commit", target="commit.protected.type")
        if commit.committed_at_us > now_us() + self.skew_us:
            raise BadRequest("committed_at is too far in the future",
                             target="commit.protected.committed_at")
        if commit.operation == "delete" or commit.commit_strategy == "automerge":
            return None
        payload = commit.payload_json(self.max_json_depth)
        if not isinstance(payload, dict):
            raise BadRequest("payload is not a JSON object", target="commit.payload")
        if commit.interface == "Permissions" and parse_grant(payload).owner != owner:
            raise BadRequest("a PermissionGrant's owner must be the hub owner",
                             target="commit.payload.owner")
        return payload

    async def _check_types(self, commit: Commit, payload: dict[str, Any]) -> None:
        """The payload's @context/@type must agree with the headers by IRI, as for a client's
        commit (the same JsonLd the commit service uses).

        Raises:
            BadRequest: they disagree.
            TemporarilyUnavailable: a context this hub cannot expand (not shipped, not in the
                owner's contexts yet): the commit is parked, not refused, since a peer accepted
                it and the context may be added here later.
        """
        try:
            matches = await self.commits.jsonld.payload_matches_async(
                payload, commit.context, commit.type)
        except BadRequest as exc:
            raise TemporarilyUnavailable(f"JSON-LD: {exc.message}", target=exc.target) from None
        if not matches:
            raise BadRequest("payload does not match the commit's context/type",
                             target="commit.payload")

    def _authorize(self, owner: str, commit: Commit) -> Any:
        """The precondition run under the owner's lock: an automerge update after its object's
        (counting) create (it can only be merged, so checked, with the create's payload); a
        non-owner's grant at committed_at, the commit stored excluded without one."""
        merged_later = commit.commit_strategy == "automerge" and commit.operation == "update"
        if commit.signer == owner and not merged_later:
            return None

        async def check(conn: AsyncConnection, oid: int, row: Any) -> bool:
            if merged_later and (row is None or not row.has_create):
                raise _Park("an automerge update waits for its object's create")
            if commit.signer == owner:
                return False
            if commit.interface not in GRANTABLE_INTERFACES:
                raise PermissionsRequired("only the owner writes this interface",
                                          target="commit")
            created_by = row.created_by if row is not None and row.has_create else None
            grants = await exclusion.covering_grants(
                conn, oid, signer=commit.signer, context=commit.context, type_=commit.type,
                operation=commit.operation, object_id=commit.object_id,
                committed_at_us=commit.committed_at_us, created_by=created_by,
                jsonld=self.commits.jsonld)
            return not grants

        return check

    async def retry_parked(self, owner: str) -> Tally:
        """Try the owner's parked commits again (after new commits, e.g. a grant, arrived)."""
        tally = Tally()
        progress = True
        while progress:  # a commit stored now may unpark another (a grant, then its create)
            progress = False
            for rev, wire in await peers.parked(self.db, owner):
                outcome = await self.apply(owner, wire)
                if outcome is Outcome.PARKED:
                    continue
                await peers.unpark(self.db, owner, rev)
                tally.add(outcome)
                progress = progress or outcome is Outcome.STORED
        return tally
