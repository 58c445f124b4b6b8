"""vision_jax.data: TF-free TFDS builders -> array_record -> grain pipelines.

Importing this package registers the ``vj_*`` TFDS builders.
"""

from vision_jax.data.builders import (
  FASHION_MNIST_CLASSES,
  ManualDirBuilder,
  VjFashionMnist,
  decode_image,
  encode_png,
)
from vision_jax.data.faces import VjIdentityFolder
from vision_jax.data.fewshot import (
  VjCubFewshot,
  VjMiniImagenet,
  VjOmniglot,
  cub_closerlook_split,
  list_omniglot,
  read_cub_metadata,
  read_ravi_csv,
)
from vision_jax.data.fewshot_embedded import FewShotArrays, embedded_fewshot
from vision_jax.data.hashing import (
  CIFAR10_CLASSES,
  ConcatSource,
  VjCifar10,
  VjHashingImageList,
  array_hashing_sources,
  cifar10_hashing_sources,
  fashion_mnist_hashing_sources,
  hashing_split,
  read_cifar10_batch,
  read_image_list,
)
from vision_jax.data.hfr import (
  HFR_PROTOCOLS,
  HfrRecord,
  VjHfr,
  protocol_files,
  read_gray,
  read_hfr_fold,
  read_hfr_list,
)
from vision_jax.data.idx import read_idx, write_idx
from vision_jax.data.lfw import LfwPairs, VjLfw, list_identity_folder, read_lfw_pairs
from vision_jax.data.longtail import (
  head_medium_tail_split,
  long_tailed_counts,
  long_tailed_indices,
)
from vision_jax.data.m2fpa import (
  M2fpaRecord,
  VjM2fpa,
  list_m2fpa,
  m2fpa_poses,
  parse_m2fpa_path,
  read_camera_poses,
)
from vision_jax.data.offline import (
  SKIMAGE_NATURAL_IMAGES,
  digits_source,
  lfw_subset_source,
  skimage_natural_images,
)
from vision_jax.data.pipeline import (
  ArraySource,
  MappedSource,
  SubsetSource,
  eval_batches,
  materialize,
  num_eval_batches,
  prefetch_iterator,
  synthetic_source,
  to_global_arrays,
  train_dataset,
)
from vision_jax.data.reid import (
  VjDukemtmcReid,
  VjMarket1501,
  list_reid_split,
  parse_reid_name,
)
from vision_jax.data.sources import default_data_dir, fashion_mnist, load
from vision_jax.data.transforms import image_to_float, random_horizontal_flip, resize_image
from vision_jax.data.wider_face import (
  VjWiderFace,
  WiderFaceImage,
  read_wider_face_annotations,
  sanitize_boxes,
)
from vision_jax.data.youtube8m import (
  Yt8mFrameSource,
  dequantize,
  iter_tfrecord,
  iter_yt8m_records,
  pad_video,
)

__all__ = [
  "array_hashing_sources",
  "ArraySource",
  "MappedSource",
  "CIFAR10_CLASSES",
  "cifar10_hashing_sources",
  "ConcatSource",
  "cub_closerlook_split",
  "embedded_fewshot",
  "FewShotArrays",
  "list_omniglot",
  "read_cub_metadata",
  "read_ravi_csv",
  "VjCubFewshot",
  "VjMiniImagenet",
  "VjOmniglot",
  "decode_image",
  "default_data_dir",
  "digits_source",
  "encode_png",
  "eval_batches",
  "fashion_mnist",
  "fashion_mnist_hashing_sources",
  "FASHION_MNIST_CLASSES",
  "hashing_split",
  "head_medium_tail_split",
  "image_to_float",
  "HFR_PROTOCOLS",
  "HfrRecord",
  "protocol_files",
  "read_gray",
  "read_hfr_fold",
  "read_hfr_list",
  "VjHfr",
  "lfw_subset_source",
  "LfwPairs",
  "list_identity_folder",
  "list_reid_split",
  "load",
  "long_tailed_counts",
  "long_tailed_indices",
  "ManualDirBuilder",
  "materialize",
  "num_eval_batches",
  "parse_reid_name",
  "prefetch_iterator",
  "random_horizontal_flip",
  "resize_image",
  "read_cifar10_batch",
  "read_idx",
  "read_image_list",
  "read_lfw_pairs",
  "SKIMAGE_NATURAL_IMAGES",
  "skimage_natural_images",
  "SubsetSource",
  "synthetic_source",
  "to_global_arrays",
  "train_dataset",
  "VjCifar10",
  "VjDukemtmcReid",
  "VjFashionMnist",
  "VjHashingImageList",
  "VjIdentityFolder",
  "VjLfw",
  "VjMarket1501",
  "write_idx",
  "Yt8mFrameSource",
  "dequantize",
  "iter_tfrecord",
  "iter_yt8m_records",
  "pad_video",
  "VjWiderFace",
  "WiderFaceImage",
  "read_wider_face_annotations",
  "sanitize_boxes",
  "M2fpaRecord",
  "VjM2fpa",
  "list_m2fpa",
  "m2fpa_poses",
  "parse_m2fpa_path",
  "read_camera_poses",
]
