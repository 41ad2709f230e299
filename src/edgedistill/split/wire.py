"""The binary wire format between device and edge server: one tensor per message.

Layout (little-endian), version 2::

    offset  size        field
    0       4           magic b"EDSW"
    4       1           version (2; version 1 below is still read)
    5       1           dtype: 1 uint8 (affine-quantized), 2 float16, 3 float32
    6       1           flags: bit 0 per-channel quantization (axis 1); other bits 0
    7       1           codec: 0 none, 1 zlib, 2 zstd, 3 entropy
    8       1           ndim (1..6)
    9       4 * ndim    dims, uint32, each >= 1
    ...     4 * k       scales, float32, 0 < s <= MAX_SCALE (uint8 only; k = 1 or dims[1])
    ...     k           zero points, uint8                  (uint8 only)
    ...     4           payload length in bytes, uint32
    ...     n           payload: the elements in C order, compressed by the codec

Codecs 0-2 carry the elements themselves (raw, or losslessly compressed). Codec 3,
``entropy``, carries a learned entropy bottleneck's bitstreams (``split.entropy``):
dtype float32 (what they decode to), no scales, and a payload of ``dims[0]`` streams,
each a uint32 length then its bytes; only the model that wrote them can decode them,
so ``decode`` returns the streams and the server's entropy model turns them into
values. Version 1 had no codec byte: its flags bits 1-2 held the compression (0 none,
1 zlib, 2 zstd) and ndim sat at offset 7; such messages decode as before.

``len(encode(...))`` is exactly what crosses the network as the request body, so
bytes per sample are counted, not estimated. ``decode`` checks every field and the
total length (no trailing bytes), decompresses with a hard output limit (no
decompression bombs) and raises ``WireError`` naming the first thing wrong; the
server maps its ``status`` to the HTTP answer.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from edgedistill.split.quantize import QTensor, dequantize

MAGIC = b"EDSW"
VERSION = 2
MAX_NDIM = 6
MEDIA_TYPE = "application/vnd.edgedistill.tensor"
DTYPES = {1: np.dtype(np.uint8), 2: np.dtype("<f2"), 3: np.dtype("<f4")}
CODES = {np.dtype(np.uint8): 1, np.dtype(np.float16): 2, np.dtype(np.float32): 3}
COMPRESSIONS = {"none": 0, "zlib": 1, "zstd": 2}
CODECS = {**COMPRESSIONS, "entropy": 3}
MAX_SCALE = float(np.finfo(np.float32).max) / 255  # larger: (q - zp) * scale overflows to inf
_START = struct.Struct("<4sB")  # magic, version: the rest depends on the version
_V1 = struct.Struct("<BBB")  # dtype, flags (per-channel + compression), ndim
_V2 = struct.Struct("<BBBB")  # dtype, flags (per-channel), codec, ndim


class WireError(ValueError):
    """A malformed or unsupported message; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class WireTensor:
    """A decoded message: raw elements and, for uint8, the quantization parameters; or,
    for the entropy codec, the undecoded streams (``data`` None) and their tensor's shape."""

    data: np.ndarray | None
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    per_channel: bool = False
    codec: str = "none"
    streams: list[bytes] | None = None
    version: int = VERSION
    entropy_shape: tuple[int, ...] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.entropy_shape if self.data is None else tuple(self.data.shape)

    def to_float(self) -> np.ndarray:
        """float32 values: dequantized for uint8, converted for float16. Entropy-coded
        streams need their model to decode them (``entropy.EntropyCodec.decode``)."""
        if self.codec == "entropy":
            raise WireError("entropy-coded streams need the bottleneck's entropy model to "
                            "decode them", 415)
        if self.scale is None:
            return self.data.astype(np.float32)
        axis = 1 if self.per_channel else None
        return dequantize(QTensor(self.data, self.scale, self.zero_point, axis))


def _zstd():
    try:
        import zstandard
    except ImportError:
        return None
    return zstandard


def available_compressions() -> list[str]:
    return [c for c in COMPRESSIONS if c != "zstd" or _zstd() is not None]


def _compress(raw: bytes, compression: str, level: int | None) -> bytes:
    if compression == "none":
        return raw
    if compression == "zlib":
        return zlib.compress(raw, 6 if level is None else level)
    zstd = _zstd()
    if zstd is None:
        raise WireError("zstd compression needs the 'zstandard' package (pip install zstandard)",
                        415)
    return zstd.ZstdCompressor(level=3 if level is None else level).compress(raw)


def encode(tensor: QTensor | np.ndarray, compression: str = "none",
           level: int | None = None) -> bytes:
    """One message for a quantized tensor, or a float16/float32 array sent as is.

    ``compression="auto"`` uses zlib only when it makes the payload smaller (tiny
    bottlenecks often do not compress); the codec field records what was used.
    """
    if compression not in (*COMPRESSIONS, "auto"):
        raise WireError(f"unknown compression {compression!r}; choose one of: "
                        f"{', '.join(COMPRESSIONS)}, auto")
    q = tensor if isinstance(tensor, QTensor) else None
    data = np.ascontiguousarray(q.data if q else tensor)
    if data.dtype not in CODES:
        raise WireError(f"cannot send dtype {data.dtype}; send uint8 (quantized), float16 "
                        "or float32")
    if q and q.per_channel and (q.axis != 1 or data.ndim < 2):
        raise WireError("per-channel quantization must be along axis 1 of a 2-d or larger tensor")
    if not 1 <= data.ndim <= MAX_NDIM:
        raise WireError(f"tensors must have 1 to {MAX_NDIM} dimensions, got {data.ndim}")
    raw = data.astype(data.dtype.newbyteorder("<")).tobytes()
    if compression == "auto":
        packed = _compress(raw, "zlib", level)
        compression, payload = ("zlib", packed) if len(packed) < len(raw) else ("none", raw)
    else:
        payload = _compress(raw, compression, level)
    parts = [_START.pack(MAGIC, VERSION),
             _V2.pack(CODES[data.dtype], 1 if q and q.per_channel else 0,
                      CODECS[compression], data.ndim),
             struct.pack(f"<{data.ndim}I", *data.shape)]
    if q:
        parts += [q.scale.astype("<f4").tobytes(), q.zero_point.astype(np.uint8).tobytes()]
    parts += [struct.pack("<I", len(payload)), payload]
    return b"".join(parts)


def encode_entropy(streams: list[bytes], shape) -> bytes:
    """One message of entropy-coded bitstreams, one per sample, for a float32 tensor of
    ``shape`` (``shape[0] == len(streams)``)."""
    shape = tuple(int(d) for d in shape)
    if not 2 <= len(shape) <= MAX_NDIM or min(shape) < 1 or shape[0] != len(streams):
        raise WireError(f"entropy messages need one stream per sample: {len(streams)} "
                        f"streams for shape {shape}")
    payload = b"".join(struct.pack("<I", len(b)) + bytes(b) for b in streams)
    return b"".join([_START.pack(MAGIC, VERSION), _V2.pack(3, 0, CODECS["entropy"], len(shape)),
                     struct.pack(f"<{len(shape)}I", *shape), struct.pack("<I", len(payload)),
                     payload])


def _split_streams(payload: bytes, count: int) -> list[bytes]:
    """The ``count`` length-prefixed streams of an entropy payload, which they must fill."""
    r, streams = _Reader(payload), []
    for i in range(count):
        (n,) = struct.unpack("<I", r.take(4, f"the length of entropy stream {i}"))
        streams.append(bytes(r.take(n, f"entropy stream {i}")))
    if r.pos != len(payload):
        raise WireError(f"{len(payload) - r.pos} bytes after the {count} entropy streams")
    return streams


class _Reader:
    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.pos = 0

    def take(self, n: int, what: str) -> memoryview:
        if self.pos + n > len(self.data):
            raise WireError(f"message truncated: {len(self.data)} bytes end inside {what} "
                            f"(needs bytes {self.pos}..{self.pos + n - 1})")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out


def _decompress(payload: bytes, compression: str, expected: int) -> bytes:
    if compression == "none":
        return payload
    if compression == "zlib":
        inflater = zlib.decompressobj()
        try:
            raw = inflater.decompress(payload, expected + 1)
        except zlib.error as err:
            raise WireError(f"zlib payload is corrupt: {err}") from None
        if not inflater.eof or inflater.unused_data or len(raw) != expected:
            raise WireError(f"zlib payload does not inflate to exactly {expected} bytes")
        return raw
    zstd = _zstd()
    if zstd is None:
        raise WireError("this server cannot decode zstd; send zlib or uncompressed", 415)
    try:
        with zstd.ZstdDecompressor().stream_reader(io.BytesIO(payload)) as reader:
            raw = reader.read(expected + 1)
    except zstd.ZstdError as err:
        raise WireError(f"zstd payload is corrupt: {err}") from None
    if len(raw) != expected:
        raise WireError(f"zstd payload does not inflate to exactly {expected} bytes")
    return raw


def decode(message: bytes, max_elements: int = 1 << 24) -> WireTensor:
    """Parse and check one message; ``max_elements`` bounds the memory a message may claim."""
    r = _Reader(message)
    magic, version = _START.unpack(r.take(_START.size, "the header"))
    if magic != MAGIC:
        raise WireError(f"not an edgedistill tensor message (magic {bytes(magic)!r}, "
                        f"expected {MAGIC!r})")
    if version not in (1, VERSION):
        raise WireError(f"unsupported wire version {version}; this side speaks 1 and {VERSION}")
    if version == 1:
        code, flags, ndim = _V1.unpack(r.take(_V1.size, "the header"))
        if flags & ~0b111:
            raise WireError(f"reserved flag bits set (flags 0b{flags:08b})")
        codec_code, flags = flags >> 1, flags & 1
        if codec_code == CODECS["entropy"]:
            raise WireError("unknown compression code 3; valid: 0 none, 1 zlib, 2 zstd")
    else:
        code, flags, codec_code, ndim = _V2.unpack(r.take(_V2.size, "the header"))
        if flags & ~0b1:
            raise WireError(f"reserved flag bits set (flags 0b{flags:08b})")
    if code not in DTYPES:
        raise WireError(f"unknown dtype code {code}; valid: 1 uint8, 2 float16, 3 float32")
    codec = {v: k for k, v in CODECS.items()}.get(codec_code)
    if codec is None:
        raise WireError(f"unknown codec {codec_code}; valid: "
                        + ", ".join(f"{v} {k}" for k, v in CODECS.items()))
    per_channel = bool(flags & 1)
    if not 1 <= ndim <= MAX_NDIM:
        raise WireError(f"ndim {ndim} is outside 1..{MAX_NDIM}")
    shape = struct.unpack(f"<{ndim}I", r.take(4 * ndim, "the dims"))
    if any(d == 0 for d in shape):
        raise WireError(f"shape {shape} has a zero dimension")
    count = math.prod(shape)
    if count > max_elements:
        raise WireError(f"shape {shape} has {count} elements; the limit is {max_elements}", 413)
    dtype = DTYPES[code]
    scale = zero_point = None
    if codec == "entropy" and (dtype != np.float32 or per_channel or ndim < 2):
        raise WireError("entropy messages must be float32, not per-channel, with at least "
                        "2 dimensions (samples first)")
    if dtype == np.uint8:
        if per_channel and ndim < 2:
            raise WireError("per-channel quantization needs at least 2 dimensions")
        k = shape[1] if per_channel else 1
        scale = np.frombuffer(r.take(4 * k, "the scales"), "<f4").astype(np.float32)
        zero_point = np.frombuffer(r.take(k, "the zero points"), np.uint8).copy()
        if not np.all((scale > 0) & (scale <= MAX_SCALE)):
            raise WireError(f"scales must be finite, > 0 and <= {MAX_SCALE:.4g} (so that "
                            f"dequantized values stay finite), got {scale[:8].tolist()}")
    elif per_channel:
        raise WireError(f"the per-channel flag is only valid for uint8, not {dtype}")
    (length,) = struct.unpack("<I", r.take(4, "the payload length"))
    payload = bytes(r.take(length, "the payload"))
    if r.pos != len(message):
        raise WireError(f"{len(message) - r.pos} trailing bytes after the payload")
    if codec == "entropy":
        streams = _split_streams(payload, shape[0])
        return WireTensor(None, codec=codec, streams=streams, version=version,
                          entropy_shape=shape)
    expected = count * dtype.itemsize
    if codec == "none" and length != expected:
        raise WireError(f"payload is {length} bytes; shape {shape} of {dtype} needs {expected}")
    raw = _decompress(payload, codec, expected)
    data = np.frombuffer(raw, dtype).reshape(shape)
    if dtype != np.uint8 and not np.all(np.isfinite(data)):
        raise WireError("float payload contains NaN or infinite values")
    return WireTensor(data, scale, zero_point, per_channel, codec, version=version)
