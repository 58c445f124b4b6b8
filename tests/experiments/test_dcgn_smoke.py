"""The DCGN experiment's smoke preset: three methods, the shuffled control, reference levels."""

import json

import numpy as np

from experiments.dcgn import train
from vision_jax.utils import load_config
from vision_jax.video import synthetic


def test_smoke_preset_runs(tmp_path):
  cfg = load_config("dcgn", "smoke")
  results = train.run(cfg, str(tmp_path), progress=False)
  assert set(results["original"]) == {"dcgn", "meanpool", "lstm"}
  assert set(results["shuffled"]) == {"dcgn"}  # config.control_methods
  for setting in ("original", "shuffled"):
    for m, s in results[setting].items():
      ev = s["eval"]
      assert ev["num_videos"] == cfg.data.num_eval, (setting, m)
      for key in ("gap", "hit_at_1", "perr", "map"):
        assert 0.0 <= ev[key] <= 1.0, (setting, m, key, ev)
  ref = results["reference"]
  assert ref["bag_oracle_4_events_known"]["gap"] > ref["bag_oracle_6_present"]["gap"]
  assert (tmp_path / "frame_bank.npz").exists()
  on_disk = json.loads((tmp_path / "results.json").read_text())
  assert on_disk["original"]["dcgn"]["eval"]["gap"] == results["original"]["dcgn"]["eval"]["gap"]
  table = train.format_table(results)
  assert "| shuffled | dcgn |" in table and "bag_oracle_6_present" in table
  # Re-running skips every finished run (same numbers, nothing retrained).
  again = train.run(cfg, str(tmp_path), progress=False)
  assert again["original"]["lstm"]["eval"] == results["original"]["lstm"]["eval"]


def test_event_videos_structure():
  rng = np.random.default_rng(0)
  image_class = np.repeat(np.arange(10), 3)
  v = synthetic.generate_event_videos(image_class, 4, 20, rng, min_frames=200, max_frames=300)
  assert v["labels"].shape == (20, 45) and np.all(v["labels"].sum(1) == 2)
  for i in range(20):
    n = v["num_frames"][i]
    assert 200 <= n <= 300 and np.all(v["frame_class"][i, n:] == -1)
    fc = v["frame_class"][i, :n]
    assert np.all(image_class[v["frames"][i, :n] // 4] == fc)  # bank ids match the classes
    pairs = [synthetic.PAIRS[j] for j in np.flatnonzero(v["labels"][i])]
    assert sorted(c for p in pairs for c in p) == sorted(v["event_classes"][i].tolist())
    present = set(fc.tolist())  # both event classes always; a distractor may be missed
    assert set(v["event_classes"][i].tolist()) <= present <= set(v["present_classes"][i].tolist())
  shuffled = synthetic.shuffle_frames(v, rng)
  for i in range(20):
    n = v["num_frames"][i]
    np.testing.assert_array_equal(np.sort(shuffled["frames"][i, :n]), np.sort(v["frames"][i, :n]))
  oracle = synthetic.bag_oracle_scores(v["event_classes"], rng)
  assert np.all(np.sum(oracle > 0.3, 1) == 6)
  np.testing.assert_allclose(oracle.sum(1), 2.0, atol=1e-4)  # expected number of labels
  oracle6 = synthetic.bag_oracle_scores(v["present_classes"], rng)
  assert np.all(np.sum(oracle6 > 0.1, 1) == 15)
  assert np.all(oracle6[v["labels"] > 0] > 0.1)


def test_paper_data_path_on_youtube8m_fixtures(tmp_path):
  """The paper preset's data path (frame-level TFRecords -> uint8 batches -> dequantised on
  device) end to end, on fixture files from the independent test writer."""
  from tests.data.test_youtube8m import sequence_example, write_tfrecord

  rng = np.random.default_rng(0)
  for split, n in (("train", 8), ("validate", 4)):
    recs = []
    for i in range(n):
      t = int(rng.integers(3, 9))
      recs.append(
        sequence_example(
          f"{split}{i}",
          rng.choice(3862, 2, replace=False).tolist(),
          rng.integers(0, 256, (t, 1024), dtype=np.uint8),
          rng.integers(0, 256, (t, 128), dtype=np.uint8),
        )
      )
    write_tfrecord(tmp_path / f"{split}0000.tfrecord", recs)
  cfg = load_config(
    "dcgn",
    "smoke",
    {
      "data.name": "youtube8m",
      "data.train_pattern": str(tmp_path / "train*.tfrecord"),
      "data.eval_pattern": str(tmp_path / "validate*.tfrecord"),
      "data.max_frames": "10",
      "data.eval_batch_size": "8",
      "settings": "original",
      "methods": "meanpool",
    },
  )
  results = train.run(cfg, str(tmp_path / "run"), progress=False)
  ev = results["original"]["meanpool"]["eval"]
  assert ev["num_videos"] == 4 and 0.0 <= ev["gap"] <= 1.0
  assert "reference" not in results


def test_bad_config_is_rejected_before_work():
  import pytest

  from vision_jax.utils import ConfigError

  for overrides, key in (
    ({"methods": "dcgn,gru"}, "methods"),
    ({"dcgn.pool_windows": "(3, 3)"}, "dcgn.pool_windows"),
    ({"dcgn.adjacency": "sparse"}, "dcgn.adjacency"),
    ({"data.segments": "3"}, "data.segments"),
    ({"data.cutaway_frames": "(4, 2)"}, "data.cutaway_frames"),
  ):
    with pytest.raises(ConfigError, match=f"--config.{key}="):
      load_config("dcgn", "default", overrides)
