"""Reading and writing the IDX binary format used by the MNIST family of data sets.

An IDX file is a 4-byte magic number -- two zero bytes, a type code and the
number of dimensions -- followed by one big-endian uint32 per dimension and
then the array data in C order, big-endian. Files may be gzip-compressed.
"""

from __future__ import annotations

import gzip
import math
import os
from pathlib import Path
import struct
import zlib

import numpy as np

# IDX type code -> numpy dtype (always big-endian on disk).
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_SIGNATURE = b"\x1f\x8b"


def idx_magic(dtype: np.dtype | type, ndim: int) -> int:
    """The magic number an IDX file of the given dtype and rank starts with."""
    dtype = np.dtype(dtype)
    for code, idx_dtype in _IDX_DTYPES.items():
        if dtype.kind == idx_dtype.kind and dtype.itemsize == idx_dtype.itemsize:
            if not 1 <= ndim <= 255:
                raise ValueError(f"IDX arrays need 1 to 255 dimensions, got {ndim}")
            return (code << 8) | ndim
    accepted = ", ".join(str(d.newbyteorder("=")) for d in _IDX_DTYPES.values())
    raise ValueError(f"IDX cannot store dtype {dtype}; accepted dtypes: {accepted}")


def read_idx(path: str | os.PathLike[str], *, expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (gzipped or plain) into an array.

    The array has the file's dtype (in native byte order) and dimensions.
    If ``expected_magic`` is given (e.g. ``0x00000803`` for uint8 images), a
    file with any other magic number is rejected. Raises ``FileNotFoundError``
    if the file is missing and ``ValueError`` naming the file if it is not
    valid IDX (bad magic, truncated, trailing bytes).
    """
    path = Path(path)
    raw = path.read_bytes()
    # Detect compression from the content, so a mis-named file still reads.
    if raw.startswith(_GZIP_SIGNATURE):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"{path}: corrupt or truncated gzip data ({error})") from None
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated IDX file, only {len(raw)} bytes (no complete header)")
    (magic,) = struct.unpack(">I", raw[:4])
    code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{magic:08X}, expected 0x{expected_magic:08X}"
        )
    if magic >> 16 != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{magic:08X}; expected 0x0000TTNN with type code "
            f"TT in {{{', '.join(f'0x{c:02X}' for c in _IDX_DTYPES)}}} and NN >= 1 dimensions "
            "(e.g. 0x00000803 for MNIST images, 0x00000801 for labels)"
        )
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(f"{path}: truncated IDX header, expected {ndim} dimension sizes")
    shape = struct.unpack(f">{ndim}I", raw[4:header_size])
    dtype = _IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    actual = len(raw) - header_size
    if actual != expected:
        problem = "truncated" if actual < expected else "has trailing data"
        raise ValueError(
            f"{path}: IDX file {problem}: header dimensions {shape} need {expected} data bytes, "
            f"found {actual}"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write ``array`` to ``path`` in IDX format, gzip-compressed if ``path`` ends in ``.gz``.

    Accepted dtypes: uint8, int8, int16, int32, float32, float64; 1 to 255 dims.
    Returns the path written.
    """
    path = Path(path)
    array = np.asarray(array)
    magic = idx_magic(array.dtype, array.ndim)
    big_endian = _IDX_DTYPES[magic >> 8]
    payload = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    payload += np.ascontiguousarray(array, dtype=big_endian).tobytes()
    if path.suffix == ".gz":
        # mtime=0 makes the output byte-for-byte reproducible.
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
    return path
