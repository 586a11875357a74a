"""The model store: complete, verified model sets by version, and one pointer naming the champion.

One layout, in a local folder or under an S3 prefix::

    <store>/<model_version>/manifest.json, manifest.sig, preprocessor.pkl, model.pkl, ...   one set each
    <store>/champion.json                                                                   the served version
    <store>/decisions/<time>-<model_version>.json                                           every decision

A set becomes visible whole: locally it is written into a staging folder, fsynced and renamed into place; on S3
its files are uploaded before its manifest. Nothing points at a set before it is complete: the pointer is
replaced in one step (``os.replace`` locally, one PUT on S3) and names the sha256 of the set's manifest, which
lists every file's sha256. Only the decision (``src.lifecycle.decision``) writes the pointer.

Every version that comes from the pointer or the command line is matched against ``VERSION_PATTERN`` before it
becomes part of a path, and the store deletes only what matches that pattern or its own staging names.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from src.signing import SIGNATURE_NAME, SigningKey, sign, verify
from src.storage import (
    MANIFEST_NAME,
    ArtifactError,
    DataSourceError,
    atomic_write_bytes,
    file_entry,
    fsync_dir,
    is_s3,
    read_manifest,
    s3_client,
    sha256_bytes,
    split_s3_uri,
    verify_files,
    write_json,
)

logger = logging.getLogger(__name__)

POINTER_NAME = "champion.json"
POINTER_FORMAT = 1
DECISIONS = "decisions"
VERSION_PATTERN = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{8}")
STAGING_PREFIX = ".staging-"
HISTORY_LIMIT = 20
TRAINING_RUNS = "training-runs"  # beside a local store's versions: each run's student records, never served


class StoreError(ArtifactError):
    """The store cannot do what was asked (no champion, unknown version, unsafe name)."""


def check_version(version: Any) -> str:
    """A model version as training names it (``20261123T101500Z-1a2b3c4d``); anything else is refused."""
    if not isinstance(version, str) or not VERSION_PATTERN.fullmatch(version):
        raise StoreError(f"{version!r} is not a model version (expected the form 20261123T101500Z-1a2b3c4d)")
    return version


@dataclass(frozen=True)
class Pointer:
    """What ``champion.json`` says: the served version, its manifest's sha256, and the earlier champions."""

    model_version: str
    manifest_sha256: str
    updated_at: str
    action: str  # promoted, promoted by hand, rollback
    reason: str
    previous: tuple[str, ...] = field(default=())  # earlier champions, the most recent last

    def to_bytes(self) -> bytes:
        payload = {
            "format": POINTER_FORMAT,
            "model_version": self.model_version,
            "manifest_sha256": self.manifest_sha256,
            "updated_at": self.updated_at,
            "action": self.action,
            "reason": self.reason,
            "previous": list(self.previous),
        }
        return (json.dumps(payload, indent=2) + "\n").encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Pointer:
        try:
            payload = json.loads(data)
            if not isinstance(payload, Mapping) or payload.get("format") != POINTER_FORMAT:
                raise ValueError(f"not a pointer of format {POINTER_FORMAT}")
            previous = payload.get("previous", [])
            if not isinstance(previous, list):
                raise ValueError("previous is not a list")
            pointer = cls(
                model_version=check_version(payload["model_version"]),
                manifest_sha256=str(payload["manifest_sha256"]),
                updated_at=str(payload.get("updated_at", "")),
                action=str(payload.get("action", "")),
                reason=str(payload.get("reason", "")),
                previous=tuple(check_version(v) for v in previous),
            )
        except (ValueError, KeyError, TypeError) as err:
            raise StoreError(f"{where} is not a valid pointer: {err}") from err
        if not re.fullmatch(r"[0-9a-f]{64}", pointer.manifest_sha256):
            raise StoreError(f"{where} names no valid manifest sha256")
        return pointer

    def moved_to(self, version: str, manifest_sha256: str, action: str, reason: str) -> Pointer:
        """The pointer after the champion moves to ``version`` (this champion joins the history)."""
        previous = [v for v in self.previous if v != version] + [self.model_version]
        return Pointer(version, manifest_sha256, now_iso(), action, reason, tuple(previous[-HISTORY_LIMIT:]))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def verify_set(directory: Path, keys: Sequence[SigningKey] = (), manifest_sha256: str | None = None) -> dict:
    """Check a set folder: the manifest (against the pointer's sha256), its signature, every file's sha256."""
    path = directory / MANIFEST_NAME
    try:
        manifest_bytes = path.read_bytes()
    except OSError as err:
        raise ArtifactError(f"no readable {MANIFEST_NAME} in {directory}: {err}") from err
    if manifest_sha256 is not None and sha256_bytes(manifest_bytes) != manifest_sha256:
        raise ArtifactError(f"{path} does not match the sha256 that {POINTER_NAME} names; refusing it")
    signature = directory / SIGNATURE_NAME
    verify(manifest_bytes, signature.read_bytes() if signature.is_file() else None, tuple(keys))
    manifest = read_manifest(directory)
    verify_files(directory, manifest)
    return manifest


def seal_set(directory: Path, manifest: Mapping[str, Any], key: SigningKey | None = None) -> dict[str, Any]:
    """Complete a set folder: fill ``manifest["files"]`` from its files, write the manifest, sign it."""
    names = sorted(
        p.name
        for p in directory.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name not in (MANIFEST_NAME, SIGNATURE_NAME)
    )
    sealed = {**manifest, "files": {name: file_entry(directory / name) for name in names}}
    write_json(directory / MANIFEST_NAME, sealed)
    if key is not None:
        atomic_write_bytes(directory / SIGNATURE_NAME, sign((directory / MANIFEST_NAME).read_bytes(), key))
    return sealed


def set_files(directory: Path) -> list[str]:
    """The files of a set folder, the manifest last (it is the commit point wherever the set is copied)."""
    manifest = read_manifest(directory)
    names = sorted(manifest["files"])
    for name in names:
        if Path(name).name != name:
            raise ArtifactError(f"manifest lists a file outside its folder: {name!r}")
    if (directory / SIGNATURE_NAME).is_file():
        names.append(SIGNATURE_NAME)
    return [*names, MANIFEST_NAME]


class Store(ABC):
    """A model store; ``open_store`` picks the kind from the location."""

    location: str

    @abstractmethod
    def read_pointer_bytes(self) -> bytes | None:
        """The pointer's bytes, or None when there is no champion yet."""

    @abstractmethod
    def write_pointer(self, pointer: Pointer) -> None:
        """Replace the pointer in one atomic step."""

    @abstractmethod
    def restore_pointer(self, data: bytes | None) -> None:
        """Put back pointer bytes read earlier (None: remove it), to undo a move that could not complete."""

    @abstractmethod
    def versions(self) -> list[str]:
        """Versions that hold a committed set (their manifest is present), oldest first."""

    @abstractmethod
    def add_set(self, directory: Path) -> str:
        """Copy a complete local set into the store under its version; nothing points at it yet."""

    @abstractmethod
    def set_dir(self, version: str) -> Path:
        """A local folder holding the version's files (downloaded into the cache for S3); not yet verified."""

    @abstractmethod
    def delete_version(self, version: str) -> None: ...

    @abstractmethod
    def write_decision(self, record: Mapping[str, Any]) -> None: ...

    @abstractmethod
    def decisions(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The recorded decisions (the last ``limit`` of them), oldest first."""

    def read_pointer(self) -> Pointer | None:
        return self.pointer_and_bytes()[0]

    def pointer_and_bytes(self) -> tuple[Pointer | None, bytes | None]:
        """The pointer and the bytes it was read from (one read: what a failed move puts back is what was read)."""
        data = self.read_pointer_bytes()
        return (None if data is None else Pointer.from_bytes(data, f"{self.location}/{POINTER_NAME}")), data

    def champion(self) -> Pointer:
        pointer = self.read_pointer()
        if pointer is None:
            raise StoreError(f"{self.location} has no champion yet ({POINTER_NAME} is missing): train a model first")
        return pointer

    def open_verified(
        self, version: str, keys: Sequence[SigningKey] = (), manifest_sha256: str | None = None
    ) -> tuple[Path, dict]:
        """The version's local folder and manifest, after every check."""
        directory = self.set_dir(check_version(version))
        return directory, verify_set(directory, keys, manifest_sha256)

    def prune(self, keep: int) -> list[str]:
        """Delete the oldest versions beyond ``keep``, never the champion or the one a rollback returns to."""
        pointer = self.read_pointer()
        protected = set()
        if pointer is not None:
            protected.add(pointer.model_version)
            protected.update(pointer.previous[-1:])
        removable = [v for v in self.versions() if v not in protected]
        excess = len(removable) + len(protected) - keep
        doomed = removable[: max(0, excess)]
        for version in doomed:
            self.delete_version(version)
        if doomed:
            logger.info("pruned %d old model versions from %s: %s", len(doomed), self.location, ", ".join(doomed))
        return doomed


def _decision_name(record: Mapping[str, Any]) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{check_version(record['version'])}.json"


class LocalStore(Store):
    """A store in a local folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.location = str(self.root)

    def read_pointer_bytes(self) -> bytes | None:
        try:
            return (self.root / POINTER_NAME).read_bytes()
        except FileNotFoundError:
            return None

    def write_pointer(self, pointer: Pointer) -> None:
        atomic_write_bytes(self.root / POINTER_NAME, pointer.to_bytes())
        fsync_dir(self.root)

    def restore_pointer(self, data: bytes | None) -> None:
        if data is None:
            (self.root / POINTER_NAME).unlink(missing_ok=True)
        else:
            atomic_write_bytes(self.root / POINTER_NAME, data)
        fsync_dir(self.root)

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if VERSION_PATTERN.fullmatch(p.name) and (p / MANIFEST_NAME).is_file()
        )

    def add_set(self, directory: Path) -> str:
        manifest = read_manifest(directory)
        version = check_version(manifest.get("model_version"))
        target = self.root / version
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_stale_staging()
        staging = self.root / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            for name in set_files(directory):
                shutil.copyfile(directory / name, staging / name)
                with open(staging / name, "rb") as handle:
                    os.fsync(handle.fileno())
            fsync_dir(staging)
            try:
                os.rename(staging, target)
            except OSError as err:  # the version is there already: the same set, or a clash
                if (target / MANIFEST_NAME).read_bytes() != (directory / MANIFEST_NAME).read_bytes():
                    raise StoreError(f"{target} already holds another set of version {version}") from err
                logger.info("version %s is already in %s", version, self.location)
            fsync_dir(self.root)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        return version

    def set_dir(self, version: str) -> Path:
        return self.root / check_version(version)

    def delete_version(self, version: str) -> None:
        shutil.rmtree(self.root / check_version(version), ignore_errors=True)

    def write_decision(self, record: Mapping[str, Any]) -> None:
        atomic_write_bytes(
            self.root / DECISIONS / _decision_name(record), (json.dumps(dict(record), indent=2) + "\n").encode("utf-8")
        )

    def decisions(self, limit: int | None = None) -> list[dict[str, Any]]:
        folder = self.root / DECISIONS
        if not folder.is_dir():
            return []
        out = []
        for path in sorted(folder.glob("*.json"))[-(limit or 0) :]:
            try:
                out.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                logger.warning("skipping unreadable decision record %s", path)
        return out

    def _remove_stale_staging(self) -> None:
        """Staging folders of processes that died mid-copy (``.staging-<pid>-<id>``, by this module only)."""
        for path in self.root.glob(f"{STAGING_PREFIX}*"):
            match = re.fullmatch(rf"{re.escape(STAGING_PREFIX)}(\d+)-[0-9a-f]{{8}}", path.name)
            if match and path.is_dir() and not process_alive(int(match.group(1))):
                shutil.rmtree(path, ignore_errors=True)


def process_alive(pid: int) -> bool:
    """Whether a process of this id runs (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class S3Store(Store):
    """A store under an S3 prefix; sets are read through a local cache that several processes share safely."""

    def __init__(self, uri: str, cache_dir: Path = Path(".model-cache"), client: Any | None = None) -> None:
        self.bucket, self.prefix = split_s3_uri(uri.rstrip("/") + "/")
        self.location = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.cache_dir = Path(cache_dir)
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = s3_client()
        return self._client

    def _get(self, key: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise DataSourceError(f"cannot read s3://{self.bucket}/{key}: {err}") from err
        except BotoCoreError as err:
            raise DataSourceError(f"cannot read s3://{self.bucket}/{key}: {err}") from err

    def _put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        except (BotoCoreError, ClientError) as err:
            raise DataSourceError(f"cannot write s3://{self.bucket}/{key}: {err}") from err

    def _list(self, prefix: str, delimiter: str | None = None) -> tuple[list[str], list[str]]:
        from botocore.exceptions import BotoCoreError, ClientError

        keys: list[str] = []
        folders: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs):
                keys += [o["Key"] for o in page.get("Contents", [])]
                folders += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        except (BotoCoreError, ClientError) as err:
            raise DataSourceError(f"cannot list s3://{self.bucket}/{prefix}: {err}") from err
        return keys, folders

    def read_pointer_bytes(self) -> bytes | None:
        return self._get(self.prefix + POINTER_NAME)

    def write_pointer(self, pointer: Pointer) -> None:
        self._put(self.prefix + POINTER_NAME, pointer.to_bytes(), "application/json")

    def restore_pointer(self, data: bytes | None) -> None:
        if data is None:
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + POINTER_NAME)
        else:
            self._put(self.prefix + POINTER_NAME, data, "application/json")

    def versions(self) -> list[str]:
        _, folders = self._list(self.prefix, delimiter="/")
        names = [f[len(self.prefix) :].rstrip("/") for f in folders]
        return sorted(
            n for n in names if VERSION_PATTERN.fullmatch(n) and self._get(f"{self.prefix}{n}/{MANIFEST_NAME}") is not None
        )

    def add_set(self, directory: Path) -> str:
        manifest = read_manifest(directory)
        version = check_version(manifest.get("model_version"))
        for name in set_files(directory):  # the manifest goes last
            self._put(f"{self.prefix}{version}/{name}", (directory / name).read_bytes())
        return version

    def set_dir(self, version: str) -> Path:
        """Download into ``<cache>/<version>`` through a private staging folder, renamed into place.

        Several workers may do this at once: each downloads into its own folder; the first rename wins and
        the others use the winner's folder (checked by the caller like any set). Nothing another process may
        be reading is ever deleted; a cached folder that fails its checks is moved aside first.
        """
        version = check_version(version)
        target = self.cache_dir / version
        if (target / MANIFEST_NAME).is_file():
            try:
                verify_files(target, read_manifest(target))
                return target
            except ArtifactError as err:
                aside = self.cache_dir / f"{STAGING_PREFIX}bad-{version}-{uuid.uuid4().hex[:8]}"
                logger.warning("cached set %s failed its check (%s); downloading it again", target, err)
                os.rename(target, aside)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        staging = self.cache_dir / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            manifest_bytes = self._get(f"{self.prefix}{version}/{MANIFEST_NAME}")
            if manifest_bytes is None:
                raise StoreError(f"{self.location} has no model version {version}")
            atomic_write_bytes(staging / MANIFEST_NAME, manifest_bytes)
            signature = self._get(f"{self.prefix}{version}/{SIGNATURE_NAME}")
            if signature is not None:
                atomic_write_bytes(staging / SIGNATURE_NAME, signature)
            for name in set_files(staging):
                if name in (MANIFEST_NAME, SIGNATURE_NAME):
                    continue
                data = self._get(f"{self.prefix}{version}/{name}")
                if data is None:
                    raise StoreError(f"{self.location}/{version}/{name} is listed in the manifest but missing")
                atomic_write_bytes(staging / name, data)
            verify_files(staging, read_manifest(staging))  # a damaged download never takes the version's name
            try:
                os.rename(staging, target)
            except OSError:
                if not (target / MANIFEST_NAME).is_file():
                    raise
                logger.info("another process cached %s first; using its copy", version)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return target

    def delete_version(self, version: str) -> None:
        keys, _ = self._list(f"{self.prefix}{check_version(version)}/")
        for key in sorted(keys, key=lambda k: k.endswith(MANIFEST_NAME), reverse=True):  # manifest first
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def write_decision(self, record: Mapping[str, Any]) -> None:
        self._put(
            f"{self.prefix}{DECISIONS}/{_decision_name(record)}",
            (json.dumps(dict(record), indent=2) + "\n").encode("utf-8"),
            "application/json",
        )

    def decisions(self, limit: int | None = None) -> list[dict[str, Any]]:
        keys, _ = self._list(f"{self.prefix}{DECISIONS}/")
        out = []
        for key in sorted(keys)[-(limit or 0) :]:
            data = self._get(key)
            try:
                out.append(json.loads(data or b""))
            except ValueError:
                logger.warning("skipping unreadable decision record s3://%s/%s", self.bucket, key)
        return out


def open_store(location: str | Path, cache_dir: Path = Path(".model-cache"), client: Any | None = None) -> Store:
    """``s3://bucket/prefix`` -> S3Store; anything else is a local folder."""
    text = str(location)
    if is_s3(text):
        return S3Store(text, cache_dir=cache_dir, client=client)
    return LocalStore(Path(text))
