"""Signing model sets: an HMAC-SHA256 of the manifest's bytes, with a named key.

The manifest lists every file of a set with its sha256, so signing the manifest signs the set. Training
signs when ``MODEL_SIGNING_KEY`` is set; servers given ``MODEL_VERIFY_KEYS`` refuse a set that is unsigned,
signed with a key they do not know, or whose signature does not match. A key is ``<key id>:<secret>``; the
id travels with the signature, so keys rotate by adding the new one to every server's list first, then
signing with it, then removing the old one. HMAC (the standard library's ``hmac``) fits because the same
organisation signs and verifies: the secret lives in the deployment's secret store (AWS Secrets Manager or
SSM Parameter Store), never in the model bucket, and nobody who can only write to the bucket can sign.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from src.storage import ArtifactError

SIGNATURE_NAME = "manifest.sig"
ALGORITHM = "HMAC-SHA256"
KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
MIN_SECRET_CHARS = 32


class SigningKeyError(ValueError):
    """A signing or verification key is malformed."""


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    secret: bytes = field(repr=False)


def parse_key(text: str, variable: str) -> SigningKey:
    key_id, sep, secret = text.strip().partition(":")
    if not sep or not KEY_ID.fullmatch(key_id):
        raise SigningKeyError(
            f"{variable}: each key is '<key id>:<secret>' with a key id of letters, digits, '.', '_' or '-'"
        )
    if len(secret) < MIN_SECRET_CHARS:
        raise SigningKeyError(
            f"{variable}: the secret of key {key_id!r} must have at least {MIN_SECRET_CHARS} characters (got {len(secret)})"
        )
    return SigningKey(key_id, secret.encode("utf-8"))


def parse_keys(text: str | None, variable: str) -> tuple[SigningKey, ...]:
    """``id1:secret1,id2:secret2`` -> keys; empty or unset -> no keys."""
    if not text or not text.strip():
        return ()
    keys = tuple(parse_key(part, variable) for part in text.split(",") if part.strip())
    ids = [k.key_id for k in keys]
    if len(set(ids)) != len(ids):
        raise SigningKeyError(f"{variable}: a key id is listed twice")
    return keys


def sign(manifest_bytes: bytes, key: SigningKey) -> bytes:
    """The signature file's bytes for a manifest."""
    digest = hmac.new(key.secret, manifest_bytes, hashlib.sha256).hexdigest()
    return (json.dumps({"algorithm": ALGORITHM, "key_id": key.key_id, "signature": digest}) + "\n").encode("utf-8")


def verify(manifest_bytes: bytes, signature_bytes: bytes | None, keys: tuple[SigningKey, ...]) -> None:
    """Raise ArtifactError unless the signature is one of ``keys``' over exactly these manifest bytes."""
    if not keys:
        return
    if signature_bytes is None:
        raise ArtifactError(
            "the model set is not signed, and this server accepts only signed sets "
            f"(keys: {', '.join(k.key_id for k in keys)})"
        )
    try:
        payload = json.loads(signature_bytes)
        if not isinstance(payload, Mapping):
            raise TypeError("not an object")
        algorithm, key_id, digest = payload["algorithm"], payload["key_id"], payload["signature"]
    except (ValueError, KeyError, TypeError) as err:
        raise ArtifactError(f"{SIGNATURE_NAME} is not a valid signature file: {err}") from err
    if algorithm != ALGORITHM:
        raise ArtifactError(f"{SIGNATURE_NAME} uses {algorithm!r}; only {ALGORITHM} is accepted")
    key = next((k for k in keys if k.key_id == key_id), None)
    if key is None:
        raise ArtifactError(
            f"the model set is signed with key {key_id!r}, which this server does not trust "
            f"(keys: {', '.join(k.key_id for k in keys)})"
        )
    expected = hmac.new(key.secret, manifest_bytes, hashlib.sha256).hexdigest()
    if not isinstance(digest, str) or not hmac.compare_digest(expected, digest):
        raise ArtifactError(
            f"the signature of the model set does not match its manifest (key {key_id!r}): "
            "the set was changed after signing; refusing it"
        )
