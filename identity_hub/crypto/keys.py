"""Key import and export: JWKs (dicts or jwcrypto objects) to `cryptography` key objects and back.

A key is always handled as a pair `(family, key)`, where `family` is one of FAMILIES and `key` is a
`cryptography` key object. Only RSA (>= 2048 bits), EC (P-256, P-384, secp256k1) and OKP
(Ed25519, X25519) keys are accepted: never `oct`, whose "public" value would be a shared secret.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from identity_hub.crypto.common import JoseError, b64url_decode, b64url_encode

logger = logging.getLogger(__name__)

FAMILIES = ("RSA", "Ed25519", "X25519", "secp256k1", "P-256", "P-384")

MIN_RSA_BITS = 2048
MAX_RSA_BITS = 16384
# Public exponents are small in practice; a huge one would make every verify as slow as a sign.
MAX_RSA_EXPONENT_BITS = 64

# JWK `crv` -> (family, curve class, coordinate length). `P-256K` (ec-key) and `K-256` are aliases
# of secp256k1 seen in 2019-era documents.
_EC_CURVES: dict[str, tuple[str, type[ec.EllipticCurve], int]] = {
    "P-256": ("P-256", ec.SECP256R1, 32),
    "P-384": ("P-384", ec.SECP384R1, 48),
    "secp256k1": ("secp256k1", ec.SECP256K1, 32),
    "P-256K": ("secp256k1", ec.SECP256K1, 32),
    "K-256": ("secp256k1", ec.SECP256K1, 32),
}
_CURVE_NAME_TO_FAMILY = {"secp256r1": "P-256", "secp384r1": "P-384", "secp256k1": "secp256k1"}
FAMILY_TO_CURVE: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "secp256k1": ec.SECP256K1(),
}
_FAMILY_TO_JWK_CRV = {"P-256": "P-256", "P-384": "P-384", "secp256k1": "secp256k1"}
_COORD_LEN = {"P-256": 32, "P-384": 48, "secp256k1": 32}

_RSA_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth")

PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | x25519.X25519PublicKey
)
PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | x25519.X25519PrivateKey
)


# type(key) -> family ("EC" when the curve decides); filled on first sight of each key class, so
# that the hot path does one dict lookup instead of several ABC isinstance checks.
_FAMILY_BY_TYPE: dict[type, str] = {}
_PRIVATE_TYPES: set[type] = set()


def _classify(key: object) -> str | None:
    cls = type(key)
    family = _FAMILY_BY_TYPE.get(cls)
    if family is not None:
        return family
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        family = "RSA"
    elif isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        family = "Ed25519"
    elif isinstance(key, x25519.X25519PublicKey | x25519.X25519PrivateKey):
        family = "X25519"
    elif isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        family = "EC"
    else:
        return None
    if isinstance(
        key,
        rsa.RSAPrivateKey
        | ec.EllipticCurvePrivateKey
        | ed25519.Ed25519PrivateKey
        | x25519.X25519PrivateKey,
    ):
        _PRIVATE_TYPES.add(cls)
    _FAMILY_BY_TYPE[cls] = family
    return family


def _family_if_key(key: object) -> tuple[str, bool] | None:
    """(family, is_private) for a `cryptography` key object of a supported kind, else None."""
    family = _classify(key)
    if family is None:
        return None
    if family == "EC":
        family = _CURVE_NAME_TO_FAMILY.get(key.curve.name)  # type: ignore[attr-defined]
        if family is None:
            raise JoseError("unsupported elliptic curve")
    return family, type(key) in _PRIVATE_TYPES


def family_of(key: object) -> str:
    """Return the family of a `cryptography` public or private key object.

    Raises:
        JoseError: for any other object, or an EC key on a curve we do not support.
    """
    found = _family_if_key(key)
    if found is None:
        raise JoseError(f"not a supported key object: {type(key).__name__}")
    return found[0]


def _member(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise JoseError(f"JWK member {name!r} missing or not a string")
    return b64url_decode(value, f"JWK member {name!r}")


def _uint(jwk: Mapping[str, Any], name: str) -> int:
    data = _member(jwk, name)
    if not data:
        raise JoseError(f"JWK member {name!r} is empty")
    return int.from_bytes(data, "big")


def _coordinate(jwk: Mapping[str, Any], name: str, size: int) -> int:
    data = _member(jwk, name)
    # RFC 7518 wants the full length; some 2019-era exporters dropped leading zero bytes.
    if not 0 < len(data) <= size:
        raise JoseError(f"JWK member {name!r} has the wrong length")
    return int.from_bytes(data, "big")


def _check_mapping(jwk: object) -> Mapping[str, Any]:
    if not isinstance(jwk, Mapping):
        raise JoseError("JWK is not an object")
    kty = jwk.get("kty")
    if kty not in ("RSA", "EC", "OKP"):
        raise JoseError(f"JWK kty {kty!r} is not accepted")
    return jwk


def _rsa_public_numbers(jwk: Mapping[str, Any]) -> rsa.RSAPublicNumbers:
    n = _uint(jwk, "n")
    e = _uint(jwk, "e")
    if not MIN_RSA_BITS <= n.bit_length() <= MAX_RSA_BITS:
        raise JoseError("RSA modulus size is not accepted")
    if e < 3 or e % 2 == 0 or e.bit_length() > MAX_RSA_EXPONENT_BITS:
        raise JoseError("RSA exponent is not accepted")
    return rsa.RSAPublicNumbers(e, n)


def _ec_public_numbers(jwk: Mapping[str, Any]) -> tuple[str, ec.EllipticCurvePublicNumbers]:
    entry = _EC_CURVES.get(jwk.get("crv"))  # type: ignore[arg-type]
    if entry is None:
        raise JoseError("EC curve is not accepted")
    family, curve_cls, size = entry
    x = _coordinate(jwk, "x", size)
    y = _coordinate(jwk, "y", size)
    return family, ec.EllipticCurvePublicNumbers(x, y, curve_cls())


def _okp_family(jwk: Mapping[str, Any]) -> str:
    crv = jwk.get("crv")
    if crv not in ("Ed25519", "X25519"):
        raise JoseError("OKP curve is not accepted")
    return str(crv)


def public_key_from_jwk(jwk: Mapping[str, Any]) -> tuple[str, PublicKey]:
    """Build `(family, public key)` from a public JWK (a dict, or a public jwcrypto JWK).

    Refuses `oct` and unknown key types, private members, unknown curves, RSA moduli outside
    2048..16384 bits, odd or huge exponents, and EC points not on the curve.

    Raises:
        JoseError: when the JWK is not an acceptable public key.
    """
    jwk = _check_mapping(jwk)
    kty = jwk["kty"]
    try:
        if kty == "RSA":
            if any(m in jwk for m in _RSA_PRIVATE_MEMBERS):
                raise JoseError("JWK carries private members")
            return "RSA", _rsa_public_numbers(jwk).public_key()
        if "d" in jwk:
            raise JoseError("JWK carries private members")
        if kty == "EC":
            family, numbers = _ec_public_numbers(jwk)
            return family, numbers.public_key()
        family = _okp_family(jwk)
        x = _member(jwk, "x")
        if family == "Ed25519":
            return family, ed25519.Ed25519PublicKey.from_public_bytes(x)
        return family, x25519.X25519PublicKey.from_public_bytes(x)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise JoseError(f"invalid public JWK ({type(exc).__name__})") from None


def _jwk_as_private_dict(jwk: object) -> Mapping[str, Any]:
    export = getattr(jwk, "export_private", None)
    if callable(export):
        # A jwcrypto JWK: its export refuses when there is no private part.
        try:
            exported = export(as_dict=True)
        except Exception as exc:  # jwcrypto raises its own error classes
            raise JoseError(f"JWK has no private part ({type(exc).__name__})") from None
        if not isinstance(exported, dict):
            raise JoseError("JWK export is not an object")
        return exported
    return _check_mapping(jwk)


def _rsa_private_key(jwk: Mapping[str, Any]) -> rsa.RSAPrivateKey:
    public = _rsa_public_numbers(jwk)
    d = _uint(jwk, "d")
    if "oth" in jwk:
        raise JoseError("multi-prime RSA keys are not accepted")
    if all(m in jwk for m in ("p", "q")):
        p, q = _uint(jwk, "p"), _uint(jwk, "q")
    else:
        p, q = rsa.rsa_recover_prime_factors(public.n, public.e, d)
    dmp1 = _uint(jwk, "dp") if "dp" in jwk else rsa.rsa_crt_dmp1(d, p)
    dmq1 = _uint(jwk, "dq") if "dq" in jwk else rsa.rsa_crt_dmq1(d, q)
    iqmp = _uint(jwk, "qi") if "qi" in jwk else rsa.rsa_crt_iqmp(p, q)
    return rsa.RSAPrivateNumbers(p, q, d, dmp1, dmq1, iqmp, public).private_key()


def _ec_private_key(jwk: Mapping[str, Any]) -> tuple[str, ec.EllipticCurvePrivateKey]:
    family, numbers = _ec_public_numbers(jwk)
    d = _coordinate(jwk, "d", _COORD_LEN[family])
    key = ec.derive_private_key(d, FAMILY_TO_CURVE[family])
    derived = key.public_key().public_numbers()
    if (derived.x, derived.y) != (numbers.x, numbers.y):
        raise JoseError("EC private key does not match its public part")
    return family, key


def _okp_private_key(jwk: Mapping[str, Any]) -> tuple[str, PrivateKey]:
    family = _okp_family(jwk)
    d = _member(jwk, "d")
    key: ed25519.Ed25519PrivateKey | x25519.X25519PrivateKey
    if family == "Ed25519":
        key = ed25519.Ed25519PrivateKey.from_private_bytes(d)
    else:
        key = x25519.X25519PrivateKey.from_private_bytes(d)
    if "x" in jwk:
        raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        if raw != _member(jwk, "x"):
            raise JoseError("OKP private key does not match its public part")
    return family, key


def private_key_from_jwk(jwk: object) -> tuple[str, PrivateKey]:
    """Build `(family, private key)` from a private JWK dict or a jwcrypto `JWK`.

    This does the key's consistency checks (expensive for RSA): call it once per key and keep the
    result, not once per request.

    Raises:
        JoseError: when the JWK is not an acceptable private key.
    """
    data = _jwk_as_private_dict(jwk)
    data = _check_mapping(data)
    kty = data["kty"]
    try:
        if kty == "RSA":
            return "RSA", _rsa_private_key(data)
        if kty == "EC":
            return _ec_private_key(data)
        return _okp_private_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise JoseError(f"invalid private JWK ({type(exc).__name__})") from None


def public_jwk_from_key(key: object, kid: str | None = None) -> dict[str, str]:
    """Export the public half of a `cryptography` key (public or private) as a JWK dict.

    Raises:
        JoseError: for an unsupported key object.
    """
    found = _family_if_key(key)
    if found is None:
        raise JoseError(f"not a supported key object: {type(key).__name__}")
    family, private = found
    public: Any = key.public_key() if private else key  # type: ignore[attr-defined]
    jwk: dict[str, str]
    if family == "RSA":
        nums = public.public_numbers()
        jwk = {"kty": "RSA", "n": _b64_uint(nums.n), "e": _b64_uint(nums.e)}
    elif family in ("Ed25519", "X25519"):
        raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        jwk = {"kty": "OKP", "crv": family, "x": b64url_encode(raw)}
    else:
        nums = public.public_numbers()
        size = _COORD_LEN[family]
        jwk = {
            "kty": "EC",
            "crv": _FAMILY_TO_JWK_CRV[family],
            "x": b64url_encode(nums.x.to_bytes(size, "big")),
            "y": b64url_encode(nums.y.to_bytes(size, "big")),
        }
    if kid is not None:
        jwk["kid"] = kid
    return jwk


def _b64_uint(value: int) -> str:
    return b64url_encode(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def load_public_key(obj: object) -> tuple[str, PublicKey]:
    """Turn whatever describes a public key into `(family, key)`.

    Accepts a `cryptography` public key; a public JWK dict; a jwcrypto `JWK` (its public half is
    used); an object with a `crypto_key` attribute holding a `cryptography` public key (such as
    identity_hub.did's VerificationKey; its `key_family`, if any, must agree); or an object with a
    `public_jwk`, `public_key_jwk`, `publicKeyJwk` or `jwk` attribute holding a JWK. RSA keys under
    2048 bits are refused in every form.

    Raises:
        JoseError: when no acceptable public key can be obtained.
    """
    found = _family_if_key(obj)
    if found is not None:
        family, private = found
        if private:
            raise JoseError("a private key was given where a public key is expected")
        if family == "RSA" and obj.key_size < MIN_RSA_BITS:  # type: ignore[attr-defined]
            raise JoseError("RSA modulus size is not accepted")
        return family, obj  # type: ignore[return-value]
    try:
        crypto_key = getattr(obj, "crypto_key", None)
    except Exception as exc:  # a lazily built attribute of someone else's class
        raise JoseError(f"cannot obtain crypto_key ({type(exc).__name__})") from None
    if crypto_key is not None:
        family, key = load_public_key(crypto_key)
        declared = getattr(obj, "key_family", family)
        if declared != family:
            raise JoseError(f"key_family {declared!r} does not match the key ({family})")
        return family, key
    export_public = getattr(obj, "export_public", None)
    if callable(export_public):
        try:
            exported = export_public(as_dict=True)
        except Exception as exc:  # jwcrypto raises its own error classes
            raise JoseError(f"cannot export public JWK ({type(exc).__name__})") from None
        return public_key_from_jwk(exported)
    if isinstance(obj, Mapping):
        return public_key_from_jwk(obj)
    for attr in ("public_jwk", "public_key_jwk", "publicKeyJwk", "jwk"):
        value = getattr(obj, attr, None)
        if value is not None:
            return load_public_key(value)
    raise JoseError(f"cannot obtain a public key from {type(obj).__name__}")


def coerce_public_key(family: str, key: object) -> PublicKey:
    """Return `key` as a `cryptography` public key of `family` (converting JWKs when needed).

    Raises:
        JoseError: when the key is not of that family or cannot be converted.
    """
    actual, public = load_public_key(key)
    if actual != family:
        raise JoseError(f"key family {actual} does not match {family}")
    return public


def coerce_private_key(family: str, key: object) -> PrivateKey:
    """Return `key` as a `cryptography` private key of `family` (converting JWKs when needed).

    Raises:
        JoseError: when the key is not of that family or cannot be converted.
    """
    found = _family_if_key(key)
    if found is not None:
        if not found[1]:
            raise JoseError("a public key was given where a private key is expected")
        actual, private = found[0], key
    else:
        actual, private = private_key_from_jwk(key)
    if actual != family:
        raise JoseError(f"key family {actual} does not match {family}")
    return private  # type: ignore[return-value]
