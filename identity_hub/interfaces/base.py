"""What every interface handler gets: the authenticated request and the hub's services."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from identity_hub.errors import BadRequest, MissingParameter, WrongType

if TYPE_CHECKING:
    from identity_hub.core import Hub

PROTOCOL_CONTEXT = "https://schema.identity.foundation/0.1"


@dataclasses.dataclass(frozen=True)
class RequestContext:
    """An authenticated request: `requester` is the DID whose key signed it."""

    hub: Hub
    requester: str
    sub: str
    request: dict[str, Any]

    @property
    def is_owner(self) -> bool:
        return self.requester == self.sub


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
