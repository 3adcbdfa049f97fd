"""The fold for `basic` and `lastWriterWins`: pure, deterministic, incremental.

An object's state is decided by one winning commit among its eligible commits (those whose
interface, context, type and commit_strategy equal its create commit's):

* `basic` (hub-common-js BasicCommitStrategy, protocol doc §d.4 item 1): the largest
  `(operation rank, committed_at, rev)` with create < update < delete. A delete is final.
* `lastWriterWins`: the largest `(committed_at, operation rank, rev)`: an update dated after a
  delete brings the object back.

Both orders are total, so the winner is the maximum of a set: every arrival order gives the same
state, and adding one commit to a folded state gives the same result as folding everything again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

OP_RANK = {"create": 0, "update": 1, "delete": 2}


@dataclasses.dataclass(frozen=True, slots=True)
class CommitView:
    """What the fold needs of a commit."""

    rev: str
    object_id: str
    operation: str
    interface: str
    context: str
    type: str
    commit_strategy: str
    committed_at: str
    committed_at_us: int
    signer: str
    meta: Any
    payload: str  # the base64url payload as sent


WinKey = tuple[int, int, str]


def win_key(strategy: str, operation: str, committed_at_us: int, rev: str) -> WinKey:
    rank = OP_RANK[operation]
    if strategy == "lastWriterWins":
        return (committed_at_us, rank, rev)
    return (rank, committed_at_us, rev)


def key_of(c: CommitView) -> WinKey:
    return win_key(c.commit_strategy, c.operation, c.committed_at_us, c.rev)


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectState:
    """The materialized state of one object; `create` is None while its create is missing."""

    object_id: str
    create: CommitView | None
    winner: CommitView | None
    updated_at_us: int
    commit_count: int

    @property
    def deleted(self) -> bool:
        return self.winner is not None and self.winner.operation == "delete"


def eligible(create: CommitView, c: CommitView) -> bool:
    return (
        c.object_id == create.object_id
        and c.interface == create.interface
        and c.context == create.context
        and c.type == create.type
        and c.commit_strategy == create.commit_strategy
    )


def fold(object_id: str, commits: Iterable[CommitView]) -> ObjectState:
    """Fold every commit of one object from scratch."""
    commits = [c for c in commits if c.object_id == object_id]
    creates = [c for c in commits if c.operation == "create" and c.rev == object_id]
    if not creates:
        return ObjectState(object_id, None, None, 0, len(commits))
    create = creates[0]
    chosen = [c for c in commits if eligible(create, c)]
    winner = max(chosen, key=key_of)
    updated = max(c.committed_at_us for c in chosen)
    return ObjectState(object_id, create, winner, updated, len(commits))


def apply(state: ObjectState, commit: CommitView) -> ObjectState | None:
    """Add one new commit to a folded state, or None when a fold from scratch is needed.

    A fold from scratch is needed when the object's create was missing (its eligibility rules
    were unknown) or when the new commit is the create itself.
    """
    if state.create is None or commit.operation == "create":
        return None
    if not eligible(state.create, commit):
        return dataclasses.replace(state, commit_count=state.commit_count + 1)
    winner = state.winner
    if winner is None or key_of(commit) > key_of(winner):
        winner = commit
    return ObjectState(
        state.object_id,
        state.create,
        winner,
        max(state.updated_at_us, commit.committed_at_us),
        state.commit_count + 1,
    )


def canonical_order(commits: Iterable[CommitView]) -> list[CommitView]:
    """The order in which order-sensitive strategies (automerge) apply payloads."""
    return sorted(commits, key=lambda c: (c.committed_at_us, c.rev))
