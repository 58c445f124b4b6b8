"""The CRN experiment's datasets as in-memory `FewShotArrays` (images resized to one size)."""

from __future__ import annotations

import numpy as np

from vision_jax import data as vdata

BUILDERS = {
  "miniimagenet": ("vj_mini_imagenet", ("base", "val", "novel")),
  "cub": ("vj_cub_fewshot", ("base", "val", "novel")),
  # Omniglot: background characters are base; the evaluation set is split in half, val / novel.
  "omniglot": ("vj_omniglot", ("background", "evaluation")),
}
NAMES = ("embedded", *BUILDERS)


def load_fewshot(cfg) -> vdata.FewShotArrays:
  """``cfg.data.name``: ``embedded`` (offline) or a real benchmark built from ``manual_dir``.

  Raises:
    ValueError: unknown ``data.name`` (lists the valid ones).
    FileNotFoundError: the benchmark's raw files are missing (names them and the fix).
  """
  d = cfg.data
  if d.name == "embedded":
    return vdata.embedded_fewshot(
      num_glyph_classes=int(d.num_glyph_classes),
      photo_grid=int(d.photo_grid),
      per_class=int(d.per_class),
      size=int(d.image_size),
      fractions=tuple(d.fractions),
      seed=int(cfg.seed),
    )
  if d.name not in BUILDERS:
    raise ValueError(f"config.data.name={d.name!r}; valid: {', '.join(NAMES)}")
  builder, splits = BUILDERS[d.name]
  images, labels, names, split_ids = [], [], [], {}
  offset = 0
  for split in splits:
    src = vdata.load(builder, split, data_dir=d.data_dir or None, manual_dir=d.manual_dir or None)
    ex_labels, ex_names = [], {}
    for i in range(len(src)):
      ex = src[i]
      images.append(vdata.resize_image(ex["image"], int(d.image_size), channels=int(d.channels)))
      ex_labels.append(int(ex["label"]))
      name = ex["class_name"]
      ex_names[int(ex["label"])] = name.decode() if isinstance(name, bytes) else str(name)
    n = max(ex_labels) + 1
    labels.extend(offset + c for c in ex_labels)
    names.extend(ex_names.get(c, str(c)) for c in range(n))
    split_ids[split] = list(range(offset, offset + n))
    offset += n
  if d.name == "omniglot":
    ev = split_ids.pop("evaluation")
    split_ids = {
      "base": split_ids["background"],
      "val": ev[: len(ev) // 2],
      "novel": ev[len(ev) // 2 :],
    }
  return vdata.FewShotArrays(
    images=np.stack(images),
    labels=np.asarray(labels, np.int64),
    class_names=tuple(names),
    splits=split_ids,
  )
