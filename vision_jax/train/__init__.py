"""The shared, sharded train loop (one jit'd step, orbax checkpoints, resumable)."""

from vision_jax.train.checkpoint import Checkpointer, abstract_with_shardings
from vision_jax.train.ema import ema_update
from vision_jax.train.loop import NonFiniteError, evaluate, setup_runtime, train_and_evaluate
from vision_jax.train.mesh import (
  DATA,
  MODEL,
  batch_sharding,
  make_mesh,
  replicated,
  to_global_batch,
)
from vision_jax.train.optim import make_optimizer, make_schedule
from vision_jax.train.preemption import Preempted
from vision_jax.train.state import TrainState, split_variables
from vision_jax.train.step import (
  Task,
  Update,
  batch_shardings,
  cached_steps,
  create_train_state,
  make_eval_step,
  make_task_optimizers,
  make_train_step,
  state_shardings,
)
from vision_jax.train.sweep import SweepRun, read_summary, run_sweep
from vision_jax.train.writers import MetricWriter, plot_curves, read_metrics

__all__ = [
  "DATA",
  "MODEL",
  "Checkpointer",
  "MetricWriter",
  "NonFiniteError",
  "Preempted",
  "SweepRun",
  "Task",
  "TrainState",
  "Update",
  "abstract_with_shardings",
  "batch_sharding",
  "batch_shardings",
  "cached_steps",
  "create_train_state",
  "ema_update",
  "evaluate",
  "make_eval_step",
  "make_mesh",
  "make_optimizer",
  "make_schedule",
  "make_task_optimizers",
  "make_train_step",
  "plot_curves",
  "read_metrics",
  "read_summary",
  "replicated",
  "run_sweep",
  "setup_runtime",
  "split_variables",
  "state_shardings",
  "to_global_batch",
  "train_and_evaluate",
]
