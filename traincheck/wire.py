"""Serialization at the socket edge: ``encode_batch`` / ``decode_batch``.

Batches travel as msgpack (via msgspec) and are decoded against the typed schema
in :mod:`traincheck.events`; nothing on the wire is ever unpickled or evaluated.
A message is checked for size and schema version before it is fully decoded, so
a peer speaking another version gets a clear reason instead of a type error.
"""

from __future__ import annotations

import msgspec

from traincheck.events import SCHEMA_VERSION, Batch

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest batch the sidecar accepts; anything bigger is rejected unread."""


class WireError(ValueError):
    """A message that is not a valid batch of this schema version."""


class _BatchHeader(msgspec.Struct, array_like=True):
    schema_version: int
    run_id: str


_encoder = msgspec.msgpack.Encoder()
_header_decoder = msgspec.msgpack.Decoder(_BatchHeader)
_batch_decoder = msgspec.msgpack.Decoder(Batch)


def encode_batch(batch: Batch) -> bytes:
    """Encode a batch for the socket (and, unchanged, for the trace store)."""
    return _encoder.encode(batch)


def decode_batch(data: bytes | memoryview, *, expected_run_id: str | None = None) -> Batch:
    """Decode and validate one message; raise :class:`WireError` with the reason."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {len(data)} bytes exceeds the {MAX_MESSAGE_BYTES} limit")
    try:
        header = _header_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise WireError(f"not a traincheck batch: {exc}") from None
    if header.schema_version != SCHEMA_VERSION:
        raise WireError(
            f"schema version {header.schema_version} is not supported (expected {SCHEMA_VERSION})"
        )
    if expected_run_id is not None and header.run_id != expected_run_id:
        raise WireError(f"batch from run {header.run_id!r}, expected {expected_run_id!r}")
    try:
        return _batch_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise WireError(f"malformed batch: {exc}") from None
