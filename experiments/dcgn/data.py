"""Data of the DCGN experiment: the embedded event videos (frame bank + CNN) and YouTube-8M."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence

import jax
import numpy as np

from vision_jax import data as vdata
from vision_jax.data.transforms import image_to_float
from vision_jax.models import ConvNet
from vision_jax.train import train_and_evaluate
from vision_jax.train.classification import classification_task
from vision_jax.video import synthetic


class BankVideoSource(Sequence):
  """Videos stored as frame-bank ids; ``source[i]`` gathers their features.

  Returns ``{"rgb": float32 [T, D_rgb], "audio": float32 [T, D_audio], "num_frames": int32,
  "labels": uint8 [C]}`` (padding frames hold bank frame 0: the mask must hide them).
  """

  def __init__(self, videos: dict[str, np.ndarray], bank: dict[str, np.ndarray]):
    self.videos, self.bank = videos, bank

  def __len__(self) -> int:
    return len(self.videos["num_frames"])

  def __getitems__(self, indices):
    idx = np.asarray(indices)
    frames = self.videos["frames"][idx]
    return [
      {
        "rgb": self.bank["rgb"][f],
        "audio": self.bank["audio"][f],
        "num_frames": self.videos["num_frames"][i],
        "labels": self.videos["labels"][i],
      }
      for i, f in zip(idx, frames)
    ]

  def __getitem__(self, i):
    return self.__getitems__([int(i)])[0]


def _images(cfg, split, rng):
  """``(images uint8 [N, 28, 28], labels [N])``: Fashion-MNIST, or random pixels for smoke."""
  d = cfg.data
  if d.name == "events_synthetic":
    src = vdata.synthetic_source(
      10 * d.images_per_class * 4, (28, 28, 1), 10, seed=rng.integers(1 << 30)
    )
    return src.arrays["image"][..., 0], src.arrays["label"]
  prefix = "train" if split == "train" else "t10k"
  root = d.fashion_mnist_dir
  paths = [
    os.path.join(root, f"{prefix}-{k}-idx{n}-ubyte.gz") for k, n in (("images", 3), ("labels", 1))
  ]
  for p in paths:
    if not os.path.exists(p):
      raise FileNotFoundError(
        f"{p} not found (config data.fashion_mnist_dir={root!r}); install dataset-fashion-mnist "
        "or point data.fashion_mnist_dir at the IDX files"
      )
  return vdata.read_idx(paths[0]), vdata.read_idx(paths[1]).astype(np.int64)


def _pick_per_class(labels, n, rng):
  return np.concatenate(
    [rng.choice(np.flatnonzero(labels == c), n, replace=False) for c in range(10)]
  )


def train_frame_cnn(cfg, workdir, images, labels, *, progress=True):
  """Trains the small BN ConvNet on ``images`` through the shared loop; returns ``embed(x)``."""
  model = ConvNet(num_classes=10, widths=tuple(cfg.cnn.widths), hidden=int(cfg.cnn.hidden))
  task = classification_task(model, num_classes=10)
  ccfg = cfg.copy_and_resolve_references()
  with ccfg.unlocked():
    ccfg.optim = dict(name="adam", lr=float(cfg.cnn.lr), schedule="cosine", warmup_steps=0)
    ccfg.train.num_steps = int(cfg.cnn.num_steps)
  ds = vdata.train_dataset(
    vdata.ArraySource({"image": images[..., None], "label": labels}),
    global_batch_size=int(cfg.cnn.batch_size),
    seed=cfg.seed,
  )
  summary, state = train_and_evaluate(
    ccfg, workdir, task, ds, None, progress=progress, return_state=True
  )
  variables = {"params": state.params, **state.model_state}

  @jax.jit
  def embed(x):
    _, inter = model.apply(variables, image_to_float(x), train=False)
    return inter["embedding"]

  return embed, summary


def frame_bank(cfg, workdir, split, embed, rng):
  """Jittered frames of ``images_per_class`` source images per class, embedded."""
  images, labels = _images(cfg, split, rng)
  keep = _pick_per_class(labels, int(cfg.data.images_per_class), rng)
  frames = synthetic.jitter_frames(
    images[keep],
    int(cfg.data.num_jitters),
    rng,
    max_shift=int(cfg.data.jitter_shift),
    noise=float(cfg.data.jitter_noise),
  )
  flat = frames.reshape(-1, 28, 28)
  rgb = np.concatenate(
    [np.asarray(embed(flat[i : i + 1024, ..., None])) for i in range(0, len(flat), 1024)]
  )
  pooled = flat.reshape(-1, 7, 4, 7, 4).mean((2, 4)).reshape(len(flat), 49) / 255.0
  proj = np.random.default_rng(1234).normal(size=(49, int(cfg.data.audio_dim))) / 7.0
  return {
    "rgb": rgb.astype(np.float32),
    "audio": (pooled @ proj).astype(np.float32),
    "image_class": labels[keep].astype(np.int64),
  }


def _standardize(banks):
  """z-scores every feature dimension with the train bank's statistics (both banks).

  Choice: YouTube-8M's features are PCA-whitened, hence centred; the ConvNet's ReLU embedding is
  not, and its all-positive frames make every cosine ~1 (a complete, over-smoothing graph).
  """
  out = {s: dict(b) for s, b in banks.items()}
  for k in ("rgb", "audio"):
    mu = banks["train"][k].mean(0, keepdims=True)
    sd = banks["train"][k].std(0, keepdims=True) + 1e-6
    for s in out:
      out[s][k] = ((banks[s][k] - mu) / sd).astype(np.float32)
  return out


def event_video_sources(cfg, workdir, *, progress=True):
  """``{setting: (train_source, eval_source)}``, meta (chance/oracle inputs), feature dims."""
  d = cfg.data
  rng = np.random.default_rng(cfg.seed)
  cache = os.path.join(workdir, "frame_bank.npz")
  if os.path.exists(cache):
    z = np.load(cache)
    banks = {
      s: {k: z[f"{s}_{k}"] for k in ("rgb", "audio", "image_class")} for s in ("train", "eval")
    }
  else:
    cnn_images, cnn_labels = _images(cfg, "train", rng)
    embed, summary = train_frame_cnn(
      cfg, os.path.join(workdir, "frame_cnn"), cnn_images, cnn_labels, progress=progress
    )
    banks = {s: frame_bank(cfg, workdir, s, embed, rng) for s in ("train", "eval")}
    np.savez(cache, **{f"{s}_{k}": v for s, b in banks.items() for k, v in b.items()})
  if d.standardize:
    banks = _standardize(banks)
  kw = dict(
    min_frames=int(d.min_frames),
    max_frames=int(d.max_frames),
    segments=int(d.segments),
    shot_frames=tuple(int(v) for v in d.shot_frames),
    cutaway_frames=tuple(int(v) for v in d.cutaway_frames),
  )
  vrng = np.random.default_rng(cfg.seed + 1)
  train_v = synthetic.generate_event_videos(
    banks["train"]["image_class"], int(d.num_jitters), int(d.num_train), vrng, **kw
  )
  eval_v = synthetic.generate_event_videos(
    banks["eval"]["image_class"], int(d.num_jitters), int(d.num_eval), vrng, **kw
  )
  sources = {}
  for setting in [s for s in cfg.settings.split(",") if s]:
    if setting == "original":
      tv, ev = train_v, eval_v
    elif setting == "shuffled":
      srng = np.random.default_rng(cfg.seed + 2)
      tv, ev = synthetic.shuffle_frames(train_v, srng), synthetic.shuffle_frames(eval_v, srng)
    else:
      raise ValueError(f"unknown setting {setting!r} in config.settings; valid: original, shuffled")
    sources[setting] = (BankVideoSource(tv, banks["train"]), BankVideoSource(ev, banks["eval"]))
  dims = {"rgb": banks["train"]["rgb"].shape[1], "audio": banks["train"]["audio"].shape[1]}
  return sources, eval_v, dims, synthetic.NUM_EVENT_LABELS


def youtube8m_sources(cfg):
  """Frame-level TFRecords from ``data.train_pattern`` / ``data.eval_pattern``."""
  d = cfg.data
  out = []
  for key in ("train_pattern", "eval_pattern"):
    paths = sorted(glob.glob(d[key]))
    if not paths:
      raise FileNotFoundError(
        f"config data.{key}={d[key]!r} matches no files; pass the YouTube-8M frame-level "
        "*.tfrecord glob (e.g. --config.data.train_pattern='/data/yt8m/frame/train*.tfrecord')"
      )
    out.append(
      vdata.Yt8mFrameSource(paths, num_classes=int(d.num_classes), max_frames=int(d.max_frames))
    )
  return (
    {"original": tuple(out)},
    None,
    dict(vdata.youtube8m.YT8M_FEATURE_SIZES),
    int(d.num_classes),
  )
