"""Publish an artifact set to S3, and load the published champion back, verified.

    python -m src.pipeline.publish --artifacts-dir artifacts --to s3://bucket/prefix

Layout: ``prefix/<model_version>/<file>`` for every file the manifest lists, then ``manifest.json``, then the
pointer ``prefix/champion.json`` replaced last (one PUT: readers see the old or the new set, never half of
one). boto3 honours ``AWS_ENDPOINT_URL`` for S3-compatible stores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from src.config import configure_logging
from src.pipeline.predict_pipeline import PredictPipeline
from src.storage import (
    MANIFEST_NAME,
    ArtifactError,
    DataSourceError,
    atomic_write_bytes,
    read_manifest,
    s3_client,
    sha256_bytes,
    sha256_file,
    split_s3_uri,
    verify_files,
)

POINTER = "champion.json"


def publish(artifacts_dir: Path, destination: str, client: Any | None = None) -> dict[str, Any]:
    """Upload the verified set under ``prefix/<model_version>/``, then replace the pointer."""
    manifest = read_manifest(artifacts_dir)
    verify_files(artifacts_dir, manifest)
    bucket, prefix = _bucket_prefix(destination)
    client = client or s3_client()
    version = manifest["model_version"]
    base = f"{prefix}{version}/"
    for name, entry in sorted(manifest["files"].items()):
        client.upload_file(str(artifacts_dir / name), bucket, base + name,
                           ExtraArgs={"Metadata": {"sha256": entry["sha256"]}})
    client.upload_file(str(artifacts_dir / MANIFEST_NAME), bucket, base + MANIFEST_NAME)
    pointer = {
        "model_version": version,
        "prefix": base,
        "manifest_sha256": sha256_file(artifacts_dir / MANIFEST_NAME),
        "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    client.put_object(Bucket=bucket, Key=prefix + POINTER, Body=json.dumps(pointer).encode("utf-8"),
                      ContentType="application/json")
    return pointer


def load_from_uri(uri: str, cache_dir: Path, client: Any | None = None) -> PredictPipeline:
    """Download the champion set named by ``uri/champion.json`` into the cache, verify every sha256, load."""
    client = client or s3_client()
    bucket, _ = _bucket_prefix(uri)
    pointer = _read_pointer(uri, client)
    version, base = str(pointer["model_version"]), str(pointer["prefix"])
    if Path(version).name != version:
        raise ArtifactError(f"{uri}/{POINTER} names an unsafe model version {version!r}")
    target = cache_dir / version
    if not (target / MANIFEST_NAME).is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=cache_dir))
        try:
            manifest_bytes = _get(client, bucket, base + MANIFEST_NAME)
            if sha256_bytes(manifest_bytes) != pointer.get("manifest_sha256"):
                raise ArtifactError(f"{base}{MANIFEST_NAME} does not match the sha256 in {POINTER}")
            atomic_write_bytes(staging / MANIFEST_NAME, manifest_bytes)
            manifest = read_manifest(staging)
            for name in manifest["files"]:
                if Path(name).name != name:
                    raise ArtifactError(f"manifest lists a file outside its folder: {name!r}")
                atomic_write_bytes(staging / name, _get(client, bucket, base + name))
            verify_files(staging, manifest)
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return PredictPipeline.from_artifacts(target)


def published_version(uri: str, client: Any | None = None) -> str:
    """The model version the pointer names now (cheap: one small GET)."""
    return str(_read_pointer(uri, client or s3_client())["model_version"])


def _read_pointer(uri: str, client: Any) -> dict[str, Any]:
    bucket, prefix = _bucket_prefix(uri)
    try:
        pointer = json.loads(_get(client, bucket, prefix + POINTER))
        for key in ("model_version", "prefix"):
            if not isinstance(pointer[key], str):
                raise TypeError(f"{key} is not a string")
    except (ValueError, KeyError, TypeError) as err:
        raise ArtifactError(f"{uri}/{POINTER} is not a valid pointer: {err}") from err
    return pointer


def _get(client: Any, bucket: str, key: str) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (BotoCoreError, ClientError) as err:
        raise DataSourceError(f"cannot read s3://{bucket}/{key}: {err}") from err


def _bucket_prefix(uri: str) -> tuple[str, str]:
    return split_s3_uri(uri.rstrip("/") + "/")


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.pipeline.publish", description=__doc__.split("\n")[0])
    parser.add_argument("--artifacts-dir", type=Path, default=Path("artifacts"))
    parser.add_argument("--to", required=True, help="s3://bucket/prefix")
    args = parser.parse_args(argv)
    configure_logging("INFO")
    out = out or sys.stdout
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        pointer = publish(args.artifacts_dir, args.to)
    except (ArtifactError, DataSourceError, BotoCoreError, ClientError) as err:
        out.write(f"publish failed: {err}\n")
        return 1
    out.write(f"published {pointer['model_version']} to {args.to.rstrip('/')}/{pointer['model_version']}/ "
              f"and pointed {args.to.rstrip('/')}/{POINTER} at it\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
