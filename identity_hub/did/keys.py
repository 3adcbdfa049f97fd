"""Public keys from DID documents: validation, and the `VerificationKey` the hub verifies and
encrypts with.

Only these keys are ever built (security-notes.md: an `oct` key in a DID document would let anyone
forge HS256 with the published secret):

* RSA with a modulus of 2048 to 16384 bits;
* EC on P-256, P-384 or secp256k1 (crv `secp256k1`, `P-256K` and `K-256` all mean secp256k1);
* OKP Ed25519 (signing only) and X25519 (key agreement only).

Any private member (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`, `k`) is refused, and points must lie
on their curve (for Ed25519: a canonical encoding of a point not of small order).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any

import base58
import nacl.bindings
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from jwcrypto import jwk as jwcrypto_jwk

from identity_hub.did.encoding import (
    b64url_decode,
    b64url_encode,
    b64url_uint,
    decode_varint,
    multibase_b58_decode,
)
from identity_hub.did.errors import (
    InvalidDid,
    InvalidPublicKey,
    InvalidPublicKeyLength,
    UnsupportedPublicKeyType,
)

logger = logging.getLogger(__name__)

PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | x25519.X25519PublicKey
)

PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k", "r", "t"})
PUBLIC_MEMBERS = ("kty", "crv", "x", "y", "n", "e")
SIGN_RELATIONSHIPS = frozenset({"authentication", "assertionMethod"})
RELATIONSHIPS = (
    "authentication",
    "assertionMethod",
    "keyAgreement",
    "capabilityInvocation",
    "capabilityDelegation",
)
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 16384

_EC_CURVES: dict[str, tuple[str, ec.EllipticCurve, int]] = {
    "P-256": ("P-256", ec.SECP256R1(), 32),
    "P-384": ("P-384", ec.SECP384R1(), 48),
    "secp256k1": ("secp256k1", ec.SECP256K1(), 32),
    "P-256K": ("secp256k1", ec.SECP256K1(), 32),
    "K-256": ("secp256k1", ec.SECP256K1(), 32),
}

# multicodec -> (family, raw length or None for variable)
MULTICODECS: dict[int, tuple[str, int | None]] = {
    0xED: ("Ed25519", 32),
    0xEC: ("X25519", 32),
    0xE7: ("secp256k1", 33),
    0x1200: ("P-256", 33),
    0x1201: ("P-384", 49),
    0x1205: ("RSA", None),
}
CODEC_OF_FAMILY = {family: codec for codec, (family, _) in MULTICODECS.items()}
_CURVE_OF_FAMILY = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "secp256k1": ec.SECP256K1()}


@dataclasses.dataclass(frozen=True, eq=False)
class VerificationKey:
    """A validated public key from a DID document, with what it is authorized for.

    Attributes:
        id: absolute key id `did:...#fragment`.
        did: the DID whose document lists the key.
        type: the verification method type as written in the document.
        public_jwk: the public members only (`kty`, `crv`, `x`, `y`, `n`, `e`); `crv` is canonical
            (`secp256k1` for `P-256K`/`K-256`).
        relationships: the verification relationships that list the key.
        key_family: `RSA`, `Ed25519`, `X25519`, `secp256k1`, `P-256` or `P-384`.
        use: the JWK `use` member, if any.
    """

    id: str
    did: str
    type: str
    public_jwk: dict[str, str]
    relationships: frozenset[str]
    key_family: str
    use: str | None = None

    @functools.cached_property
    def crypto_key(self) -> PublicKey:
        """The `cryptography` public key (built once)."""
        return _crypto_from_public_jwk(self.public_jwk)

    @functools.cached_property
    def jwk(self) -> jwcrypto_jwk.JWK:
        """The public key as a jwcrypto JWK (built once, public members only, no `use`)."""
        return jwcrypto_jwk.JWK(**self.public_jwk)

    def can_sign(self) -> bool:
        """True if the key may verify signatures: listed in `authentication` or `assertionMethod`
        and of a signing family (never X25519)."""
        return self.key_family != "X25519" and not SIGN_RELATIONSHIPS.isdisjoint(self.relationships)

    def can_encrypt(self) -> bool:
        """True if the hub may encrypt to the key: listed in `keyAgreement` and of an encryption
        family (never Ed25519)."""
        return self.key_family != "Ed25519" and "keyAgreement" in self.relationships


def family_of_jwk(jwk: Any) -> str | None:
    """The key family a JWK claims (`kty`/`crv` only, nothing validated); None if unsupported."""
    if not isinstance(jwk, dict):
        return None
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "RSA":
        return "RSA"
    if kty == "EC" and isinstance(crv, str) and crv in _EC_CURVES:
        return _EC_CURVES[crv][0]
    if kty == "OKP" and crv in ("Ed25519", "X25519"):
        return str(crv)
    return None


def _coordinate(jwk: dict[str, Any], name: str, size: int | None = None) -> bytes:
    """A base64url JWK member; with `size`, an EC/OKP coordinate of at most that many bytes,
    left-padded (some 2019 producers dropped leading zero bytes)."""
    value = jwk.get(name)
    if not isinstance(value, str):
        raise InvalidPublicKey(f"JWK member {name!r} is missing or not a string")
    try:
        raw = b64url_decode(value)
    except ValueError as exc:
        raise InvalidPublicKey(f"JWK member {name!r} is not base64url") from exc
    if not raw:
        raise InvalidPublicKey(f"JWK member {name!r} is empty")
    if size is not None:
        if len(raw) > size:
            raise InvalidPublicKeyLength(f"JWK member {name!r} is longer than {size} bytes")
        raw = raw.rjust(size, b"\0")
    return raw


def validate_public_jwk(jwk: Any) -> tuple[dict[str, str], str, PublicKey]:
    """Validate a public JWK from a DID document.

    Returns:
        (public members with a canonical `crv`, key family, `cryptography` public key)

    Raises:
        InvalidPublicKey: malformed, private members present, point not on the curve, RSA too small.
        InvalidPublicKeyLength: a coordinate of the wrong size.
        UnsupportedPublicKeyType: `oct` or any other key type or curve.
    """
    if not isinstance(jwk, dict):
        raise InvalidPublicKey("publicKeyJwk must be a JSON object")
    private = PRIVATE_MEMBERS.intersection(jwk)
    if private:
        raise InvalidPublicKey("a DID document JWK must not contain private members")
    kty = jwk.get("kty")
    if kty == "RSA":
        n = int.from_bytes(_coordinate(jwk, "n"), "big")
        e = int.from_bytes(_coordinate(jwk, "e"), "big")
        public: dict[str, str] = {"kty": "RSA", "n": b64url_uint(n), "e": b64url_uint(e)}
        return public, "RSA", _rsa_key(n, e)
    if kty == "EC":
        crv = jwk.get("crv")
        if not isinstance(crv, str) or crv not in _EC_CURVES:
            raise UnsupportedPublicKeyType(f"unsupported EC curve {crv!r}")
        canonical, curve, size = _EC_CURVES[crv]
        x = _coordinate(jwk, "x", size)
        y = _coordinate(jwk, "y", size)
        key = _ec_key(curve, x, y)
        public = {"kty": "EC", "crv": canonical, "x": b64url_encode(x), "y": b64url_encode(y)}
        return public, canonical, key
    if kty == "OKP":
        crv = jwk.get("crv")
        if crv not in ("Ed25519", "X25519"):
            raise UnsupportedPublicKeyType(f"unsupported OKP curve {crv!r}")
        raw = _coordinate(jwk, "x")
        if len(raw) != 32:
            raise InvalidPublicKeyLength(f"{crv} key must be 32 bytes, not {len(raw)}")
        okp = _okp_key(str(crv), raw)
        return {"kty": "OKP", "crv": str(crv), "x": jwk["x"]}, str(crv), okp
    raise UnsupportedPublicKeyType(f"unsupported key type {kty!r}")


def _rsa_key(n: int, e: int) -> rsa.RSAPublicKey:
    if not MIN_RSA_BITS <= n.bit_length() <= MAX_RSA_BITS:
        raise InvalidPublicKey(f"RSA modulus of {n.bit_length()} bits (need {MIN_RSA_BITS}+)")
    if e < 3 or e % 2 == 0 or e.bit_length() > 32:
        raise InvalidPublicKey("invalid RSA public exponent")
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError as exc:
        raise InvalidPublicKey("invalid RSA public key") from exc


def _ec_key(curve: ec.EllipticCurve, x: bytes, y: bytes) -> ec.EllipticCurvePublicKey:
    try:
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
        )
        return numbers.public_key()
    except ValueError as exc:
        raise InvalidPublicKey("EC point is not on the curve") from exc


def _okp_key(crv: str, raw: bytes) -> ed25519.Ed25519PublicKey | x25519.X25519PublicKey:
    if crv == "Ed25519":
        if not nacl.bindings.crypto_core_ed25519_is_valid_point(raw):
            raise InvalidPublicKey("Ed25519 key is not a valid point (or has small order)")
        return ed25519.Ed25519PublicKey.from_public_bytes(raw)
    return x25519.X25519PublicKey.from_public_bytes(raw)


def _crypto_from_public_jwk(public_jwk: dict[str, str]) -> PublicKey:
    return validate_public_jwk(public_jwk)[2]


def decode_multikey(value: str) -> tuple[dict[str, str], str, PublicKey]:
    """Decode a multibase multikey (`z` + base58btc(varint codec || key bytes)), as in did:key.

    Returns:
        (public JWK, key family, `cryptography` public key)

    Raises:
        InvalidDid: wrong multibase prefix, bad base58, truncated codec, unknown multicodec.
        InvalidPublicKeyLength: wrong number of key bytes for the codec.
        InvalidPublicKey: bytes that are not a valid key of that type.
    """
    data = multibase_b58_decode(value)
    try:
        codec, used = decode_varint(data)
    except ValueError as exc:
        raise InvalidDid("the multicodec prefix is malformed") from exc
    if codec not in MULTICODECS:
        raise InvalidDid(f"unsupported multicodec 0x{codec:x}", reason="unsupportedPublicKeyType")
    family, size = MULTICODECS[codec]
    raw = data[used:]
    if size is not None and len(raw) != size:
        raise InvalidPublicKeyLength(f"{family} key must be {size} bytes, not {len(raw)}")
    return public_key_from_raw(family, raw)


def public_key_from_raw(family: str, raw: bytes) -> tuple[dict[str, str], str, PublicKey]:
    """Build a key from its raw multikey bytes (compressed EC point, 32-byte OKP, PKCS#1 DER RSA).

    Raises:
        InvalidPublicKey, InvalidPublicKeyLength
    """
    if family in ("Ed25519", "X25519"):
        if len(raw) != 32:
            raise InvalidPublicKeyLength(f"{family} key must be 32 bytes")
        okp = _okp_key(family, raw)
        return {"kty": "OKP", "crv": family, "x": b64url_encode(raw)}, family, okp
    if family in _CURVE_OF_FAMILY:
        curve = _CURVE_OF_FAMILY[family]
        if not raw or raw[0] not in (2, 3, 4):
            raise InvalidPublicKey(f"{family} key is not an SEC1 point")
        try:
            point = ec.EllipticCurvePublicKey.from_encoded_point(curve, raw)
        except ValueError as exc:
            raise InvalidPublicKey(f"{family} key is not a point on the curve") from exc
        return _ec_public_jwk(point, family), family, point
    if family == "RSA":
        try:
            loaded = serialization.load_der_public_key(raw)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise InvalidPublicKey("RSA key is not DER RSAPublicKey") from exc
        if not isinstance(loaded, rsa.RSAPublicKey):
            raise InvalidPublicKey("not an RSA key")
        der = loaded.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
        if der != raw:
            raise InvalidPublicKey("RSA key is not canonical PKCS#1 DER")
        nums = loaded.public_numbers()
        rsa_key = _rsa_key(nums.n, nums.e)
        return {"kty": "RSA", "n": b64url_uint(nums.n), "e": b64url_uint(nums.e)}, "RSA", rsa_key
    raise UnsupportedPublicKeyType(f"unsupported key family {family!r}")


def _ec_public_jwk(key: ec.EllipticCurvePublicKey, family: str) -> dict[str, str]:
    size = (key.curve.key_size + 7) // 8
    nums = key.public_numbers()
    return {
        "kty": "EC",
        "crv": family,
        "x": b64url_encode(nums.x.to_bytes(size, "big")),
        "y": b64url_encode(nums.y.to_bytes(size, "big")),
    }


def _raw_from_text(method: dict[str, Any]) -> bytes | None:
    for member, decode in (("publicKeyBase58", base58.b58decode), ("publicKeyHex", bytes.fromhex)):
        value = method.get(member)
        if isinstance(value, str):
            try:
                return bytes(decode(value))
            except ValueError as exc:
                raise InvalidPublicKey(f"{member} is not valid") from exc
    return None


def _family_from_type(type_: str) -> str | None:
    lowered = type_.lower()
    markers = (("ed25519", "Ed25519"), ("x25519", "X25519"), ("secp256k1", "secp256k1"))
    for marker, family in markers:
        if marker in lowered:
            return family
    return None


def key_material(method: dict[str, Any]) -> tuple[dict[str, str], str, PublicKey, str | None]:
    """The public key of a verification method, from `publicKeyJwk`, `publicKeyMultibase`, or the
    2018/2019 `publicKeyBase58`/`publicKeyHex` (Ed25519, X25519 and secp256k1 types only).

    Returns:
        (public JWK, key family, `cryptography` key, JWK `use` or None)

    Raises:
        InvalidDid (or a subclass): no usable key material.
    """
    if "publicKeyJwk" in method:
        jwk = method["publicKeyJwk"]
        public, family, key = validate_public_jwk(jwk)
        use = jwk.get("use") if isinstance(jwk.get("use"), str) else None
        return public, family, key, use
    multibase = method.get("publicKeyMultibase")
    if isinstance(multibase, str):
        return (*decode_multikey(multibase), None)
    raw = _raw_from_text(method)
    if raw is not None:
        raw_family = _family_from_type(str(method.get("type", "")))
        if raw_family is None:
            raise UnsupportedPublicKeyType("raw key material of an unsupported method type")
        return (*public_key_from_raw(raw_family, raw), None)
    raise UnsupportedPublicKeyType("verification method has no supported key material")


def build_verification_key(
    method: dict[str, Any], did: str, relationships: frozenset[str]
) -> VerificationKey:
    """Validate a verification method (ids already absolute) into a `VerificationKey`.

    Raises:
        InvalidDid (or a subclass): the key material is unusable.
    """
    public, family, key, use = key_material(method)
    vkey = VerificationKey(
        id=str(method.get("id")),
        did=did,
        type=str(method.get("type", "")),
        public_jwk=public,
        relationships=relationships,
        key_family=family,
        use=use,
    )
    vkey.__dict__["crypto_key"] = key  # the validated key doubles as the cached one
    return vkey
