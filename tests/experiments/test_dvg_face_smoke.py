"""The DVG-Face experiment's smoke preset runs every stage end to end through the launcher."""

import json
import os

import pytest

from experiments.dvg_face import __main__ as entry
from experiments.dvg_face import data as dd
from experiments.dvg_face import train


def test_smoke_preset_runs(tmp_path):
  out = entry.main(["--preset=smoke", f"--workdir={tmp_path}"])
  assert set(out["methods"]) == {"pretrained", "real", "generated"}
  for m in out["methods"].values():
    for key in ("rank1", "vr@far=0.01", "vr@far=0.001", "vr@far=0.0001"):
      assert 0.0 <= m[key] <= 1.0 and m[f"{key}_std"] >= 0.0
    assert m["num_folds"] == 2
  # the official objective: only the generator update (the D/G form is tested in tests/hfr)
  assert {"g/ort", "g/pix_rec", "g/ip", "g/pair"} <= set(out["generator"])
  assert not any(k.startswith("d/") for k in out["generator"])
  assert os.path.getsize(tmp_path / "generated_pairs.png") > 0
  with open(tmp_path / "results.json") as f:
    assert set(json.load(f)["methods"]) == set(out["methods"])
  assert "| + generated pairs (DVG-Face, w=0.001) |" in train.format_table(out)


def test_embedded_data_is_subject_disjoint_and_paired():
  d = dd.heterogeneous_pseudo_identities(
    image_size=16, max_identities=10, train_views=2, test_photos=2, test_probes=3
  )
  tr, te = d["train"], d["test"]
  assert d["num_train_ids"] == 6 and tr["image"].shape == (6 * 4, 16, 16, 1)
  assert te["image"].shape == (4 * 5, 16, 16, 1)
  assert (tr["modality"] == 0).sum() == (tr["modality"] == 1).sum() == 12
  folds = dd.eval_folds(te["label"], te["modality"], num_folds=3)
  for probe, gallery in folds:
    assert (te["modality"][probe] == 0).all() and (te["modality"][gallery] == 1).all()
    assert sorted(te["label"][gallery]) == list(range(4))
  batch = dd.PairStream(tr, 5, seed=1)[3]
  assert batch["a"].shape == batch["b"].shape == (5, 16, 16, 1)
  with pytest.raises(ValueError, match="data.modality"):
    dd.heterogeneous_pseudo_identities(modality="thermal")


def test_sketch_filter_is_a_line_drawing():
  import numpy as np

  img = np.zeros((16, 16))
  img[:, 8:] = 1.0  # one vertical edge
  s = dd.xdog(img)
  assert s.min() >= 0.0 and s.max() <= 1.0
  assert s[:, 12].mean() == 1.0  # flat bright region -> white paper
  assert s[:, 7].mean() < 0.2  # the dark side of the edge -> a dark stroke


@pytest.mark.parametrize(
  "overrides,match",
  [
    ({"model.num_groups": "0"}, r"--config.model.num_groups=0 is invalid"),
    ({"model.num_groups": "5"}, r"--config.model.num_groups=5 is invalid"),
    (
      {"model.name": "lightcnn29v2", "model.num_groups": "1"},
      r"--config.model.num_groups=1 is invalid: expected 4 with model.name='lightcnn29v2'",
    ),
    ({"gen.mid_res_blocks": "-1"}, r"--config.gen.mid_res_blocks=-1 is invalid"),
    ({"gen.last_res_blocks": "-1"}, r"--config.gen.last_res_blocks=-1 is invalid"),
    ({"param_init": "numpy"}, r"--config.param_init='numpy' is invalid.*'flax', 'host'"),
    ({"model.conv_impl": "fft"}, r"--config.model.conv_impl='fft' is invalid"),
  ],
)
def test_smoke_size_keys_are_validated(overrides, match):
  from vision_jax.utils import ConfigError, load_config

  with pytest.raises(ConfigError, match=match):
    load_config("dvg_face", "smoke", overrides)


def test_default_and_paper_presets_keep_the_full_architecture():
  from experiments.dvg_face import config as dc

  for preset in ("default", "paper"):
    cfg = dc.get_config(preset)
    assert cfg.param_init == "flax" and cfg.model.num_groups == 4
    assert (cfg.gen.mid_res_blocks, cfg.gen.last_res_blocks) == (1, 2)
    assert cfg.model.conv_impl == "auto" and "data" not in cfg.mesh
