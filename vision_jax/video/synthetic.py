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
  (2-4 frames), so the event's two classes are never adjacent frames.
* Lengths vary in ``[min_frames, max_frames]`` (default 200-300); frames beyond are padding.

What an order-blind model can reach: event shots average 8 frames and alternate with
cutaways averaging 3 frames, so each of the 4 event classes fills ~18% of the frames and each
of the 2 distractors ~14%: the bag of frames shows the 6 classes present and only partly which
4 form events, and never how they pair. Given the 6 classes every pair is an event with
probability 2/15; even knowing the 4 event classes, all 3 pairings are equally likely (1/3 per
pair). Both oracles are in :func:`bag_oracle_scores`. The shuffled-frames control (:func:`shuffle_frames`) destroys shots and events and leaves
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
  images: np.ndarray,
  num_jitters: int,
  rng: np.random.Generator,
  *,
  max_shift: int = 2,
  noise: float = 12.0,
) -> np.ndarray:
  """``[N, H, W]`` uint8 -> ``[N, J, H, W]`` uint8 jittered copies (shift, gain, noise).

  Each copy: a random shift by up to ``max_shift`` pixels (zero fill), gain in ``[0.8, 1.1]``,
  additive Gaussian noise of std ``noise`` grey levels, clipped to ``[0, 255]``.
  """
  if images.ndim != 3 or images.dtype != np.uint8:
    raise ValueError(f"images must be uint8 [N, H, W]; got {images.dtype} {images.shape}")
  n, h, w = images.shape
  out = np.zeros((n, num_jitters, h, w), np.uint8)
  s = max_shift
  padded = np.pad(images, ((0, 0), (s, s), (s, s)))
  for j in range(num_jitters):
    dy, dx = rng.integers(-s, s + 1, size=(2, n))
    gain = rng.uniform(0.8, 1.1, size=(n, 1, 1))
    for i in range(n):
      crop = padded[i, s + dy[i] : s + dy[i] + h, s + dx[i] : s + dx[i] + w]
      out[i, j] = np.clip(crop * gain[i] + rng.normal(0, noise, (h, w)), 0, 255).astype(np.uint8)
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
  shot_frames: tuple[int, int] = (6, 10),
  cutaway_frames: tuple[int, int] = (2, 4),
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
    shot_frames: inclusive length range of an event shot.
    cutaway_frames: inclusive length range of a distractor cutaway.

  Returns:
    ``{"frames": int32 [V, max_frames] bank ids (0 in padding), "num_frames": int32 [V],
    "labels": uint8 [V, 45] multi-hot event pairs, "event_classes": int8 [V, 4],
    "present_classes": int8 [V, 6] (events + distractors; a short video may show only one of
    the two distractors, never fewer than the 4 event classes),
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
  present_classes = np.zeros((num_videos, 6), np.int8)
  num_frames = rng.integers(min_frames, max_frames + 1, num_videos).astype(np.int32)
  for v in range(num_videos):
    cls = rng.permutation(NUM_BASE_CLASSES)[:6]
    ev, distract = cls[:4], cls[4:]
    event_classes[v] = np.sort(ev)
    present_classes[v] = np.sort(cls)
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
          c, n = (
            distract[rng.integers(2)],
            int(rng.integers(cutaway_frames[0], cutaway_frames[1] + 1)),
          )
        else:
          c, n = (a, b)[turn], int(rng.integers(shot_frames[0], shot_frames[1] + 1))
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
    "present_classes": present_classes,
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


def bag_oracle_scores(candidate_classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Order-blind oracle scores: equal score on every pair of each video's candidate classes.

  With ``candidate_classes`` the 6 classes present (``present_classes``), every pair is an event
  with probability 2/15 given the bag, which is all an order-blind model can know when event and
  distractor classes occur at similar rates; with the 4 ``event_classes`` (revealed only if frame
  proportions gave them away) each of their 6 pairs has probability 1/3, an upper bound.
  A tiny random jitter (< 1e-6) breaks ties, so GAP is that of a random ranking among them.

  Args:
    candidate_classes: ``[V, n]`` class ids per video.
    rng: tie-break generator.

  Returns:
    ``[V, 45]`` scores.
  """
  s = rng.uniform(0, 1e-6, (candidate_classes.shape[0], NUM_EVENT_LABELS))
  for v, cls in enumerate(candidate_classes):
    pairs = list(itertools.combinations(sorted(int(c) for c in cls), 2))
    for p in pairs:
      s[v, PAIR_INDEX[p]] += 2 / len(pairs)
  return s
