"""The M2FPA experiment: the smoke preset end to end through the launcher, the embedded data, and
the M2FPA-tree reader with its errors (on a generated fixture tree)."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from experiments.m2fpa import __main__ as entry
from experiments.m2fpa import config as mc
from experiments.m2fpa import data as md
from experiments.m2fpa import train
from vision_jax.metrics.pose_bins import pooled_rank1


def test_smoke_preset_runs(tmp_path):
  out = entry.main(["--preset=smoke", f"--workdir={tmp_path}"])
  assert set(out["methods"]) == {"raw", "baseline", "parsing", "drgan"}
  poses = np.asarray(out["poses"])
  for m in out["methods"].values():
    mean = m["mean"]
    res = train.result_from_metrics(mean, poses)
    # the pooled numbers agree with the per-pose ones (every pose has the same probe count)
    assert mean["rank1_large_yaw"] == pytest.approx(pooled_rank1(res, lambda y, p: abs(y) >= 60))
    assert mean["rank1_all"] == pytest.approx(np.nanmean(res.rank1))
    assert 0.0 <= mean["l1"] <= 1.0
  with open(tmp_path / "parsing" / "seed0" / "summary.json") as f:
    summary = json.load(f)
  assert summary["eval"] == out["methods"]["parsing"]["seeds"][0]
  assert {"d/parsing_loss", "g/parsing_adv"} <= set(summary["final_train"])
  with open(tmp_path / "baseline" / "seed0" / "summary.json") as f:
    assert "g/parsing_adv" not in json.load(f)["final_train"]
  with open(tmp_path / "drgan" / "seed0" / "summary.json") as f:
    final = json.load(f)["final_train"]
  assert {"d/drgan_loss", "d/real_id_acc", "g/adv"} <= set(final) and "d/global_loss" not in final
  for png in ("rank1_heatmap.png", "frontalization_grid.png", "comparison.png"):
    assert os.path.getsize(tmp_path / png) > 0
  assert out["grid_rows"] == ["probe", "baseline", "parsing", "drgan", "ground truth"]
  table = train.format_table(out)
  assert "| G + global D + parsing-guided D (M2FPA) |" in table and "| raw probes" in table
  assert "| DR-GAN-style G + identity/pose D |" in table


def test_embedded_data_is_subject_disjoint_and_paired():
  cfg = mc.get_config("smoke")
  d = md.embedded_data(cfg)
  n_poses = 5
  k, n_test = d["num_train_ids"], cfg.data.num_test
  assert k == cfg.data.num_identities - n_test
  assert d["gan"]["image"].shape == (k * n_poses, 16, 16, 1)
  assert d["probe"]["image"].shape[0] == n_test * (n_poses - 1)  # every pose but the frontal one
  assert not np.any((d["poses"][:, 0] == 0) & (d["poses"][:, 1] == 0))
  # the frontal ground truth of a probe is its gallery image
  for i in range(len(d["probe"]["label"])):
    np.testing.assert_array_equal(
      d["probe"]["frontal"][i], d["gallery"]["image"][d["probe"]["label"][i]]
    )
  # the (0, 0) pose of a train identity is its frontal target
  np.testing.assert_array_equal(d["gan"]["image"][0], d["gan"]["frontal"][0])
  assert d["recog"]["label"].max() == k - 1
  with pytest.raises(ValueError, match="data.poses: item '10:x'"):
    md.parse_pairs("0:0,10:x", key="data.poses", width=2)


def _tree(root, parsing_dir=None, extra=()):
  rng = np.random.default_rng(0)
  root.mkdir(parents=True)
  (root / "camera_poses.csv").write_text("# layer,camera,yaw,pitch\n4,7,0,0\n4,6,30,0\n4,5,-60,0\n")
  for s in ("001", "002", "003", "004"):
    d = root / "Train" / s / "White" / "Neutral"
    d.mkdir(parents=True)
    for cam in (5, 6, 7):
      Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(d / f"a4-{cam}.png")
    if parsing_dir is not None and s != "004":
      p = parsing_dir / "Train" / s / "White" / "Neutral"
      p.mkdir(parents=True)
      Image.fromarray(rng.integers(0, 6, (20, 20), dtype=np.uint8)).save(p / "a4-7.png")
  for rel in extra:
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / rel)


def _paper_cfg(root, parsing_dir="", poses="data"):
  cfg = mc.get_config("smoke")
  cfg.setting = "m2fpa"
  cfg.data.poses = poses
  cfg.data.num_test = 2
  cfg.paper.root = str(root)
  cfg.paper.parsing_dir = str(parsing_dir)
  return cfg


def test_m2fpa_tree_pairs_probes_with_their_frontal_image(tmp_path):
  root = tmp_path / "m2fpa"
  _tree(root)
  d = md.m2fpa_tree_data(_paper_cfg(root), need_parsing=False)
  assert d["gan"]["image"].shape == (2 * 3, 16, 16, 1) and d["num_train_ids"] == 2
  assert d["probe"]["image"].shape[0] == 2 * 2 and d["gallery"]["image"].shape[0] == 2
  assert sorted(map(tuple, d["poses"].tolist())) == [(-60.0, 0.0), (30.0, 0.0)]
  for i, lab in enumerate(d["probe"]["label"]):
    np.testing.assert_array_equal(d["probe"]["frontal"][i], d["gallery"]["image"][lab])


def test_m2fpa_tree_bad_input_names_the_file(tmp_path):
  root = tmp_path / "m2fpa"
  _tree(root, extra=("Train/001/White/Neutral/frontal.png",))
  with pytest.raises(ValueError, match=r"'frontal.png'.*does not parse"):
    md.m2fpa_tree_data(_paper_cfg(root), need_parsing=False)
  os.remove(root / "Train/001/White/Neutral/frontal.png")
  with pytest.raises(
    ValueError, match=r"a4-5.png.*pose \(yaw=-60.0, pitch=0.0\) is not in the pose set.*data.poses"
  ):
    md.m2fpa_tree_data(_paper_cfg(root, poses="0:0,30:0"), need_parsing=False)


def test_m2fpa_tree_missing_parsing_map_is_named(tmp_path):
  root, parsing = tmp_path / "m2fpa", tmp_path / "parsing"
  _tree(root, parsing_dir=parsing)  # subject 004 has no parsing map
  cfg = _paper_cfg(root, parsing)
  d = md.m2fpa_tree_data(cfg, need_parsing=True)  # seed 0: 004 is a test subject
  assert d["gan"]["frontal_parsing"].shape == (6, 16, 16) and d["gan"]["frontal_parsing"].max() < 6
  os.remove(parsing / "Train/001/White/Neutral/a4-7.png")  # 001 is a train subject
  with pytest.raises(
    FileNotFoundError,
    match=r"missing parsing map .*Train/001/White/Neutral/a4-7.png.*paper.parsing_dir",
  ):
    md.m2fpa_tree_data(cfg, need_parsing=True)
  assert md.m2fpa_tree_data(cfg, need_parsing=False)["gan"]["image"].shape[0] == 6  # baseline only


def _multipie_tree(root, skip=()):
  """Subjects 001, 002 (train), 201, 202 (test); session 01 neutral; cameras 05_1, 14_0, 11_0;
  illuminations 07 and 03."""
  rng = np.random.default_rng(1)
  for subj in (1, 2, 201, 202):
    for cam in ("05_1", "14_0", "11_0"):
      for ill in (7, 3):
        name = f"{subj:03d}_01_01_{cam.replace('_', '')}_{ill:02d}.png"
        rel = f"data/session01/multiview/{subj:03d}/01/{cam}/{name}"
        if rel in skip:
          continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(root / rel)


def _multipie_cfg(root):
  cfg = mc.get_config("smoke")
  cfg.setting = "multipie"
  cfg.data.poses = "data"
  cfg.paper.root = str(root)
  cfg.paper.train_max_subject = 2
  return cfg


def test_multipie_tree_pairs_probes_with_the_frontal_image_under_their_light(tmp_path):
  root = tmp_path / "mpie"
  _multipie_tree(root)
  d = md.multipie_tree_data(_multipie_cfg(root), need_parsing=False)
  assert d["num_train_ids"] == 2 and d["gan"]["image"].shape == (2 * 3 * 2, 16, 16, 1)
  assert sorted(map(tuple, d["poses"].tolist())) == [(-90.0, 0.0), (-15.0, 0.0)]
  np.testing.assert_array_equal(d["gan_poses"][d["frontal_pose"]], [0.0, 0.0])
  assert d["gallery"]["image"].shape[0] == 2  # 05_1, illumination 07
  assert d["probe"]["image"].shape[0] == 2 * 2 * 2  # 2 test subjects x 2 cameras x 2 lights
  # the frontal target of a probe is the 05_1 image under the same light: read it independently
  read = lambda rel: md._read_image(str(root / rel), 16, mode="L")[..., None]  # noqa: E731
  want = read("data/session01/multiview/201/01/05_1/201_01_01_051_03.png")
  hits = [np.array_equal(f, want) for f in d["probe"]["frontal"]]
  assert sum(hits) == 2  # the two probes of subject 201 under light 03
  g = read("data/session01/multiview/201/01/05_1/201_01_01_051_07.png")
  np.testing.assert_array_equal(d["gallery"]["image"][0], g)
  # labels of the DR-GAN D: train-local subjects, rows of gan_poses
  assert set(d["gan"]["label"].tolist()) == {0, 1}
  poses = d["gan_poses"][d["gan"]["pose_index"]]
  assert sorted(set(map(tuple, poses.tolist()))) == [(-90.0, 0.0), (-15.0, 0.0), (0.0, 0.0)]
  # the same arrays when the manual dir is the data/ folder itself
  d2 = md.multipie_tree_data(_multipie_cfg(root / "data"), need_parsing=False)
  np.testing.assert_array_equal(d2["probe"]["image"], d["probe"]["image"])


def test_multipie_tree_bad_input_names_the_file(tmp_path):
  root = tmp_path / "mpie"
  missing = "data/session01/multiview/202/01/05_1/202_01_01_051_03.png"
  _multipie_tree(root, skip=(missing,))
  with pytest.raises(
    ValueError, match=r"202_01_01_110_03\.png': no camera 05_1 image of subject 202"
  ):
    md.multipie_tree_data(_multipie_cfg(root), need_parsing=False)
  _multipie_tree(tmp_path / "m2")
  bad = tmp_path / "m2/data/session01/multiview/001/01/05_1/001_01_01_051_7.png"
  Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(bad)
  with pytest.raises(ValueError, match=r"'001_01_01_051_7\.png'.*does not parse"):
    md.multipie_tree_data(_multipie_cfg(tmp_path / "m2"), need_parsing=False)


@pytest.mark.parametrize(
  "overrides,match",
  [
    ({"recog.num_groups": "0"}, r"--config.recog.num_groups=0 is invalid"),
    (
      {"recog.model": "lightcnn29v2", "recog.num_groups": "2"},
      r"--config.recog.num_groups=2 is invalid: expected 4 with recog.model='lightcnn29v2'",
    ),
    ({"gen.res_blocks": "-1"}, r"--config.gen.res_blocks=-1 is invalid"),
    ({"gen.conv_impl": "fft"}, r"--config.gen.conv_impl='fft' is invalid"),
    ({"param_init": "numpy"}, r"--config.param_init='numpy' is invalid.*'flax', 'host'"),
  ],
)
def test_smoke_size_keys_are_validated(overrides, match):
  from vision_jax.utils import ConfigError, load_config

  with pytest.raises(ConfigError, match=match):
    load_config("m2fpa", "smoke", overrides)


def test_default_and_paper_presets_keep_the_full_architecture():
  for preset in ("default", "paper"):
    cfg = mc.get_config(preset)
    assert cfg.param_init == "flax" and cfg.recog.num_groups == 4
    assert cfg.gen.res_blocks == 1 and cfg.gen.conv_impl == "auto"
