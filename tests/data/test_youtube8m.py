"""YouTube-8M reader on fixture files written by an independent writer (hand-encoded protobuf
wire format, bitwise CRC-32C) in exactly the TFRecord / tf.train.(Sequence)Example layout."""

import struct

import numpy as np
import pytest

from vision_jax.data import youtube8m as yt


# ---- independent writer -------------------------------------------------------------------
def crc32c_bitwise(data: bytes) -> int:
  crc = 0xFFFFFFFF
  for b in data:
    crc ^= b
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
  return crc ^ 0xFFFFFFFF


def masked(data: bytes) -> int:
  c = crc32c_bitwise(data)
  return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def varint(n: int) -> bytes:
  out = bytearray()
  while True:
    byte, n = n & 0x7F, n >> 7
    out.append(byte | (0x80 if n else 0))
    if not n:
      return bytes(out)


def field(num: int, payload: bytes) -> bytes:  # wire type 2 (length-delimited)
  return varint(num << 3 | 2) + varint(len(payload)) + payload


def bytes_feature(*values: bytes) -> bytes:
  return field(1, b"".join(field(1, v) for v in values))  # Feature.bytes_list.value


def float_feature(values) -> bytes:
  return field(2, field(1, struct.pack(f"<{len(values)}f", *values)))  # packed float


def int64_feature(values) -> bytes:
  return field(3, field(1, b"".join(varint(int(v)) for v in values)))  # packed int64


def features(mapping: dict) -> bytes:  # map<string, Feature> feature = 1
  return b"".join(field(1, field(1, k.encode()) + field(2, v)) for k, v in mapping.items())


def sequence_example(vid: str, labels, rgb: np.ndarray, audio: np.ndarray) -> bytes:
  context = features({"id": bytes_feature(vid.encode()), "labels": int64_feature(labels)})
  lists = b"".join(
    field(
      1,
      field(1, name.encode()) + field(2, b"".join(field(1, bytes_feature(r.tobytes())) for r in x)),
    )
    for name, x in (("rgb", rgb), ("audio", audio))
  )
  return field(1, context) + field(2, lists)


def example(vid: str, labels, mean_rgb, mean_audio) -> bytes:
  return field(
    1,
    features(
      {
        "id": bytes_feature(vid.encode()),
        "labels": int64_feature(labels),
        "mean_rgb": float_feature(mean_rgb),
        "mean_audio": float_feature(mean_audio),
      }
    ),
  )


def write_tfrecord(path, records):
  with open(path, "wb") as f:
    for r in records:
      n = struct.pack("<Q", len(r))
      f.write(n + struct.pack("<I", masked(n)) + r + struct.pack("<I", masked(r)))


# ---- fixtures ----------------------------------------------------------------------------
def _videos(seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for i, t in enumerate((5, 1, 3)):
    rgb = rng.integers(0, 256, (t, 1024), dtype=np.uint8)
    audio = rng.integers(0, 256, (t, 128), dtype=np.uint8)
    out.append((f"vid{i}", sorted(rng.choice(3862, 1 + i, replace=False).tolist()), rgb, audio))
  out[0][2][0, :2] = (0, 255)  # the extremes of the dequantisation range
  return out


@pytest.fixture
def frame_file(tmp_path):
  vids = _videos()
  path = tmp_path / "train0000.tfrecord"
  write_tfrecord(path, [sequence_example(*v) for v in vids])
  return path, vids


def test_crc32c_reference_vector():
  assert crc32c_bitwise(b"123456789") == 0xE3069283
  assert yt.masked_crc32c(b"123456789") == masked(b"123456789")


def test_frame_level_round_trip(frame_file):
  path, vids = frame_file
  recs = list(yt.iter_yt8m_records(path, level="frame"))
  assert len(recs) == 3
  for rec, (vid, labels, rgb, audio) in zip(recs, vids):
    assert rec["id"] == vid
    np.testing.assert_array_equal(rec["labels"], labels)
    assert rec["rgb"].dtype == np.float32 and rec["rgb"].shape == rgb.shape
    np.testing.assert_allclose(rec["rgb"], rgb * (4 / 255) + 4 / 512 - 2, rtol=0, atol=1e-6)
    np.testing.assert_allclose(rec["audio"], audio * (4 / 255) + 4 / 512 - 2, rtol=0, atol=1e-6)
  # byte 0 -> -2 + 4/512 and byte 255 -> 2 + 4/512: [-1.992, 2.008], not [-2, 2].
  np.testing.assert_allclose(recs[0]["rgb"][0, :2], [-1.9921875, 2.0078125], atol=1e-6)
  raw = next(yt.iter_yt8m_records(path, dequantize_frames=False))
  np.testing.assert_array_equal(raw["rgb"], vids[0][2])


def test_video_level_round_trip(tmp_path):
  rng = np.random.default_rng(1)
  rows = [
    (
      f"v{i}",
      [i, 7 + i],
      rng.normal(size=1024).astype(np.float32),
      rng.normal(size=128).astype(np.float32),
    )
    for i in range(2)
  ]
  path = tmp_path / "video.tfrecord"
  write_tfrecord(path, [example(*r) for r in rows])
  recs = list(yt.iter_yt8m_records(path, level="video"))
  for rec, (vid, labels, mr, ma) in zip(recs, rows):
    assert rec["id"] == vid and rec["labels"].tolist() == labels
    np.testing.assert_array_equal(rec["mean_rgb"], mr)  # float lists: no dequantisation
    np.testing.assert_array_equal(rec["mean_audio"], ma)


def test_corrupt_payload_names_file_and_record(frame_file):
  path, _ = frame_file
  data = bytearray(path.read_bytes())
  first = 12 + struct.unpack("<Q", data[:8])[0] + 4
  data[first + 12 + 40] ^= 0xFF  # inside record 1's payload
  path.write_bytes(bytes(data))
  it = yt.iter_yt8m_records(path)
  assert next(it)["id"] == "vid0"
  with pytest.raises(ValueError, match=rf"{path.name}: record 1 .*data CRC mismatch"):
    next(it)


def test_corrupt_length_and_truncation(frame_file):
  path, _ = frame_file
  data = bytearray(path.read_bytes())
  data[0] ^= 0x01
  path.write_bytes(bytes(data))
  with pytest.raises(ValueError, match="record 0 .*length CRC mismatch"):
    list(yt.iter_yt8m_records(path))
  data[0] ^= 0x01
  path.write_bytes(bytes(data[:-10]))
  with pytest.raises(ValueError, match=rf"{path.name}: record 2 .*truncated"):
    list(yt.iter_yt8m_records(path))
  with pytest.raises(ValueError, match="record 2 .*truncated"):
    yt.Yt8mFrameSource([path])


def _one(tmp_path, rec):
  path = tmp_path / "bad.tfrecord"
  write_tfrecord(path, [rec])
  return path


def test_bad_records(tmp_path):
  z = np.zeros
  with pytest.raises(ValueError, match=r"record 0: 'rgb' frame 1 has byte lengths \[1000\]"):
    rgb = [z(1024, np.uint8), z(1000, np.uint8)]
    list(
      yt.iter_yt8m_records(_one(tmp_path, sequence_example("a", [1], rgb, z((2, 128), np.uint8))))
    )
  with pytest.raises(ValueError, match="record 0: empty video"):
    list(
      yt.iter_yt8m_records(
        _one(tmp_path, sequence_example("a", [1], z((0, 1024), np.uint8), z((0, 128), np.uint8)))
      )
    )
  with pytest.raises(ValueError, match=r"record 0: labels \[3862\] outside \[0, 3862\)"):
    list(
      yt.iter_yt8m_records(
        _one(
          tmp_path, sequence_example("a", [3, 3862], z((1, 1024), np.uint8), z((1, 128), np.uint8))
        )
      )
    )
  with pytest.raises(ValueError, match="disagree on the number of frames"):
    list(
      yt.iter_yt8m_records(
        _one(tmp_path, sequence_example("a", [1], z((2, 1024), np.uint8), z((1, 128), np.uint8)))
      )
    )
  with pytest.raises(ValueError, match="'mean_rgb' has 1000 floats"):
    list(yt.iter_yt8m_records(_one(tmp_path, example("a", [1], z(1000), z(128))), level="video"))
  with pytest.raises(ValueError, match="level='clip'"):
    next(yt.iter_yt8m_records(tmp_path / "bad.tfrecord", level="clip"))
  with pytest.raises(FileNotFoundError, match="missing.tfrecord"):
    next(yt.iter_yt8m_records(tmp_path / "missing.tfrecord"))


def test_frame_source_pads_and_indexes(frame_file, tmp_path):
  path, vids = frame_file
  second = tmp_path / "train0001.tfrecord"
  write_tfrecord(second, [sequence_example(*vids[1])])
  src = yt.Yt8mFrameSource([path, second], max_frames=4)
  assert len(src) == 4
  ex = src[0]  # 5 frames truncated to 4
  assert ex["num_frames"] == 4 and ex["rgb"].dtype == np.uint8
  np.testing.assert_array_equal(ex["rgb"], vids[0][2][:4])
  ex = src[3]  # 1 frame padded to 4
  assert ex["num_frames"] == 1 and np.all(ex["rgb"][1:] == 0) and np.all(ex["audio"][1:] == 0)
  np.testing.assert_array_equal(np.flatnonzero(ex["labels"]), vids[1][1])
  assert ex["labels"].shape == (3862,)
