"""JSON-LD, offline: the contexts the hub ships or its owner added, and type IRIs by pyld.

`loader.py` holds the context library (the only pyld document loader the hub uses); `expand.py`
turns a commit's context + type, or a payload's @context/@type, into type IRIs, cached and off
the event loop. See schemas/contexts/README.md for the shipped contexts.
"""

from identity_hub.jsonld.expand import (
    IRI_EQUIVALENTS,
    JsonLd,
    canonical_iri,
    default_jsonld,
    payload_matches,
    payload_matches_async,
    type_iri,
    type_iri_async,
)
from identity_hub.jsonld.loader import (
    SHIPPED_DIR,
    ContextConfigError,
    ContextLibrary,
    UnknownContext,
    absolute_context,
    normalize_url,
)

__all__ = [
    "IRI_EQUIVALENTS", "SHIPPED_DIR", "ContextConfigError", "ContextLibrary", "JsonLd",
    "UnknownContext", "absolute_context", "canonical_iri", "default_jsonld", "normalize_url",
    "payload_matches", "payload_matches_async", "type_iri", "type_iri_async",
]
