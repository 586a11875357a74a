"""Reading data from a path, an http(s) URL or S3; files by address (``place``); atomic writes; the artifact manifest.

The manifest (``manifest.json``) is the only contract between training and serving. It is written last,
so its presence commits a complete artifact set; a reader loads only files it lists whose sha256 matches.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import tempfile
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

import pandas as pd

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
URL_TIMEOUT_SECONDS = 30


class ArtifactError(RuntimeError):
    """An artifact set is missing, incomplete, tampered with, or made by incompatible software."""


class DataSourceError(RuntimeError):
    """A data source could not be read."""


def read_source_bytes(source: str) -> bytes:
    """Return the bytes behind a local path, an ``http(s)://`` URL or an ``s3://bucket/key`` address.

    S3 goes through boto3, so the standard AWS settings apply, ``AWS_ENDPOINT_URL`` included.
    """
    try:
        if urlparse(source).scheme in ("http", "https"):
            with urllib.request.urlopen(source, timeout=URL_TIMEOUT_SECONDS) as response:  # noqa: S310
                return response.read()
        with place(source).open() as handle:
            return handle.read()
    except DataSourceError:
        raise
    except Exception as err:  # the boundary: every transport's failure becomes one clear message
        raise DataSourceError(f"cannot read {source}: {err}") from err


def read_csv_text(data: bytes, source: str) -> pd.DataFrame:
    """Parse CSV bytes keeping every value as text, so that validation sees exactly what was given."""
    try:
        return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, skipinitialspace=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataSourceError(f"{source} is not a readable CSV file: {err}") from err


S3_SCHEME = "s3://"
HEADER_BYTES = 65536  # where a CSV file's header line must end


def is_s3(address: str) -> bool:
    """Whether ``address`` names S3 (``s3://bucket/key``) rather than the local disk: the one test of it."""
    return address.startswith(S3_SCHEME)


class Place(ABC):
    """Files by address: a local file or folder, or an S3 object or prefix. ``place(address)`` gives the right
    kind, so that readers and writers list, open and put without asking which it is. Every failure of the
    transport is a DataSourceError naming the address."""

    def __init__(self, address: str) -> None:
        self.address = address

    @property
    def local_path(self) -> Path | None:
        """The local file or folder, for readers that want a path (None for S3)."""
        return None

    def join(self, *names: str) -> str:
        """The address of ``names`` under this one."""
        return "/".join((self.address.rstrip("/"), *names))

    def csv_files(self) -> list[str]:
        """The CSV files the address names, in name order: itself when it is one file, else the ``.csv`` files in
        the folder or under the prefix; DataSourceError when there is none."""
        found = self._csv_files()
        if not found:
            raise DataSourceError(f"no .csv files in {self.address}")
        return found

    @abstractmethod
    def _csv_files(self) -> list[str]: ...

    @abstractmethod
    def total_bytes(self) -> int | None:
        """The size of ``csv_files`` together (None where knowing it would cost a listing more)."""

    @abstractmethod
    def open(self) -> IO[bytes]:
        """The file or object, read as it goes (never whole); close it (``with``)."""

    def header(self) -> tuple[str, ...]:
        """The column names of a CSV file's first record, which must end within its first ``HEADER_BYTES`` (a BOM
        dropped, bytes that are not UTF-8 replaced); DataSourceError naming the address for an empty file or a
        longer first record."""
        with self.open() as handle:  # only the first HEADER_BYTES are read, from a file or an S3 object's stream
            try:
                start = handle.read(HEADER_BYTES)
            except Exception as err:  # the boundary: a failed read of either kind names the address
                raise DataSourceError(f"cannot read {self.address}: {err}") from err
        if not start:
            raise DataSourceError(f"{self.address} is not a readable CSV file: it is empty")
        if len(start) == HEADER_BYTES and b"\n" not in start and b"\r" not in start:
            raise DataSourceError(f"{self.address}: the header line is longer than {HEADER_BYTES} bytes")
        text = start.decode("utf-8-sig", errors="replace")
        return tuple(next(csv.reader(io.StringIO(text, newline="")), []))

    @abstractmethod
    def holds(self, name: str) -> bool:
        """Whether anything is at ``join(name)`` or under it."""

    @abstractmethod
    def put(self, name: str, data: bytes) -> None:
        """Write ``join(name)`` whole: an S3 object is whole once put; a file is renamed into place."""


class LocalPlace(Place):
    @property
    def local_path(self) -> Path:
        return Path(self.address)

    def _csv_files(self) -> list[str]:
        path = self.local_path
        if path.is_file():
            return [str(path)]
        if not path.is_dir():
            raise DataSourceError(f"{self.address} is neither a CSV file, a folder nor an s3:// prefix")
        return [str(p) for p in sorted(path.glob("*.csv"))]

    def total_bytes(self) -> int | None:
        try:
            return sum(Path(name).stat().st_size for name in self.csv_files())
        except (OSError, DataSourceError):
            return None

    def open(self) -> IO[bytes]:
        try:
            return open(self.address, "rb")  # noqa: SIM115 - the caller closes it
        except OSError as err:
            raise DataSourceError(f"cannot read {self.address}: {err}") from err

    def holds(self, name: str) -> bool:
        return Path(self.join(name)).exists()

    def put(self, name: str, data: bytes) -> None:
        atomic_write_bytes(Path(self.join(name)), data)


class S3Place(Place):
    def _csv_files(self) -> list[str]:
        bucket, prefix = split_s3_uri(self.address)
        try:
            pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            keys = sorted(o["Key"] for page in pages for o in page.get("Contents", ()) if o["Key"].endswith(".csv"))
        except Exception as err:  # the boundary: every S3 failure becomes one clear message
            raise DataSourceError(f"cannot list {self.address}: {err}") from err
        return [f"{S3_SCHEME}{bucket}/{key}" for key in keys]

    def total_bytes(self) -> int | None:
        return None  # the listing is not repeated for a progress figure

    def open(self) -> IO[bytes]:
        try:
            bucket, key = split_s3_uri(self.address)
            return s3_client().get_object(Bucket=bucket, Key=key)["Body"]
        except DataSourceError:
            raise
        except Exception as err:  # the boundary: every S3 failure becomes one clear message
            raise DataSourceError(f"cannot read {self.address}: {err}") from err

    def holds(self, name: str) -> bool:
        bucket, prefix = split_s3_uri(self.address)
        listed = s3_client().list_objects_v2(Bucket=bucket, Prefix=f"{prefix.rstrip('/')}/{name}".lstrip("/"), MaxKeys=1)
        return bool(listed.get("KeyCount", 0))

    def put(self, name: str, data: bytes) -> None:
        bucket, key = split_s3_uri(self.join(name))
        s3_client().put_object(Bucket=bucket, Key=key, Body=data)


def place(address: str) -> Place:
    """The files at ``address``: an ``s3://bucket/key`` address in S3, anything else on the local disk."""
    return S3Place(address) if is_s3(address) else LocalPlace(address)


def split_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise DataSourceError(f"not an s3://bucket/key address: {uri}")
    return parsed.netloc, parsed.path.lstrip("/")


def s3_client() -> Any:
    """A boto3 S3 client; boto3 itself honours AWS_ENDPOINT_URL and the other standard settings."""
    import boto3  # imported here: only S3 users pay for it

    return boto3.client("s3")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600: readable by the serving user too (e.g. the image's non-root user)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise ArtifactError(f"no {MANIFEST_NAME} in {directory}: train a model first")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ArtifactError(f"{path} is not readable JSON: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ArtifactError(f"{path} is not a manifest of format {MANIFEST_FORMAT}")
    if not isinstance(manifest.get("files"), dict) or not manifest["files"]:
        raise ArtifactError(f"{path} lists no files")
    return manifest


def verify_files(directory: Path, manifest: Mapping[str, Any]) -> None:
    """Check that every file the manifest lists exists with the recorded sha256."""
    for name, entry in manifest["files"].items():
        if Path(name).name != name:
            raise ArtifactError(f"manifest lists a file outside its folder: {name!r}")
        path = directory / name
        if not path.is_file():
            raise ArtifactError(f"{name} is listed in the manifest but missing from {directory}")
        actual = sha256_file(path)
        if actual != entry.get("sha256"):
            raise ArtifactError(
                f"{name} does not match its manifest (sha256 {actual[:12]}..., expected "
                f"{str(entry.get('sha256'))[:12]}...): the file was changed after training; refusing to load it"
            )
