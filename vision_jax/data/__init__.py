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
from vision_jax.data.idx import read_idx, write_idx
from vision_jax.data.longtail import (
  head_medium_tail_split,
  long_tailed_counts,
  long_tailed_indices,
)
from vision_jax.data.pipeline import (
  ArraySource,
  SubsetSource,
  eval_batches,
  materialize,
  num_eval_batches,
  prefetch_iterator,
  synthetic_source,
  to_global_arrays,
  train_dataset,
)
from vision_jax.data.sources import default_data_dir, fashion_mnist, load

__all__ = [
  "ArraySource",
  "SubsetSource",
  "eval_batches",
  "materialize",
  "num_eval_batches",
  "prefetch_iterator",
  "synthetic_source",
  "to_global_arrays",
  "train_dataset",
  "FASHION_MNIST_CLASSES",
  "ManualDirBuilder",
  "VjFashionMnist",
  "decode_image",
  "default_data_dir",
  "encode_png",
  "fashion_mnist",
  "head_medium_tail_split",
  "long_tailed_counts",
  "long_tailed_indices",
  "load",
  "read_idx",
  "write_idx",
]
