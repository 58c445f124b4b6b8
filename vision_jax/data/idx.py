"""Reader and writer for the IDX format of (Fashion-)MNIST, gzip'ed or not.

IDX layout (big-endian): two zero bytes, a type code (0x08 = uint8), the number of dimensions
``d``, then ``d`` uint32 sizes, then the row-major payload.
"""

import gzip
import os
import struct
import zlib

import numpy as np

# IDX type code -> numpy dtype (big-endian where it matters).
_IDX_DTYPES = {
  0x08: np.dtype(np.uint8),
  0x09: np.dtype(np.int8),
  0x0B: np.dtype(">i2"),
  0x0C: np.dtype(">i4"),
  0x0D: np.dtype(">f4"),
  0x0E: np.dtype(">f8"),
}
_DTYPE_CODES = {dt: code for code, dt in _IDX_DTYPES.items()}


def _open(path: str | os.PathLike, mode: str):
  return gzip.open(path, mode) if os.fspath(path).endswith(".gz") else open(path, mode)


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads one IDX file (``.gz`` is decompressed on the fly).

  Args:
    path: file such as ``train-images-idx3-ubyte.gz`` (``[n, 28, 28]`` uint8) or
      ``train-labels-idx1-ubyte.gz`` (``[n]`` uint8).

  Returns:
    The array with the shape stored in the header, native byte order.

  Raises:
    FileNotFoundError: if ``path`` does not exist.
    ValueError: if the header is malformed, the payload size disagrees with it, or a ``.gz``
      file is truncated / not gzip (the message names the path).
  """
  try:
    with _open(path, "rb") as f:
      data = f.read()
  except (EOFError, gzip.BadGzipFile, zlib.error) as e:
    raise ValueError(
      f"{path}: cannot decompress ({type(e).__name__}: {e}); the .gz file is truncated or "
      "corrupt, re-download it."
    ) from e
  if len(data) < 4 or data[0] != 0 or data[1] != 0:
    raise ValueError(
      f"{path}: not an IDX file (magic bytes {data[:4]!r}; expected 00 00 <type> <ndim>)."
    )
  code, ndim = data[2], data[3]
  if code not in _IDX_DTYPES:
    raise ValueError(f"{path}: unknown IDX type code 0x{code:02x}; known: {sorted(_IDX_DTYPES)}.")
  header = 4 + 4 * ndim
  shape = struct.unpack(f">{ndim}I", data[4:header])
  dtype = _IDX_DTYPES[code]
  expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  if len(data) - header != expected:
    raise ValueError(
      f"{path}: header says shape {shape} ({expected} bytes) but the payload has "
      f"{len(data) - header} bytes; the file is truncated or corrupt, re-download it."
    )
  arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
  return arr.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
  """Writes ``array`` as an IDX file (gzip'ed when ``path`` ends in ``.gz``).

  Args:
    path: destination file.
    array: any shape; dtype one of uint8, int8, int16, int32, float32, float64.

  Raises:
    ValueError: if the dtype has no IDX type code.
  """
  array = np.asarray(array)
  be = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
  if be not in _DTYPE_CODES:
    raise ValueError(
      f"write_idx: dtype {array.dtype} has no IDX code; use one of uint8, int8, int16, int32, float32, float64."
    )
  header = bytes([0, 0, _DTYPE_CODES[be], array.ndim]) + struct.pack(
    f">{array.ndim}I", *array.shape
  )
  with _open(path, "wb") as f:
    f.write(header + np.ascontiguousarray(array, dtype=be).tobytes())
