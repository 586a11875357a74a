"""Reading data from a path, an http(s) URL or S3; atomic writes; the artifact manifest.

The manifest (``manifest.json``) is the only contract between training and serving. It is written last,
so its presence commits a complete artifact set; a reader loads only files it lists whose sha256 matches.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
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
    scheme = urlparse(source).scheme
    try:
        if scheme in ("http", "https"):
            with urllib.request.urlopen(source, timeout=URL_TIMEOUT_SECONDS) as response:  # noqa: S310
                return response.read()
        if scheme == "s3":
            bucket, key = split_s3_uri(source)
            return s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
        return Path(source).read_bytes()
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
