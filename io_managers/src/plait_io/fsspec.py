"""``FsspecIOManager``: step outputs as objects on any fsspec URL (local, memory, S3).

This is the one place plait touches fsspec. The manager holds only plain configuration
``(base_url, storage_options, serializer)``; each process builds its filesystem from
that with ``fsspec.core.url_to_fs`` on first use, so the manager pickles small and never
carries a filesystem (whose sockets, threads and event loops do not survive pickling or
``fork``).

Layout, one object per output::

    {base_url}/{run_id}/{step_key}/{output_name}[/{mapping_key}]
    {base_url}/{run_id}/{step_key}/retry-{n}/{output_name}[/{mapping_key}]   (attempt n > 0)

Each segment is kept readable: letters, digits, ``_``, ``-`` and ``.`` stay as they are,
``[``/``]`` (mapped step keys such as ``op[key]``) become ``(``/``)``, and anything
else, a leading ``.`` included, is percent-encoded. Names starting with ``.`` are thus
left to temp files and probes, which can never be mistaken for an output.

Subclasses change only how an object is encoded and decoded, through two hooks
(``_encode`` and ``_decode_foreign``, see ``FsspecIOManager``); ``plait_pandas``'s
``ParquetIOManager`` is one.
"""

from __future__ import annotations

import os
import re
import string
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from fsspec import AbstractFileSystem
from fsspec.core import split_protocol, url_to_fs

from plait_io._atomic import write_atomic
from plait_io._base import InputContext, IOManager, OutputContext, StoredOutput
from plait_io._errors import OutputNotFoundError, StorageUnavailableError
from plait_io._fetch import Fetched, fetch_stored
from plait_io._serializers import ForeignObjectError, get_serializer, write_object

__all__ = ["Encoding", "FsspecIOManager"]

_KEEP = frozenset(string.ascii_letters + string.digits + "_-.")
_SWAP = {"[": "(", "]": ")"}
_BRACKETS = str.maketrans(_SWAP)
_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9_\-\[\]][A-Za-z0-9_.\-\[\]]*")
_SECRET_OPTION = re.compile(
    r"key|secret|token|passw|pwd|credential|auth|signature|sas|connection_string", re.I
)
_URL_USERINFO = re.compile(r"(://)[^/@]*@")
_MASK = "***"


@dataclass(slots=True)
class Encoding:
    """How one output is written: what ``FsspecIOManager._encode`` returns.

    ``write`` writes the whole stored object into an open binary file; it runs inside the
    atomic write, so whatever it raises, nothing is stored. ``serializer`` names the format
    in ``StoredOutput.metadata`` and in errors; ``metadata`` adds fields to the former
    (the ``STEP_OUTPUT`` event), e.g. a frame's row count. (Not frozen: one is made per
    stored output, and a frozen dataclass takes four times as long to build.)
    """

    serializer: str
    write: Callable[[BinaryIO], None]
    metadata: Mapping[str, Any] | None = None


class FsspecIOManager(IOManager):
    """Stores each output as one object under ``base_url``, atomically.

    ``base_url`` is any fsspec URL or a local path (made absolute here, so every worker on
    this machine agrees on it). ``storage_options`` go to the filesystem, e.g. s3fs's
    ``key``/``secret``/``client_kwargs``; leave credentials out to use the environment or
    AWS profile. ``serializer`` is the default (``cloudpickle``, ``pickle``, ``json`` or
    ``bytes``); an output overrides it with ``Out(metadata={"serializer": "json"})``.

    Subclass contract: a subclass changes *how objects are encoded and decoded*, nothing
    else, by overriding one or both of these hooks:

    - ``_encode(context, obj) -> Encoding``: how to write one output, decided per object;
      the default picks the serializer (the output's, else ``serializer``) and writes
      plait-io's header and payload. Errors raised here (an object the format cannot
      hold) come before storage is touched. Return ``super()._encode(...)`` for objects
      the subclass leaves to the default.
    - ``_decode_foreign(file, url)``: load a stored object that does not start with a
      plait-io header (e.g. a plain Parquet file, recognised by its own magic bytes).
      ``file`` is readable and seekable, at the object's start: the local file, or the
      object's bytes (``io.BytesIO``) fetched in the same single read. Call
      ``super()._decode_foreign(file, url)`` for objects the subclass does not know
      either: it raises the error for an object not written by this manager.

    ``FsspecIOManager`` keeps the rest, for every object: the layout and locations
    (``location_for``, ``load_location``, ``has_output``), atomic writes, the note on a
    store error, ``OutputNotFoundError`` naming the upstream output, preflight, secret
    masking, and loading objects with a plait-io header (copy-free, one GET on S3). A
    subclass with more settings extends ``__getstate__``/``__setstate__``.
    """

    process_local: ClassVar[bool] = False
    _decodes_foreign: ClassVar[bool] = False
    """Whether this class overrides ``_decode_foreign`` (set per subclass)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._decodes_foreign = cls._decode_foreign is not FsspecIOManager._decode_foreign

    def __init__(
        self,
        base_url: str | os.PathLike[str],
        storage_options: Mapping[str, Any] | None = None,
        serializer: str = "cloudpickle",
    ) -> None:
        get_serializer(serializer)  # fail at configuration time, not in the first step
        self.base_url = _normalize_base_url(base_url)
        self.storage_options = dict(storage_options or {})
        self.serializer = serializer
        self._reset()

    def _reset(self) -> None:
        self._url = _redact_url(self.base_url)  # what locations and messages show
        self._fs: AbstractFileSystem | None = None
        self._base_path = ""
        self._fs_pid = -1

    # -- pickling: configuration only -------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "storage_options": self.storage_options,
            "serializer": self.serializer,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.base_url = state["base_url"]
        self.storage_options = state["storage_options"]
        self.serializer = state["serializer"]
        self._reset()

    # -- what may be logged: never secrets --------------------------------------------

    def __repr__(self) -> str:
        args = [repr(self._url)]
        if self.storage_options:
            args.append(f"storage_options={_mask_secrets(self.storage_options)!r}")
        args.append(f"serializer={self.serializer!r}")
        return f"{type(self).__name__}({', '.join(args)})"

    def describe(self) -> str:
        return f"{type(self).__name__}({self._url})"

    # -- the IOManager contract -------------------------------------------------------

    def handle_output(self, context: OutputContext, obj: Any) -> StoredOutput:
        encoding = self._encode(context, obj)
        fs, base_path = self._filesystem()
        relative = _output_path(context)
        location = f"{self._url}/{relative}"
        try:
            size = write_atomic(fs, f"{base_path}/{relative}", encoding.write)
        except Exception as exc:
            exc.add_note(
                f"while storing output {context.output_name!r} of step "
                f"{context.step_key!r} at {location} with serializer {encoding.serializer!r}"
            )
            raise
        metadata = {"serializer": encoding.serializer}
        if encoding.metadata:
            metadata.update(encoding.metadata)
        return StoredOutput(location=location, size=size, metadata=metadata)

    def load_input(self, context: InputContext) -> Any:
        up = context.upstream_output
        if context.location:
            fs, path, url = self._resolve(context.location)
        else:
            fs, base_path = self._filesystem()
            relative = _output_path(up)
            path, url = f"{base_path}/{relative}", f"{self._url}/{relative}"
        try:
            fetched = self._fetch(fs, path, url)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise OutputNotFoundError(
                url, up.step_key, up.output_name, up.run_id, up.mapping_key
            ) from exc
        return fetched.load()

    def preflight(self) -> None:
        """Write and delete a small probe under the base URL; raise if either fails."""
        url = self._url
        try:
            fs, base_path = self._filesystem()
            probe = f"{base_path}/.plait-preflight-{uuid.uuid4().hex}"
            write_atomic(fs, probe, lambda f: f.write(b"plait-io preflight probe\n"))
            fs.rm_file(probe)
        except Exception as exc:
            cause, hint = _explain(exc)
            raise StorageUnavailableError(url, cause, hint) from exc

    # -- helpers for people and tools -------------------------------------------------

    def load_location(self, location: str) -> Any:
        """Load an object by the location ``handle_output`` reported (for inspection)."""
        fs, path, url = self._resolve(location)
        return self._fetch(fs, path, url).load()

    def has_output(self, context: OutputContext) -> bool:
        fs, base_path = self._filesystem()
        return bool(fs.isfile(f"{base_path}/{_output_path(context)}"))

    def location_for(self, context: OutputContext) -> str:
        """The URL an output is (or would be) stored at."""
        return f"{self._url}/{_output_path(context)}"

    # -- hooks for subclasses: encoding and decoding only ------------------------------

    def _encode(self, context: OutputContext, obj: Any) -> Encoding:
        """How to write ``obj``: the output's serializer, else the default, after a
        plait-io header line naming it (so the loader needs no other record)."""
        name = context.metadata.get("serializer") or self.serializer
        serializer = get_serializer(name)
        return Encoding(name, lambda f: write_object(f, serializer, obj))

    def _decode_foreign(self, file: BinaryIO, url: str) -> Any:
        """Load an object without a plait-io header; this manager wrote none, so refuse it."""
        raise ForeignObjectError(url, file.read(32))

    def _fetch(self, fs: AbstractFileSystem, path: str, url: str) -> Fetched:
        # Without an override, a foreign object fails inside the read, as soon as seen.
        return fetch_stored(fs, path, url, self._decode_foreign if self._decodes_foreign else None)

    # -- filesystems, built lazily per process ----------------------------------------

    def _filesystem(self) -> tuple[AbstractFileSystem, str]:
        # After fork the parent's filesystem (event loop thread, sockets) is unusable.
        if self._fs is None or self._fs_pid != os.getpid():
            fs, path = url_to_fs(self.base_url, **self.storage_options)
            self._fs, self._base_path, self._fs_pid = fs, path.rstrip("/"), os.getpid()
        assert self._fs is not None
        return self._fs, self._base_path

    def _resolve(self, location: str) -> tuple[AbstractFileSystem, str, str]:
        """Filesystem, path and printable URL for a stored location."""
        if location.startswith(self._url + "/"):
            fs, base_path = self._filesystem()
            return fs, f"{base_path}/{location[len(self._url) + 1 :]}", location
        same_protocol = split_protocol(location)[0] == split_protocol(self.base_url)[0]
        fs, path = url_to_fs(location, **(self.storage_options if same_protocol else {}))
        return fs, path, _redact_url(location)


def _output_path(context: OutputContext) -> str:
    """``{run_id}/{step_key}/{output_name}[/{mapping_key}]`` with safe, readable segments;
    a retry stores under ``{run_id}/{step_key}/retry-{n}/...``, apart from the attempts
    before it, so that an abandoned attempt finishing late cannot overwrite it."""
    parts = [_segment(context.run_id, "run_id"), _segment(context.step_key, "step_key")]
    if context.attempt:
        parts.append(f"retry-{int(context.attempt)}")
    parts.append(_segment(context.output_name, "output_name"))
    if context.mapping_key is not None:
        parts.append(_segment(context.mapping_key, "mapping_key"))
    return "/".join(parts)


def _segment(value: str, what: str) -> str:
    if _PLAIN_SEGMENT.fullmatch(value):  # the usual case: identifiers, uuids, op[key]
        return value.translate(_BRACKETS)
    if not value:
        raise ValueError(
            f"{what} must be a non-empty string to name a stored output, got {value!r}"
        )
    out = []
    for i, ch in enumerate(value):
        if ch in _KEEP and not (i == 0 and ch == "."):
            out.append(ch)
        elif ch in _SWAP:
            out.append(_SWAP[ch])
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


def _normalize_base_url(base_url: str | os.PathLike[str]) -> str:
    url = os.fspath(base_url)
    if "://" not in url and "::" not in url:
        url = "file://" + Path(url).expanduser().absolute().as_posix()
    head, sep, rest = url.rpartition("://")
    return f"{head}{sep}{rest.rstrip('/')}" if rest.strip("/") else url


def _redact_url(url: str) -> str:
    return _URL_USERINFO.sub(r"\1" + _MASK + "@", url)


def _mask_secrets(options: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``options`` with credential-like values replaced by ``***``."""
    masked: dict[str, Any] = {}
    for key, value in options.items():
        if _SECRET_OPTION.search(str(key)):
            masked[key] = _MASK
        elif isinstance(value, Mapping):
            masked[key] = _mask_secrets(value)
        elif isinstance(value, str):
            masked[key] = _redact_url(value)
        else:
            masked[key] = value
    return masked


def _explain(exc: BaseException) -> tuple[str, str]:
    """(cause, what to do) for a failed preflight, from the exception's type and text."""
    detail = f"{type(exc).__name__}: {exc}"
    names = {cls.__name__ for cls in type(exc).__mro__}
    text = str(exc).lower()
    if isinstance(exc, ImportError):
        return (
            f"a package is missing ({detail})",
            "Install the filesystem's package, e.g. pip install 'plait-io[s3]' for s3://",
        )
    if isinstance(exc, ValueError) and "protocol not known" in text:
        return (
            f"unknown URL protocol ({detail})",
            "Use a local path or a URL fsspec knows, e.g. file://, memory:// or s3://",
        )
    if isinstance(exc, FileExistsError | NotADirectoryError):
        return (
            f"a file is in the way where a directory should be ({detail})",
            "Point the IO manager at a directory, or move the file away",
        )
    if isinstance(exc, PermissionError) or "accessdenied" in text or "access denied" in text:
        return (
            f"access denied ({detail})",
            "Check the credentials (environment, AWS profile or storage_options) and "
            "that they may write under this URL",
        )
    if isinstance(exc, FileNotFoundError) or "nosuchbucket" in text:
        return (
            f"no such bucket or directory ({detail})",
            "Create the bucket (or parent directory) first, or fix the base URL",
        )
    if (
        isinstance(exc, ConnectionError | TimeoutError)
        or names & {"EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError"}
        or "could not connect" in text
        or "connection refused" in text
    ):
        return (
            f"connection refused or no network ({detail})",
            "Check the endpoint URL, that the storage service is running, and the network",
        )
    return detail, "Check the base URL and storage_options"
