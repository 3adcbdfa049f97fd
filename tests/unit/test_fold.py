"""The fold is a pure function of the commit set: any arrival order, incremental or from scratch,
gives the same state, and ties break by the protocol's rules."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from identity_hub.commits.fold import basic
from identity_hub.commits.fold.basic import CommitView

OID = "a" * 64


def view(op: str, t: int, tag: str, *, strategy: str = "basic", rev: str | None = None,
         context: str = "https://schema.org") -> CommitView:
    rev = rev or (OID if op == "create" else hashlib.sha256(tag.encode()).hexdigest())
    return CommitView(rev=rev, object_id=OID, operation=op, interface="Collections",
                      context=context, type="MusicPlaylist", commit_strategy=strategy,
                      committed_at=str(t), committed_at_us=t, signer="did:ex:a", meta={"t": tag},
                      payload=tag)


def incremental(commits: list[CommitView]) -> basic.ObjectState:
    state = basic.fold(OID, [])
    seen: list[CommitView] = []
    for c in commits:
        seen.append(c)
        nxt = basic.apply(state, c)
        state = nxt if nxt is not None else basic.fold(OID, seen)
    return state


commit_lists = st.builds(
    lambda strategy, others: [view("create", 0, "c", strategy=strategy)]
    + [view(op, t, f"{op}{i}", strategy=strategy) for i, (op, t) in enumerate(others)],
    st.sampled_from(["basic", "lastWriterWins"]),
    st.lists(st.tuples(st.sampled_from(["update", "delete"]), st.integers(0, 5)), max_size=8),
)


@settings(max_examples=300, deadline=None)
@given(commit_lists, st.randoms(use_true_random=False))
def test_any_order_gives_the_same_state(commits: list[CommitView], rnd) -> None:  # type: ignore[no-untyped-def]
    expected = basic.fold(OID, commits)
    shuffled = list(commits)
    rnd.shuffle(shuffled)
    assert basic.fold(OID, shuffled) == expected
    assert incremental(shuffled).winner == expected.winner
    assert incremental(shuffled).deleted == expected.deleted
    assert incremental(shuffled).updated_at_us == expected.updated_at_us


def test_basic_delete_beats_a_later_update() -> None:
    c, d, u = view("create", 0, "c"), view("delete", 5, "d"), view("update", 9, "u")
    state = basic.fold(OID, [c, d, u])
    assert state.winner == d and state.deleted


def test_last_writer_wins_lets_a_later_update_resurrect() -> None:
    c = view("create", 0, "c", strategy="lastWriterWins")
    d = view("delete", 5, "d", strategy="lastWriterWins")
    u = view("update", 9, "u", strategy="lastWriterWins")
    state = basic.fold(OID, [c, d, u])
    assert state.winner == u and not state.deleted


def test_same_time_ties_break_by_larger_rev() -> None:
    a = view("update", 5, "x", rev="1" * 64)
    b = view("update", 5, "y", rev="f" * 64)
    assert basic.fold(OID, [view("create", 0, "c"), a, b]).winner == b
    assert basic.fold(OID, [b, view("create", 0, "c"), a]).winner == b


def test_later_committed_at_wins_among_updates() -> None:
    early, late = view("update", 3, "e", rev="f" * 64), view("update", 4, "l", rev="0" * 64)
    assert basic.fold(OID, [view("create", 0, "c"), late, early]).winner == late


def test_commits_before_their_create_wait_for_it() -> None:
    u = view("update", 3, "u")
    pending = basic.fold(OID, [u])
    assert pending.create is None and pending.winner is None
    assert basic.apply(pending, view("update", 4, "v")) is None  # needs a fold from scratch
    assert basic.fold(OID, [u, view("create", 0, "c")]).winner == u


def test_commits_of_another_context_do_not_count() -> None:
    c = view("create", 0, "c")
    stray = view("update", 9, "s", context="https://example.org")
    assert basic.fold(OID, [c, stray]).winner == c
    assert basic.apply(basic.fold(OID, [c]), stray).winner == c  # type: ignore[union-attr]
