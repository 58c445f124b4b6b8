"""Folder-of-identities face sets (CASIA-WebFace / MS1M style): ``<root>/<identity>/<img>``.

References:
  Yi, Lei, Liao, Li. "Learning Face Representation from Scratch." arXiv:1411.7923, 2014
  (CASIA-WebFace: 494,414 images of 10,575 identities).
"""

import os

import numpy as np
import tensorflow_datasets as tfds

from vision_jax.data.builders import ManualDirBuilder
from vision_jax.data.lfw import list_identity_folder


class VjIdentityFolder(ManualDirBuilder):
  """Any ``<manual_dir>/<identity>/<image>.{jpg,png,bmp}`` tree as one ``train`` split.

  Element: ``{"image": uint8 [H, W, 3] (original encoded bytes), "label": index of the identity
  directory in sorted order, "identity": directory name (bytes)}``, sorted by (identity, file).
  A ``manual_dir`` is required (no default); one data_dir holds one tree, so use a separate
  ``data_dir`` per face set (CASIA-WebFace, an MS1M export, ...).

  Choice: PNG/BMP files are stored as-is with the JPEG feature tag; PIL decodes by content, so
  mixed trees read back correctly.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Original encoded images, array_record."}
  INSTALL_HINT = (
    "Pass manual_dir=DIR where DIR/<identity>/<image>.jpg (e.g. CASIA-WebFace/0000045/001.jpg; "
    "CASIA-WebFace is distributed on request by CASIA, MS1M-style sets as folder exports)."
  )
  MANUAL_DOWNLOAD_INSTRUCTIONS = INSTALL_HINT

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info(
      {
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
        "label": np.int64,
        "identity": tfds.features.Text(),
      }
    )

  def _split_generators(self, dl_manager):
    d = self.manual_path(dl_manager)
    identities, paths, labels = list_identity_folder(d)
    if not paths:
      raise FileNotFoundError(
        f"{self.name}: no <identity>/<image> files under {d}. Fix: {self.INSTALL_HINT}"
      )
    return {"train": self._generate_examples(d, identities, paths, labels)}

  def _generate_examples(self, root, identities, paths, labels):
    for i, (p, lab) in enumerate(zip(paths, labels)):
      with open(os.path.join(root, p), "rb") as f:
        data = f.read()
      yield i, {"image": data, "label": int(lab), "identity": identities[lab]}
