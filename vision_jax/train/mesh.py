"""Device mesh and shardings: one ``make_mesh`` helper for 1 CPU, 8 fake CPUs, a GPU or a pod.

Parallelism is ``jax.jit`` + ``NamedSharding`` (GSPMD). Axis ``data`` splits the batch; the optional
axis ``model`` splits class-parallel heads (class centres, FC weights over 1M+ classes).

Choice: axis types are ``AxisType.Auto``. jax 0.10.2's ``jax.make_mesh`` defaults to Explicit axes,
whose sharding-in-types rules reject ordinary GSPMD code (e.g. a replicated param times a
batch-sharded activation needs no annotation under Auto).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA = "data"
MODEL = "model"


def make_mesh(
  data: int = -1, model: int = 1, *, devices: Sequence[jax.Device] | None = None
) -> Mesh:
  """Builds a ``(data, model)`` mesh with Auto axis types.

  Args:
    data: size of the ``data`` axis; ``-1`` uses all devices not used by ``model``.
    model: size of the ``model`` axis (class/model parallelism); 1 = pure data parallel.
    devices: devices to use (default: all global devices).

  Returns:
    A ``jax.sharding.Mesh`` with axis names ``("data", "model")``.

  Raises:
    ValueError: if the axis sizes do not multiply to the number of devices.
  """
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices)
  if model < 1 or n % model:
    raise ValueError(f"model axis size {model} must be >= 1 and divide the device count {n}")
  if data == -1:
    data = n // model
  if data * model != n:
    raise ValueError(
      f"mesh (data={data}, model={model}) needs {data * model} devices but {n} are given; "
      f"pass data=-1 to use all of them"
    )
  return jax.make_mesh(
    (data, model), (DATA, MODEL), axis_types=(AxisType.Auto, AxisType.Auto), devices=devices
  )


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding that replicates an array on every device of ``mesh``."""
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding that splits the leading (batch) dimension over the ``data`` axis."""
  return NamedSharding(mesh, P(DATA))


def to_global_batch(local_batch, mesh: Mesh, shardings=None):
  """Turns this process's numpy batch into global ``jax.Array``s.

  ``shardings`` (default: every leaf's leading axis over ``data``) is a ``NamedSharding`` or a
  tree of them that is a prefix of the batch (:func:`vision_jax.train.step.batch_shardings`). A
  replicated leaf (``P()``) is passed whole by every process. On one host this is a
  ``device_put``; on a pod every process passes its own slice of a ``data``-sharded leaf and the
  result is one global array (``jax.make_array_from_process_local_data``).
  """
  if shardings is None:
    shardings = batch_sharding(mesh)
  n_data = mesh.shape[DATA]
  local_devices = max(n_data // jax.process_count(), 1)

  def put(sharding, x):
    x = np.asarray(x)
    spec = tuple(sharding.spec)
    if spec and spec[0] is not None and (x.ndim == 0 or x.shape[0] % local_devices):
      raise ValueError(
        f"a batch of {x.shape[0] if x.ndim else 'scalar'} examples (array shape {x.shape}) cannot "
        f"be split over the {n_data} devices of the mesh's 'data' axis ({local_devices} on this "
        f"process): make the global batch size (train and eval) a multiple of {n_data}, or "
        f"replicate this leaf with the task's batch_partition."
      )
    return jax.make_array_from_process_local_data(sharding, x)

  return jax.tree.map(
    lambda s, sub: jax.tree.map(lambda x: put(s, x), sub),
    shardings,
    local_batch,
    is_leaf=lambda s: isinstance(s, NamedSharding),
  )
