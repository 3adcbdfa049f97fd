"""Helpers every interface handler uses; `RequestContext` is defined in request_context.py."""

from __future__ import annotations

from typing import Any

from identity_hub.errors import BadRequest, MissingParameter, WrongType
from identity_hub.request_context import RequestContext as RequestContext  # re-exported
from identity_hub.storage import store

PROTOCOL_CONTEXT = "https://schema.identity.foundation/0.1"


def check_committed_at(committed_at_us: int, skew_seconds: int, *, past: bool = True,
                       now_us: int | None = None,
                       target: str = "commit.protected.committed_at") -> None:
    """A commit's `committed_at` must lie within `skew_seconds` of the hub's clock.

    Commits from clients are checked in both directions (`past=True`): authorization is judged
    at `committed_at`, so a backdated commit could use a grant revoked since. Commits replicated
    from a peer hub may be old and are only checked against the future (`past=False`).

    Raises:
        BadRequest: at `target`.
    """
    now = store.now_us() if now_us is None else now_us
    skew_us = skew_seconds * 1_000_000
    if committed_at_us > now + skew_us:
        raise BadRequest("committed_at is too far in the future", target=target)
    if past and committed_at_us < now - skew_us:
        raise BadRequest(f"committed_at is more than {skew_seconds} s in the past: sign "
                         "commits with the current time", target=target)


def opt_str(obj: dict[str, Any], name: str, target: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise WrongType(target=target)
    return value


def req_str(obj: dict[str, Any], name: str, target: str) -> str:
    value = opt_str(obj, name, target)
    if value is None:
        raise MissingParameter(target=target)
    return value


def opt_str_list(obj: dict[str, Any], name: str, target: str, *, max_items: int = 1000
                 ) -> list[str] | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WrongType(target=target)
    if len(value) > max_items:
        raise BadRequest(f"At most {max_items} items", target=target)
    return value


def page_response(type_: str, member: str, items: list[Any], skip_token: str | None
                  ) -> dict[str, Any]:
    return {"@context": PROTOCOL_CONTEXT, "@type": type_, member: items,
            "skip_token": skip_token}
