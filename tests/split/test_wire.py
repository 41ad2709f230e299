"""The wire format: exact sizes, lossless round trips, and a parser that turns every
malformed message into a WireError (never another exception, never a huge allocation)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from edgedistill.split.quantize import quantize
from edgedistill.split.wire import (
    MAGIC,
    MAX_SCALE,
    WireError,
    available_compressions,
    decode,
    encode,
    encode_entropy,
)

RNG = np.random.default_rng(0)
Z = np.maximum(RNG.standard_normal((2, 4, 7, 7)), 0).astype(np.float32)


def header_len(ndim: int, scales: int) -> int:
    return 9 + 4 * ndim + 5 * scales + 4


@pytest.mark.parametrize("compression", available_compressions())
@pytest.mark.parametrize("per_channel", [False, True])
def test_quantized_round_trip_and_exact_size(compression, per_channel):
    q = quantize(Z, per_channel)
    message = encode(q, compression)
    got = decode(message)
    assert np.array_equal(got.data, q.data)
    assert np.array_equal(got.scale, q.scale) and np.array_equal(got.zero_point, q.zero_point)
    assert got.per_channel == per_channel and got.codec == compression
    scales = Z.shape[1] if per_channel else 1
    if compression == "none":
        assert len(message) == header_len(4, scales) + Z.size
    else:
        assert len(message) < header_len(4, scales) + Z.size


def test_auto_compression_picks_the_smaller_payload():
    dense = quantize(RNG.standard_normal((1, 1, 7, 7)).astype(np.float32))
    sparse = quantize(np.zeros((1, 8, 7, 7), np.float32))
    assert decode(encode(dense, "auto")).codec == "none"
    assert decode(encode(sparse, "auto")).codec == "zlib"
    for q in (dense, sparse):
        assert len(encode(q, "auto")) == min(len(encode(q, "none")), len(encode(q, "zlib")))


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_float_tensors_travel_unquantized(dtype):
    x = RNG.standard_normal((1, 3, 2, 2)).astype(dtype)
    got = decode(encode(x, "zlib"))
    assert got.data.dtype == dtype and np.array_equal(got.data, x)
    assert got.to_float().dtype == np.float32


def test_encode_refuses_what_it_cannot_send():
    with pytest.raises(WireError, match="dtype"):
        encode(np.zeros((1, 2), np.int64))
    with pytest.raises(WireError, match="compression"):
        encode(Z, "lzma")
    with pytest.raises(WireError, match="dimensions"):
        encode(np.zeros((1,) * 7, np.float32))


def _valid() -> bytes:
    return encode(quantize(Z, per_channel=True), "zlib")


def _patch(message: bytes, offset: int, value: bytes) -> bytes:
    return message[:offset] + value + message[offset + len(value):]


def _raw(dtype=1, flags=0, dims=(1, 2), scales=(1.0,), zps=(0,), payload=b"\0\0",
         length=None, version=1, magic=MAGIC) -> bytes:
    head = struct.pack("<4sBBBB", magic, version, dtype, flags, len(dims))
    head += struct.pack(f"<{len(dims)}I", *dims)
    if dtype == 1:
        head += struct.pack(f"<{len(scales)}f", *scales) + bytes(zps)
    return head + struct.pack("<I", len(payload) if length is None else length) + payload


def _v2(dtype=3, flags=0, codec=0, dims=(1,), payload=None) -> bytes:
    """A version-2 header (the codec byte) with no scales: float or entropy messages."""
    payload = b"\0" * 4 * int(np.prod(dims)) if payload is None else payload
    return (struct.pack("<4sBBBBB", MAGIC, 2, dtype, flags, codec, len(dims))
            + struct.pack(f"<{len(dims)}I", *dims) + struct.pack("<I", len(payload)) + payload)


BAD = {
    "empty": (b"", "truncated"),
    "magic": (_patch(_valid(), 0, b"XXXX"), "magic"),
    "version": (_raw(version=3), "version 3"),
    "dtype": (_raw(dtype=9), "dtype code 9"),
    "reserved flags": (_raw(flags=0b1000), "reserved flag"),
    "compression code": (_raw(flags=0b110), "compression code 3"),
    "v2 codec": (_v2(codec=4), "unknown codec 4"),
    "v2 codec 255": (_v2(codec=255), "unknown codec 255"),
    "v2 flags": (_v2(flags=0b10), "reserved flag"),
    "v2 entropy uint8": (_v2(dtype=1, codec=3), "must be float32"),
    "v2 entropy 1-d": (_v2(dtype=3, codec=3, dims=(2,)), "at least 2"),
    "v2 entropy no streams": (_v2(dtype=3, codec=3, dims=(2, 4), payload=b""), "length of "
                              "entropy stream 0"),
    "v2 entropy stream cut": (_v2(dtype=3, codec=3, dims=(1, 4),
                                  payload=struct.pack("<I", 9) + b"abc"), "entropy stream 0"),
    "v2 entropy extra": (_v2(dtype=3, codec=3, dims=(1, 4),
                             payload=struct.pack("<I", 1) + b"ab"), "after the 1 entropy"),
    "ndim 0": (_raw(dims=()), "ndim 0"),
    "ndim 7": (_raw(dims=(1,) * 7), "ndim 7"),
    "zero dim": (_raw(dims=(1, 0)), "zero dimension"),
    "huge shape": (_raw(dims=(2**32 - 1,) * 6), "limit"),
    "nan scale": (_raw(scales=(float("nan"),)), "finite"),
    "inf scale": (_raw(scales=(float("inf"),)), "finite"),
    "overflowing scale": (_raw(scales=(1e37,), payload=b"\xff\xff"), "stay finite"),
    "negative scale": (_raw(scales=(-1.0,)), "> 0"),
    "zero scale": (_raw(scales=(0.0,)), "> 0"),
    "short payload": (_raw(payload=b"\0"), "needs 2"),
    "length beyond end": (_raw(length=100), "truncated"),
    "trailing": (_raw() + b"\0", "trailing"),
    "per-channel float": (_raw(dtype=3, flags=1, payload=b"\0" * 8), "only valid for uint8"),
    "per-channel 1-d": (_raw(flags=1, dims=(2,)), "at least 2"),
    "float nan": (_raw(dtype=3, dims=(1,), payload=struct.pack("<f", float("nan"))), "NaN"),
    "corrupt zlib": (_raw(flags=0b10, payload=b"not zlib"), "corrupt"),
    "zlib too short": (_raw(flags=0b10, payload=zlib.compress(b"\0")), "exactly 2"),
    "zlib bomb": (_raw(flags=0b10, payload=zlib.compress(b"\0" * 10_000_000)), "exactly 2"),
    "zlib trailing": (_raw(flags=0b10, payload=zlib.compress(b"\0\0") + b"x"), "exactly 2"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_malformed_messages_are_rejected_clearly(name):
    message, needle = BAD[name]
    with pytest.raises(WireError) as err:
        decode(message)
    assert needle in str(err.value)
    assert 400 <= err.value.status < 500


def test_largest_accepted_scale_dequantizes_to_finite_values():
    top = np.float32(MAX_SCALE)
    if float(top) > MAX_SCALE:
        top = np.nextafter(top, np.float32(0))
    for zp, codes in ((0, b"\xff\x00"), (255, b"\x00\xff")):
        values = decode(_raw(scales=(float(top),), zps=(zp,), payload=codes)).to_float()
        assert np.all(np.isfinite(values)) and np.abs(values).max() > 1e38
    with pytest.raises(WireError, match="stay finite"):
        decode(_raw(scales=(float(np.nextafter(top, np.float32(np.inf))),)))


def test_fuzz_truncations_flips_and_garbage_never_crash():
    message = _valid()
    rng = np.random.default_rng(1)
    cases = [message[:n] for n in range(len(message))]
    for _ in range(1500):
        data = bytearray(message)
        for pos in rng.integers(0, len(data), rng.integers(1, 4)):
            data[pos] = int(rng.integers(0, 256))
        cases.append(bytes(data))
    cases += [bytes(rng.integers(0, 256, rng.integers(0, 200), dtype=np.uint8))
              for _ in range(500)]
    cases += [MAGIC + bytes(rng.integers(0, 256, 60, dtype=np.uint8)) for _ in range(500)]
    outcomes = {"ok": 0, "rejected": 0}
    for case in cases:
        try:
            got = decode(case, max_elements=10_000)
        except WireError as err:
            assert 400 <= err.status < 500
            outcomes["rejected"] += 1
        else:
            if got.codec == "entropy":  # a flipped codec byte: streams for the model to check
                assert len(got.streams) == got.shape[0]
            else:
                assert np.all(np.isfinite(got.to_float()))
            outcomes["ok"] += 1
    assert outcomes["rejected"] > len(message)


# Version-1 messages (no codec byte) written by encode() at commit 0ff7921, before the
# codec field existed: per-channel uint8 + zlib level 9, and float16 uncompressed, of
# x = arange(24).reshape(1, 2, 3, 4) / 4.
OLD_UINT8_ZLIB = bytes.fromhex(
    "454453570101030401000000020000000300000004000000b1b0303cb9b8b83c00002300000078da01"
    "1800e7ff00172e465d748ba2b9d1e8ff85909ba6b1bcc8d3dee9f4ff969a0f13")
OLD_FLOAT16 = bytes.fromhex(
    "45445357010200040100000002000000030000000400000030000000000000340038003a003c003d00"
    "3e003f00408040004180410042804200438043004440448044c044004540458045c045")


def test_version_1_messages_still_parse():
    x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4) / 4
    q = decode(OLD_UINT8_ZLIB)
    assert (q.version, q.codec, q.per_channel) == (1, "zlib", True)
    assert q.data.ravel().tolist() == [0, 23, 46, 70, 93, 116, 139, 162, 185, 209, 232, 255,
                                       133, 144, 155, 166, 177, 188, 200, 211, 222, 233, 244,
                                       255]
    assert np.abs(q.to_float() - x).max() <= q.scale.max() / 2 + 1e-6
    f = decode(OLD_FLOAT16)
    assert (f.version, f.codec, f.data.dtype) == (1, "none", np.float16)
    assert np.array_equal(f.to_float(), x)


def test_new_messages_carry_the_codec_byte():
    message = encode(quantize(Z), "zlib")
    assert message[4] == 2 and message[7] == 1  # version 2, codec 1 zlib
    assert decode(message).codec == "zlib"
    assert encode(quantize(Z), "none")[7] == 0


def test_entropy_message_round_trip_keeps_streams_and_shape():
    streams = [b"\x01\x02\x03", b"", b"\xff" * 40]
    message = encode_entropy(streams, (3, 4, 6, 6))
    assert len(message) == 9 + 4 * 4 + 4 + sum(4 + len(b) for b in streams)
    got = decode(message)
    assert got.codec == "entropy" and got.streams == streams and got.shape == (3, 4, 6, 6)
    with pytest.raises(WireError, match="entropy model") as err:
        got.to_float()
    assert err.value.status == 415
    with pytest.raises(WireError, match="one stream per sample"):
        encode_entropy(streams, (2, 4, 6, 6))
