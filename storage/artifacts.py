"""Artifact store: S3 (boto3, any endpoint) or a local directory, behind one small interface.

Objects are content-addressed: the key ends in the sha256 of the bytes, the caller keeps the
digest next to the URI (model_versions.sha256, nowcast_snapshots.archive_sha256), and `get`
refuses bytes whose digest does not match. That is what makes loading a joblib artifact safe.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse
from urllib.request import url2pathname

from fairvalue.settings import Settings, get_settings


class ArtifactError(RuntimeError):
    """The store could not write or read an object (down, full, forbidden)."""


class IntegrityError(ArtifactError):
    """The bytes read back do not match the recorded sha256."""


class ArtifactMissing(ArtifactError):
    """The store answered that no object is at the URI: the artifact is gone, not the store down."""


# What S3 answers for a key that does not exist (GetObject; 404 to a HEAD). Without s3:ListBucket it
# answers AccessDenied instead, as for any permission fault: that one is not counted as missing.
S3_MISSING_KEY_CODES = ("NoSuchKey", "404")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class StoredObject:
    uri: str
    sha256: str
    size: int


class ArtifactStore(Protocol):
    def put(self, name: str, data: bytes) -> StoredObject: ...

    def get(self, uri: str, sha256: str) -> bytes: ...

    def newest(self, name: str) -> list[StoredObject]: ...

    def check(self) -> None: ...


def content_key(name: str, digest: str) -> str:
    """`models/cryptopunks/v3.joblib` → `models/cryptopunks/v3-<sha256>.joblib`."""
    folder, slash, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return f"{folder}{slash}{stem}-{digest}{dot}{ext}"


def digest_in_key(name: str, key: str) -> str | None:
    """The sha256 in `key` when it is one of `name`'s content keys (content_key), else None."""
    head, tail = content_key(name, "\0").split("\0")
    digest = key[len(head):len(key) - len(tail)] if key.startswith(head) and key.endswith(tail) else ""
    return digest if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest) else None


def verify(data: bytes, sha256: str, uri: str) -> bytes:
    actual = sha256_hex(data)
    if actual != sha256:
        raise IntegrityError(f"sha256 mismatch for {uri}: expected {sha256}, got {actual}")
    return data


class LocalStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def put(self, name: str, data: bytes) -> StoredObject:
        digest = sha256_hex(data)
        path = self.root / content_key(name, digest)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                # Write then rename, so a reader never sees half an object; a failed write
                # (disk full, quota) removes its temporary file.
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
                try:
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(data)
                        fh.flush()
                        os.fsync(fh.fileno())
                    os.replace(tmp, path)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
        except OSError as exc:
            raise ArtifactError(f"cannot write artifact {path}: {exc.strerror or exc}") from exc
        return StoredObject(uri=path.resolve().as_uri(), sha256=digest, size=len(data))

    def get(self, uri: str, sha256: str) -> bytes:
        path = Path(url2pathname(urlparse(uri).path))  # as_uri() percent-encoded it ("my%20artifacts")
        try:
            data = path.read_bytes()
        except OSError as exc:
            error = ArtifactMissing if isinstance(exc, FileNotFoundError) else ArtifactError
            raise error(f"cannot read artifact {uri}: {exc.strerror or exc}") from exc
        return verify(data, sha256, uri)

    def check(self) -> None:
        """Nothing to check ahead: `put` makes the folders it needs."""

    def newest(self, name: str) -> list[StoredObject]:
        """The objects put under `name` (any content) last: how a caller finds what it kept by
        name when it no longer holds the uri. One, or those of one modification time; [] if none."""
        folder = self.root / name.rpartition("/")[0]
        try:
            found = [(p.stat().st_mtime_ns, p, digest) for p in folder.glob("*")
                     if (digest := digest_in_key(name, p.relative_to(self.root).as_posix()))]
        except OSError as exc:
            raise ArtifactError(f"cannot list artifacts in {folder}: {exc.strerror or exc}") from exc
        last = max((mtime for mtime, _, _ in found), default=None)
        return [StoredObject(uri=path.resolve().as_uri(), sha256=digest, size=path.stat().st_size)
                for mtime, path, digest in sorted(found) if mtime == last]


@dataclass(frozen=True)
class S3Budget:
    """How long one S3 call may wait: botocore's timeouts (each one a single connect or socket
    read, not the whole call) and its attempts in all (the first one included)."""

    connect_timeout: float
    read_timeout: float
    attempts: int


def s3_budget(settings: Settings, short: bool = False) -> S3Budget:
    """The patient budget (FAIRVALUE_S3_CONNECT/READ_TIMEOUT_SECONDS, _MAX_ATTEMPTS), or the short
    one (FAIRVALUE_S3_SHORT_*) of a caller that has a fallback and must not wait on a hung store."""
    if short:
        return S3Budget(settings.s3_short_timeout_seconds, settings.s3_short_timeout_seconds,
                        settings.s3_short_max_attempts)
    return S3Budget(settings.s3_connect_timeout_seconds, settings.s3_read_timeout_seconds, settings.s3_max_attempts)


# One S3 client per endpoint, region and budget in each process: a client took 10-45 ms to make
# (bench/nowcast.py), most stores live for one call, and boto3's clients are thread-safe (making
# them from its default session is not, hence the lock). They are not fork-safe: a forked child
# (a prefork worker's pool process) starts with none, and with a lock of its own.
_s3_clients: dict[tuple, Any] = {}
_s3_clients_lock = threading.Lock()


def _forget_s3_clients() -> None:
    global _s3_clients_lock
    _s3_clients.clear()
    _s3_clients_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_s3_clients)


def s3_client(endpoint_url: str | None, region: str, budget: S3Budget):
    import boto3
    from botocore.config import Config

    key = (endpoint_url, region, budget)
    with _s3_clients_lock:
        if key not in _s3_clients:
            _s3_clients[key] = boto3.client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                # Keep-alive probes: a pooled connection idle between nowcasts and dropped by a NAT
                # is found dead, rather than waited on for the read timeout.
                config=Config(retries={"total_max_attempts": budget.attempts, "mode": "standard"},
                              connect_timeout=budget.connect_timeout, read_timeout=budget.read_timeout,
                              tcp_keepalive=True),
            )
        return _s3_clients[key]


class S3Store:
    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None, region: str, budget: S3Budget):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = s3_client(endpoint_url, region, budget)

    def _key(self, name: str, digest: str) -> str:
        key = content_key(name, digest)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, name: str, data: bytes) -> StoredObject:
        from botocore.exceptions import BotoCoreError, ClientError

        digest = sha256_hex(data)
        key = self._key(name, digest)
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=data, Metadata={"sha256": digest}
            )
        except (BotoCoreError, ClientError) as exc:
            raise ArtifactError(f"cannot write s3://{self.bucket}/{key}: {exc}") from exc
        return StoredObject(uri=f"s3://{self.bucket}/{key}", sha256=digest, size=len(data))

    def get(self, uri: str, sha256: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        parsed = urlparse(uri)
        try:
            body = self.client.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"]
            data = body.read()
        except (BotoCoreError, ClientError) as exc:
            code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None
            error = ArtifactMissing if code in S3_MISSING_KEY_CODES else ArtifactError
            raise error(f"cannot read {uri}: {exc}") from exc
        return verify(data, sha256, uri)

    def newest(self, name: str) -> list[StoredObject]:
        """The objects put under `name` (any content) last, by LastModified (one LIST call): one,
        or several put within the same second, S3's resolution; [] if none."""
        from botocore.exceptions import BotoCoreError, ClientError

        head = self._key(name, "\0").split("\0")[0]
        try:
            listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=head).get("Contents", [])
        except (BotoCoreError, ClientError) as exc:
            raise ArtifactError(f"cannot list s3://{self.bucket}/{head}: {exc}") from exc
        skip = len(self.prefix) + 1 if self.prefix else 0  # the keys as content_key made them
        found = [(obj["LastModified"], obj["Key"], obj["Size"], digest) for obj in listed
                 if (digest := digest_in_key(name, obj["Key"][skip:]))]
        last = max((modified for modified, *_ in found), default=None)
        return [StoredObject(uri=f"s3://{self.bucket}/{key}", sha256=digest, size=size)
                for modified, key, size, digest in sorted(found) if modified == last]

    def check(self) -> None:
        """ArtifactError when the bucket does not exist, before the work whose result would go
        there (a training's minutes). Only that is judged: HeadBucket needs s3:ListBucket, which
        the store does not otherwise need, so a 403 (or any other answer) is left to `put`."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
                raise ArtifactError(f"the bucket {self.bucket!r} of FAIRVALUE_ARTIFACTS_URL does not exist "
                                    f"at {self.client.meta.endpoint_url}: create it first") from None
        except BotoCoreError as exc:
            raise ArtifactError(f"cannot reach the artifact store s3://{self.bucket}: {exc}") from exc

    def ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)


def store_from_url(url: str, endpoint_url: str | None = None, region: str = "us-east-1",
                   budget: S3Budget | None = None) -> ArtifactStore:
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        return S3Store(parsed.netloc, parsed.path, endpoint_url, region, budget or s3_budget(get_settings()))
    if parsed.scheme == "file":
        return LocalStore(Path(parsed.path))
    if parsed.scheme in ("", None) or len(parsed.scheme) == 1:  # a path (or a Windows drive)
        return LocalStore(Path(url))
    raise ValueError(f"unsupported artifacts URL {url!r}: use s3://bucket/prefix or a directory")


def get_store(settings: Settings | None = None, short_budget: bool = False) -> ArtifactStore:
    """The artifact store. `short_budget`: S3 calls give up after the short budget (s3_budget),
    for a call whose failure is recorded and retried later, like the nowcast's archive."""
    s = settings or get_settings()
    return store_from_url(s.resolved_artifacts_url(), s.s3_endpoint_url, s.s3_region, s3_budget(s, short_budget))
