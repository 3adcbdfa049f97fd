"""Store a commit and fold it into its object, in one transaction.

The write path: take the owner's lock, append the commit to the log (a commit already held is
dropped: idempotent), run the caller's precondition against the object as it was before (e.g.
update of an unknown object is `not_found`; a refusal rolls everything back), fold the commit
into the object (incrementally when possible), and return every revision of the object. A
precondition may instead ask for the commit to be stored *excluded* (a replicated commit the grants
in force at its committed_at do not cover: kept, not folded; permissions/exclusion.py), and a
grant's change re-judges the commits it affects and refolds their objects in the same
transaction, so the excluded set is always a function of the commits held. The
statements are few and combined where the database allows (storage/store.py): a create of a new
object is one. The transaction commits before the caller answers: an acknowledged write is
durable.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from identity_hub.commits.fold import basic
from identity_hub.commits.fold.basic import CommitView, ObjectState
from identity_hub.commits.fold.crdt import AutomergeEngine, CrdtError
from identity_hub.commits.fold.crdt_chunks import ChunkError, parse_payload
from identity_hub.errors import BadRequest, HubError, MissingDependencies, TemporarilyUnavailable
from identity_hub.jsonld import JsonLd, default_jsonld
from identity_hub.logs import quote
from identity_hub.permissions import exclusion
from identity_hub.permissions import index as grant_index
from identity_hub.protocol.commit import Commit
from identity_hub.protocol.jsonutil import JsonError, loads_strict
from identity_hub.storage import store
from identity_hub.storage.engine import Database

logger = logging.getLogger(__name__)

# Run under the owner's lock with the object as it was before the commit: raises to refuse (nothing
# is stored), returns True to store the commit excluded (kept, not folded), else None/False.
Precondition = Callable[[AsyncConnection, int, Any], Awaitable[bool | None]]


@dataclasses.dataclass(frozen=True)
class WriteResult:
    revisions: list[str]
    stored: bool  # False when the commit was already held
    object_id: str
    excluded: bool = False  # stored excluded (permissions/exclusion.py)


class _AlreadyHeld(Exception):
    def __init__(self, revisions: list[str]) -> None:
        self.revisions = revisions


def view_of(commit: Commit) -> CommitView:
    return CommitView(
        rev=commit.rev, object_id=commit.object_id, operation=commit.operation,
        interface=commit.interface, context=commit.context, type=commit.type,
        commit_strategy=commit.commit_strategy, committed_at=commit.committed_at,
        committed_at_us=commit.committed_at_us, signer=commit.signer, meta=commit.meta,
        payload=commit.payload,
    )


def payload_bytes(view: CommitView) -> bytes:
    return base64.urlsafe_b64decode(view.payload + "=" * (-len(view.payload) % 4))


def payload_data(view: CommitView) -> Any:
    """The JSON state a winning basic/lastWriterWins commit gives its object: numbers as a
    payload's are read when it arrives, and a negative zero (a payload stored before those were
    refused may hold one) as 0 (docs/protocol.md, "Numbers")."""
    if view.operation == "delete":
        return None
    try:
        raw = base64.urlsafe_b64decode(view.payload + "=" * (-len(view.payload) % 4))
        return loads_strict(raw, numbers="stored")
    except (JsonError, ValueError):
        return None


class CommitService:
    """Writes commits and keeps the materialized objects in step with the log."""

    def __init__(self, db: Database, crdt: AutomergeEngine | None = None,
                 jsonld: JsonLd | None = None) -> None:
        self.db = db
        self.crdt = crdt
        # Expands an object's context + type to the type IRI stored with it (the hub's own
        # JsonLd: the runtime sets it, with the owner's contexts and the unknown-context policy).
        self.jsonld = jsonld if jsonld is not None else default_jsonld()
        # Called with the owner after each commit stored (not for one already held): the sync
        # service's push hints (identity_hub/sync/service.py). Must not block or raise.
        self.on_stored: Callable[[str], None] | None = None

    async def type_iri(self, context: str, type_: str) -> str | None:
        """The type IRI an object of this context + type is stored with; None when the hub's
        contexts do not define it (an unknown context under policy `refuse`, say, from a peer
        that knows it): such an object is found by no query by type on this hub, and
        `identity-hub refold` sets it once the context is added."""
        try:
            return await self.jsonld.type_iri_async(context, type_)
        except BadRequest as exc:
            logger.info("no type IRI for %s of %s: %s", quote(type_), quote(context),
                        quote(exc.message, 200))
            return None

    async def write(self, owner: str, commit: Commit, check: Precondition | None = None, *,
                    payload: dict[str, Any] | None = None, type_iri: str | None = None
                    ) -> WriteResult:
        """Store `commit` for `owner` and fold it (`payload`: the commit's payload, when the
        caller has decoded it already; `type_iri`: its context + type expanded, when the caller
        has expanded them already, else a create's is expanded here).

        Raises:
            HubError: whatever `check` raises; nothing is stored then.
        """
        if commit.commit_strategy == "automerge" and self.crdt is None:
            raise BadRequest("The automerge commit strategy is not enabled on this hub",
                             target="commit.protected.commit_strategy")
        iri = type_iri
        if iri is None and commit.operation == "create":  # before the transaction: no lock held
            iri = await self.type_iri(commit.context, commit.type)
        try:
            async with self.db.transaction() as conn:
                view = view_of(commit)
                # `row` is the object as it was before this commit: the check judges that (what
                # is written before it is undone with everything else if the check refuses).
                if commit.operation == "create" and commit.commit_strategy != "automerge":
                    # A create is its object's first commit but in replication: its object row
                    # (the fold of the create alone) goes with it, unless the object has one.
                    alone = basic.fold(commit.object_id, [view])
                    oid, seq, stored, first = await store.append_first_commit(
                        self.db, conn, owner, store.commit_row(commit), alone,
                        payload if payload is not None else payload_data(view), iri)
                    row = None if first or not stored else await store.load_object(
                        conn, oid, commit.object_id)
                else:
                    oid, seq = await store.lock_owner(self.db, conn, owner)
                    stored, row = await store.append_commit(conn, oid, seq,
                                                            store.commit_row(commit))
                    first = False
                if not stored:
                    raise _AlreadyHeld(await store.object_revisions(conn, oid, commit.object_id))
                excluded = check is not None and bool(await check(conn, oid, row))
                revisions = None
                if excluded:
                    await self._store_excluded(conn, oid, view)
                else:
                    revisions = None if first else await self._fold(conn, oid, seq, row, view,
                                                                     payload, iri)
                grantees = await grant_index.after_commit_stored(conn, oid, commit.object_id,
                                                                 commit.interface,
                                                                 jsonld=self.jsonld)
                if grantees:  # a grant changed from its committed_at on: re-judge what it covers
                    await self.rejudge(conn, oid, owner, await exclusion.objects_signed_since(
                        conn, oid, grantees, commit.committed_at_us), [commit.object_id])
                elif commit.operation == "create" and row is not None and not excluded:
                    # the object's creator is known now (grants limited by created_by)
                    await self.rejudge(conn, oid, owner, [commit.object_id])
                if row is None:  # the object's first commit (every commit has an object row)
                    revisions = [commit.rev]
                elif revisions is None:
                    revisions = await store.object_revisions(conn, oid, commit.object_id)
        except _AlreadyHeld as held:
            return WriteResult(held.revisions, False, commit.object_id)
        if self.on_stored is not None:
            self.on_stored(owner)
        return WriteResult(revisions, True, commit.object_id, excluded)

    async def _store_excluded(self, conn: AsyncConnection, oid: int, view: CommitView) -> None:
        """Mark the commit just stored excluded, and fold its object without it. An automerge
        change is merged first as if it counted (raising as for any commit if it does not
        merge), so a change stored here folds once a grant covers it."""
        if view.commit_strategy == "automerge":
            await self.refold_object(conn, oid, view.object_id, new=view)
        await exclusion.set_flags(conn, oid, [view.rev], True)
        row = await store.load_commit(conn, oid, view.rev)
        await exclusion.record(conn, oid, row, True)
        await self.refold_object(conn, oid, view.object_id)

    async def rejudge(self, conn: AsyncConnection, oid: int, owner: str,
                      object_ids: list[str], grant_ids: list[str] | None = None) -> int:
        """Judge every commit of these objects again (permissions/exclusion.py), store the flags
        that changed (with their audit entries, naming `grant_ids`: the grant whose change
        caused it) and refold the objects whose flags changed. Returns how many flipped."""
        total = 0
        for object_id in object_ids:
            rows = await store.object_commits_rows(conn, oid, object_id)
            verdict = await exclusion.judge_object(conn, oid, owner, object_id, rows,
                                                   jsonld=self.jsonld)
            flipped = await exclusion.apply_verdict(conn, oid, rows, verdict, grant_ids)
            if not flipped:
                continue
            total += len(flipped)
            logger.info("%d commit(s) of object %s re-judged by a grant change", len(flipped),
                        object_id[:16])
            try:
                await self.refold_object(conn, oid, object_id, excluded=verdict, rows=rows)
            except HubError as exc:  # an automerge state that no longer merges: left as it was
                logger.warning("object %s not refolded after a grant change: %s",
                               object_id[:16], exc.message)
        return total

    async def _fold(self, conn: AsyncConnection, oid: int, seq: int, row: Any,
                    view: CommitView, payload: dict[str, Any] | None, type_iri: str | None
                    ) -> list[str] | None:
        """Fold the commit just stored into its object; the object's revisions when the
        statement that saved it read them too (else None). `type_iri`: a create's expanded
        type."""
        if view.commit_strategy == "automerge":
            await self.refold_object(conn, oid, view.object_id, new=view,
                                     create_seq=seq if view.operation == "create" else None)
            return None
        create_seq = seq if view.operation == "create" else None
        if row is None:  # no commit of this object before: its fold is this commit alone
            state = basic.fold(view.object_id, [view])
            data = None
            if state.winner is not None:
                data = payload if payload is not None else payload_data(state.winner)
            await store.save_object(
                self.db, conn, oid, state, create_seq=create_seq, data=data, data_changed=True,
                exists=False,
                type_iri=type_iri if state.create is not None else store.KEEP_TYPE_IRI)
            return None
        if row.has_create:
            state = store.state_from_row(row)
            new_state = basic.apply(state, view)
            if new_state is not None:
                changed = new_state.winner is view
                data = None
                if changed:
                    data = payload if payload is not None else payload_data(view)
                return await store.update_object(conn, oid, new_state, data=data,
                                                 data_changed=changed)
        await self.refold_object(conn, oid, view.object_id, create_seq=create_seq)
        return None

    async def refold_object(self, conn: AsyncConnection, oid: int, object_id: str, *,
                            create_seq: int | None = None, new: CommitView | None = None,
                            rows: list[Any] | None = None,
                            excluded: dict[str, bool] | None = None) -> ObjectState:
        """Fold one object from its whole log (the commits that count) and save the result.

        `new` is the commit just stored, if any: an automerge fold then appends it to the
        worker's cached merge of the others instead of merging everything again. `rows`: the
        object's commit rows, when the caller has read them; `excluded`: rev → flag, when the
        caller has just changed the stored flags (else the rows' flags).

        Raises:
            BadRequest: an automerge payload that does not fold (nothing is stored then).
        """
        if rows is None:
            rows = await store.object_commits_rows(conn, oid, object_id)

        def out(r: Any) -> bool:
            return bool(excluded[r.rev]) if excluded is not None and r.rev in excluded \
                else bool(r.excluded)

        views = [store.view_from_row(r) for r in rows if not out(r)]
        state = basic.fold(object_id, views)
        if state.create is not None and create_seq is None:
            create_seq = next(r.seq for r in rows if r.rev == object_id)
        if state.create is not None and state.create.commit_strategy == "automerge":
            dropped = [store.view_from_row(r) for r in rows if out(r)]
            data = await self._automerge_state(oid, state, views, new, dropped)
        else:
            data = payload_data(state.winner) if state.winner is not None else None
        iri = (await self.type_iri(state.create.context, state.create.type)
               if state.create is not None else store.KEEP_TYPE_IRI)
        await store.save_object(self.db, conn, oid, state, create_seq=create_seq, data=data,
                                data_changed=True, type_iri=iri)
        await grant_index.after_object_refolded(conn, oid, object_id, rows,
                                                jsonld=self.jsonld)
        return state

    async def _automerge_state(self, oid: int, state: ObjectState, views: list[CommitView],
                               new: CommitView | None, dropped: list[CommitView] | None = None
                               ) -> Any:
        """The merged JSON of an automerge object's payloads (its set, in the engine's order).

        Every payload is folded, even while a delete wins (the delete hides the object, the
        payloads stay valid); so a payload that does not merge is refused at write time.
        `dropped`: the excluded changes; a change that depends on one of them (transitively) is
        left out of the merge too, as it cannot be applied without it.
        """
        assert state.create is not None
        if self.crdt is None:
            raise BadRequest("The automerge commit strategy is not enabled on this hub",
                             target="commit.protected.commit_strategy")
        create = state.create
        mine = [v for v in views if basic.eligible(create, v) and v.operation != "delete"]
        if dropped:
            mine = _without_dependents(mine, dropped)
        key = f"{oid}:{state.object_id}"
        try:
            if new is not None and new.operation == "update" and new in mine:
                prior = [payload_bytes(v) for v in mine if v is not new]
                merged = await self.crdt.fold_append(key, prior, payload_bytes(new))
            else:
                merged = await self.crdt.fold([payload_bytes(v) for v in mine], cache_key=key)
        except CrdtError as exc:
            if exc.reason == "engine":  # the worker pool is down or closing: not the payload
                raise TemporarilyUnavailable("The automerge engine is unavailable; try again",
                                             target="commit.payload") from None
            refusal = MissingDependencies if exc.reason == "deps" else BadRequest
            raise refusal(str(exc), target="commit.payload") from None
        try:  # the same IRI check as a client's JSON payload (interfaces/objects.py)
            matches = await self.jsonld.payload_matches_async(merged, create.context,
                                                              create.type)
        except BadRequest as exc:
            raise BadRequest(f"The merged automerge state: {exc.message}",
                             target="commit.payload") from None
        if not matches:
            raise BadRequest("The merged automerge state's @context/@type contradict the "
                             "commit's context/type", target="commit.payload")
        return None if state.deleted else merged


def _hashes_and_deps(view: CommitView) -> tuple[frozenset[bytes], frozenset[bytes]]:
    try:
        info = parse_payload(payload_bytes(view))
    except (ChunkError, ValueError):
        return frozenset(), frozenset()
    return info.hashes, info.deps


def _without_dependents(views: list[CommitView], dropped: list[CommitView]) -> list[CommitView]:
    """`views` less every change that depends, directly or through others, on a `dropped`
    change."""
    gone: set[bytes] = set()
    for v in dropped:
        if v.operation != "delete":
            gone |= _hashes_and_deps(v)[0]
    keep = {v.rev: _hashes_and_deps(v) for v in views}
    changed = bool(gone)
    while changed:
        changed = False
        for rev, (hashes, deps) in list(keep.items()):
            if deps & gone:
                gone |= hashes
                del keep[rev]
                changed = True
    return [v for v in views if v.rev in keep]
