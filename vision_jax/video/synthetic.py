"""Hierarchical synthetic videos from real pixels ("event videos"), the DCGN embedded default.

Structure (frames -> shots -> events -> video), all from Fashion-MNIST images:

* Each video picks 4 *event* classes and 2 *distractor* classes (distinct, of 10) and one source
  image ("actor") per class; every shot of a class shows that same image, jittered per frame
  (shift, brightness, pixel noise), so a recurring shot is the same content again.
* The 4 event classes are paired at random into two events ``{a, b}`` and ``{c, d}`` (one of the
  3 pairings). The labels are the two events, out of the 45 unordered class pairs.
* The video is 4 segments, the events in a random order with each event twice
  (e.g. E1 E2 E1 E2: non-linear editing, recurring shots). A segment of event ``{a, b}``
  alternates event shots (``a``, ``b``, ``a``, ...; 6-10 frames) with distractor cutaways
  (3-6 frames), so the event's two classes are never adjacent frames.
* Lengths vary in ``[min_frames, max_frames]`` (default 200-300); frames beyond are padding.

What an order-blind model can reach: the frame multiset reveals the 4 event classes (at best)
but not how they pair; all 3 pairings are equally likely, so the Bayes-optimal bag-of-frames
scores are 1/3 for each of the 6 pairs within the 4 classes (:func:`bag_oracle_scores`).
The shuffled-frames control (:func:`shuffle_frames`) destroys shots and events and leaves
exactly that information.
"""

from __future__ import annotations

import itertools

import numpy as np

NUM_BASE_CLASSES = 10
PAIRS = list(itertools.combinations(range(NUM_BASE_CLASSES), 2))
PAIR_INDEX = {p: i for i, p in enumerate(PAIRS)}
NUM_EVENT_LABELS = len(PAIRS)  # 45


def jitter_frames(
  images: np.ndarray, num_jitters: int, rng: np.random.Generator, *, max_shift: int = 3
) -> np.ndarray:
  """``[N, H, W]`` uint8 -> ``[N, J, H, W]`` uint8 jittered copies (shift, gain, noise).

  Each copy: a random shift by up to ``max_shift`` pixels (zero fill), gain in ``[0.7, 1.1]``,
  additive Gaussian noise of std 20 grey levels, clipped to ``[0, 255]``.
  """
  if images.ndim != 3 or images.dtype != np.uint8:
    raise ValueError(f"images must be uint8 [N, H, W]; got {images.dtype} {images.shape}")
  n, h, w = images.shape
  out = np.zeros((n, num_jitters, h, w), np.uint8)
  s = max_shift
  padded = np.pad(images, ((0, 0), (s, s), (s, s)))
  for j in range(num_jitters):
    dy, dx = rng.integers(-s, s + 1, size=(2, n))
    gain = rng.uniform(0.7, 1.1, size=(n, 1, 1))
    for i in range(n):
      crop = padded[i, s + dy[i] : s + dy[i] + h, s + dx[i] : s + dx[i] + w]
      out[i, j] = np.clip(crop * gain[i] + rng.normal(0, 20, (h, w)), 0, 255).astype(np.uint8)
  return out


def generate_event_videos(
  image_class: np.ndarray,
  num_jitters: int,
  num_videos: int,
  rng: np.random.Generator,
  *,
  min_frames: int = 200,
  max_frames: int = 300,
  segments: int = 4,
) -> dict[str, np.ndarray]:
  """Draws videos as indices into a frame bank of ``len(image_class) * num_jitters`` frames.

  Bank frame ``i * num_jitters + j`` is jitter ``j`` of source image ``i`` (class
  ``image_class[i]``).

  Args:
    image_class: ``[N]`` class (0..9) of each source image of the bank.
    num_jitters: ``J`` jittered copies per source image.
    num_videos: ``V``.
    rng: generator.
    min_frames, max_frames: length range; videos are padded to ``max_frames``.
    segments: event segments per video (even, >= 2: each event appears ``segments / 2`` times).

  Returns:
    ``{"frames": int32 [V, max_frames] bank ids (0 in padding), "num_frames": int32 [V],
    "labels": uint8 [V, 45] multi-hot event pairs, "event_classes": int8 [V, 4],
    "frame_class": int8 [V, max_frames] (-1 in padding)}``.

  Raises:
    ValueError: a class without source images, or bad lengths/segments.
  """
  image_class = np.asarray(image_class)
  by_class = [np.flatnonzero(image_class == c) for c in range(NUM_BASE_CLASSES)]
  if any(len(b) == 0 for b in by_class):
    raise ValueError("image_class must contain every class 0..9 at least once")
  if not 40 <= min_frames <= max_frames:
    raise ValueError(f"need 40 <= min_frames <= max_frames; got {min_frames}, {max_frames}")
  if segments < 2 or segments % 2:
    raise ValueError(f"segments={segments}; expected an even number >= 2")
  frames = np.zeros((num_videos, max_frames), np.int32)
  frame_class = np.full((num_videos, max_frames), -1, np.int8)
  labels = np.zeros((num_videos, NUM_EVENT_LABELS), np.uint8)
  event_classes = np.zeros((num_videos, 4), np.int8)
  num_frames = rng.integers(min_frames, max_frames + 1, num_videos).astype(np.int32)
  for v in range(num_videos):
    cls = rng.permutation(NUM_BASE_CLASSES)[:6]
    ev, distract = cls[:4], cls[4:]
    event_classes[v] = np.sort(ev)
    events = [tuple(sorted(ev[:2])), tuple(sorted(ev[2:]))]
    for e in events:
      labels[v, PAIR_INDEX[e]] = 1
    actor = {c: rng.choice(by_class[c]) for c in cls}
    order = rng.permutation([0, 1] * (segments // 2))
    bounds = np.linspace(0, num_frames[v], segments + 1).astype(int)
    for s, e_id in enumerate(order):
      a, b = events[e_id]
      pos, end, turn, cutaway = bounds[s], bounds[s + 1], int(rng.integers(2)), False
      while pos < end:
        if cutaway:
          c, n = distract[rng.integers(2)], int(rng.integers(3, 7))
        else:
          c, n = (a, b)[turn], int(rng.integers(6, 11))
          turn ^= 1
        n = min(n, end - pos)
        jit = rng.integers(0, num_jitters, n)
        frames[v, pos : pos + n] = actor[c] * num_jitters + jit
        frame_class[v, pos : pos + n] = c
        pos += n
        cutaway = not cutaway
  return {
    "frames": frames,
    "num_frames": num_frames,
    "labels": labels,
    "event_classes": event_classes,
    "frame_class": frame_class,
  }


def shuffle_frames(videos: dict[str, np.ndarray], rng: np.random.Generator) -> dict:
  """The control: each video's real frames randomly permuted (padding stays at the end)."""
  out = {k: v.copy() for k, v in videos.items()}
  for v, n in enumerate(videos["num_frames"]):
    p = rng.permutation(int(n))
    out["frames"][v, :n] = videos["frames"][v, p]
    out["frame_class"][v, :n] = videos["frame_class"][v, p]
  return out


def bag_oracle_scores(event_classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Bayes-optimal order-blind scores given the 4 event classes: 1/3 on each of their 6 pairs.

  A tiny random jitter (< 1e-6) breaks the ties, so GAP is that of a random ranking among the
  tied pairs (its expectation over draws is what an order-blind model can reach at best).
  """
  s = rng.uniform(0, 1e-6, (event_classes.shape[0], NUM_EVENT_LABELS))
  for v, cls in enumerate(event_classes):
    for p in itertools.combinations(sorted(int(c) for c in cls), 2):
      s[v, PAIR_INDEX[p]] += 1 / 3
  return s
