"""Procedural multi-pose face renderer (NumPy): the embedded stand-in for M2FPA / Multi-PIE.

Each identity is a random set of 3D shape and texture parameters; a head is a union of
ellipsoids (cranium, jaw, nose, two eyes, two brows, lips, two ears, a hair cap clipped at a
hairline). A view at head rotation ``(yaw, pitch)`` is ray-cast orthographically: for camera ray
``o + t d`` (``d = -z``) and ellipsoid part ``k`` with centre ``c_k`` and radii ``r_k`` in head
coordinates, the hit is the smallest root of

.. math::
  \\lVert \\operatorname{diag}(r_k)^{-1} (R^\\top (o + t d) - c_k) \\rVert^2 = 1,
  \\qquad R = R_x(\\text{pitch})\\, R_y(\\text{yaw}),

the visible part is the nearest hit over parts, the normal is the ellipsoid gradient rotated
back to the camera, and the pixel is Lambertian: ``albedo * (ambient + (1 - ambient) max(0, n.l))``.
Pixels are supersampled ``supersample**2`` times and box-averaged; the parsing label of a pixel
is the label hit by the ray through its centre.

Parsing labels (``PARTS``): 0 background, 1 skin (cranium, jaw, ears), 2 hair, 3 eyes/brows,
4 nose, 5 mouth.

Conventions: image row 0 is the top; positive yaw turns the face towards the image's right
(the subject's left); positive pitch tilts the face up. ``(0, 0)`` is the frontal view.

Choice: orthographic camera, one directional light per dataset (``light``), no shadows or
inter-reflection; the paper's 62 M2FPA poses are not reproduced, ``DEFAULT_POSES`` is an explicit
(yaw, pitch) set of our own that, like M2FPA, is not a full yaw x pitch product.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np

from vision_jax.metrics.pose_bins import check_poses

PARTS = ("background", "skin", "hair", "eyes_brows", "nose", "mouth")
BACKGROUND, SKIN, HAIR, EYES_BROWS, NOSE, MOUTH = range(6)

# Yaws -90..90 step 15 at pitch 0; pitches +-15, +-30 at |yaw| <= 60 (and pitch +-15 at 75).
DEFAULT_POSES: tuple[tuple[int, int], ...] = tuple(
  sorted(
    {(y, 0) for y in range(-90, 91, 15)}
    | {(y, p) for y in range(-60, 61, 15) for p in (-30, -15, 15, 30)}
    | {(y, p) for y in (-75, 75) for p in (-15, 15)}
  )
)


@dataclasses.dataclass(frozen=True)
class FaceParams:
  """One identity: ellipsoid parts in head coordinates (x right, y up, z towards the camera).

  Attributes:
    centers: float64 ``[K, 3]`` part centres.
    radii: float64 ``[K, 3]`` part semi-axes.
    labels: int ``[K]`` parsing label of each part (index into ``PARTS``).
    albedo: float64 ``[K, 3]`` RGB albedo of each part in [0, 1].
    hairline: ``(y0, slope)``: the hair part is visible only where ``y > y0 + slope * z`` (lower at the back).
    iris: float64 ``[3]`` iris colour; the eye parts draw a disc of it around their front pole.
  """

  centers: np.ndarray
  radii: np.ndarray
  labels: np.ndarray
  albedo: np.ndarray
  hairline: tuple[float, float]
  iris: np.ndarray


def _surface_z(rx, ry, rz, cy, x, y):
  """Front surface depth of the ellipsoid ``(x/rx)^2 + ((y-cy)/ry)^2 + (z/rz)^2 = 1``."""
  q = 1.0 - (x / rx) ** 2 - ((y - cy) / ry) ** 2
  return rz * np.sqrt(max(q, 0.0))


def sample_identity(seed: int, identity: int) -> FaceParams:
  """Draws the shape and texture of identity ``identity`` deterministically from ``(seed, identity)``.

  Raises:
    ValueError: ``seed`` or ``identity`` negative or not an integer.
  """
  for name, v in (("seed", seed), ("identity", identity)):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
      raise ValueError(f"sample_identity: {name} must be a non-negative int, got {v!r}.")
  rng = np.random.default_rng([int(seed), int(identity)])
  u = lambda lo, hi: float(rng.uniform(lo, hi))
  # Cranium and jaw.
  hx, hy, hz, hcy = u(0.70, 0.80), u(0.98, 1.08), u(0.82, 0.92), 0.05
  jx, jy, jz, jcy = hx * u(0.75, 0.88), u(0.62, 0.72), hz * u(0.86, 0.92), -0.30
  front = lambda x, y: max(_surface_z(hx, hy, hz, hcy, x, y), _surface_z(jx, jy, jz, jcy, x, y))
  eye_y, eye_dx = u(0.05, 0.15), u(0.26, 0.33)
  eye_r = (u(0.12, 0.15), u(0.065, 0.08), 0.07)
  brow_y = eye_y + u(0.15, 0.20)
  brow_r = (u(0.14, 0.18), u(0.035, 0.05), 0.05)
  nose_y, nose_len = u(-0.22, -0.15), u(0.20, 0.28)
  nose_r = (u(0.09, 0.12), nose_len, u(0.18, 0.24))
  mouth_y = nose_y - nose_len - u(0.12, 0.18)
  mouth_r = (u(0.17, 0.24), u(0.050, 0.070), 0.06)
  parts = [
    # centre, radii, label, albedo key
    ((0.0, hcy, 0.0), (hx, hy, hz), SKIN, "skin"),
    ((0.0, jcy, 0.0), (jx, jy, jz), SKIN, "skin"),
    ((0.0, nose_y, front(0.0, nose_y) - 0.45 * nose_r[2]), nose_r, NOSE, "skin"),
    ((-eye_dx, eye_y, front(eye_dx, eye_y) - 0.035), eye_r, EYES_BROWS, "eye"),
    ((eye_dx, eye_y, front(eye_dx, eye_y) - 0.035), eye_r, EYES_BROWS, "eye"),
    ((-eye_dx, brow_y, front(eye_dx, brow_y) - 0.03), brow_r, EYES_BROWS, "brow"),
    ((eye_dx, brow_y, front(eye_dx, brow_y) - 0.03), brow_r, EYES_BROWS, "brow"),
    ((0.0, mouth_y, front(0.0, mouth_y) - 0.035), mouth_r, MOUTH, "lip"),
    ((-hx + 0.02, 0.0, -0.05), (0.07, 0.17, 0.10), SKIN, "skin"),
    ((hx - 0.02, 0.0, -0.05), (0.07, 0.17, 0.10), SKIN, "skin"),
    ((0.0, hcy + u(0.04, 0.10), -u(0.02, 0.08)), (hx + u(0.03, 0.06), hy + 0.03, hz + 0.04),
     HAIR, "hair"),
  ]  # fmt: skip
  tone = u(0.35, 0.95)
  skin = np.array([0.95, 0.78, 0.65]) * tone + np.array([0.05, 0.05, 0.05])
  hair_v = u(0.05, 0.7)
  hair = np.clip(np.array([hair_v, hair_v * u(0.6, 0.85), hair_v * u(0.4, 0.6)]), 0, 1)
  lip = np.clip(skin * np.array([0.8, 0.42, 0.42]), 0, 1)
  colours = {"skin": skin, "hair": hair, "brow": hair * 0.7, "eye": np.array([0.92, 0.92, 0.9]),
             "lip": lip}  # fmt: skip
  iris_v = u(0.05, 0.5)
  iris = np.array([iris_v * 0.8, iris_v * u(0.7, 1.1), iris_v * u(0.6, 1.3)])
  return FaceParams(
    centers=np.array([p[0] for p in parts], np.float64),
    radii=np.array([p[1] for p in parts], np.float64),
    labels=np.array([p[2] for p in parts], np.int64),
    albedo=np.array([colours[p[3]] for p in parts], np.float64),
    hairline=(u(0.15, 0.30), u(0.45, 0.70)),
    iris=np.clip(iris, 0, 1),
  )


def _rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
  y, p = np.deg2rad(yaw_deg), -np.deg2rad(pitch_deg)
  ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
  rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
  return rx @ ry


def _cast(params: FaceParams, rot: np.ndarray, u: np.ndarray, v: np.ndarray, light: np.ndarray,
          ambient: float):  # fmt: skip
  """Ray-casts camera points ``(u, v)`` (flat ``[M]``); returns RGB ``[M, 3]``, labels ``[M]``, hit mask ``[M]``."""
  m = u.shape[0]
  origin = np.stack([u, v, np.full(m, 10.0)], -1) @ rot  # rows: R^T o
  direction = np.array([0.0, 0.0, -1.0]) @ rot  # R^T d
  best_t = np.full(m, np.inf)
  best_k = np.full(m, -1)
  for k in range(len(params.labels)):
    inv_r = 1.0 / params.radii[k]
    o = (origin - params.centers[k]) * inv_r
    d = direction * inv_r
    a = d @ d
    b = 2.0 * (o @ d)
    c = np.einsum("mi,mi->m", o, o) - 1.0
    disc = b * b - 4.0 * a * c
    ok = disc >= 0.0
    sq = np.sqrt(np.where(ok, disc, 0.0))
    t = (-b - sq) / (2.0 * a)
    if params.labels[k] == HAIR:
      p = origin + t[:, None] * direction
      y0, slope = params.hairline
      ok &= p[:, 1] > y0 + slope * p[:, 2]
    better = ok & (t < best_t)
    best_t = np.where(better, t, best_t)
    best_k = np.where(better, k, best_k)
  hit = best_k >= 0
  k = np.where(hit, best_k, 0)
  p = origin + np.where(hit, best_t, 0.0)[:, None] * direction
  local = (p - params.centers[k]) / params.radii[k]
  normal = local / params.radii[k]
  normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-12
  normal_cam = normal @ rot.T
  shade = ambient + (1.0 - ambient) * np.clip(normal_cam @ light, 0.0, None)
  albedo = params.albedo[k].copy()
  is_eye = (params.labels[k] == EYES_BROWS) & (params.albedo[k, 0] > 0.9)
  iris = is_eye & (local[:, 0] ** 2 + (local[:, 1] * 0.5) ** 2 < 0.3) & (local[:, 2] > 0)
  albedo[iris] = params.iris
  rgb = np.where(hit[:, None], albedo * shade[:, None], 0.0)
  labels = np.where(hit, params.labels[k], BACKGROUND)
  return rgb, labels, hit


def render_face(
  params: FaceParams,
  yaw: float,
  pitch: float,
  *,
  size: int = 40,
  supersample: int = 3,
  light: Sequence[float] = (-0.35, 0.45, 1.0),
  ambient: float = 0.3,
  extent: float = 1.3,
  background: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
  """Renders one identity at head rotation ``(yaw, pitch)`` in degrees.

  Args:
    params: an identity from ``sample_identity``.
    yaw, pitch: head rotation in degrees (see the module docstring for signs).
    size: output height = width in pixels.
    supersample: rays per pixel along each axis (box-averaged).
    light: direction towards the light in camera coordinates (normalised here).
    ambient: ambient fraction in [0, 1].
    extent: the image spans ``[-extent, extent]`` head units on both axes.
    background: grey level of background pixels.

  Returns:
    ``(image, parsing)``: float32 ``[size, size, 3]`` in [0, 1] and int64 ``[size, size]`` labels.

  Raises:
    ValueError: non-positive ``size`` / ``supersample`` / ``extent``, a zero ``light``, or
      ``ambient`` outside [0, 1].
  """
  if int(size) != size or size < 4:
    raise ValueError(f"render_face: size must be an int >= 4, got {size!r}.")
  if int(supersample) != supersample or supersample < 1:
    raise ValueError(f"render_face: supersample must be an int >= 1, got {supersample!r}.")
  if not extent > 0:
    raise ValueError(f"render_face: extent must be > 0, got {extent!r}.")
  if not 0.0 <= ambient <= 1.0:
    raise ValueError(f"render_face: ambient must be in [0, 1], got {ambient!r}.")
  light = np.asarray(light, np.float64)
  if light.shape != (3,) or not np.linalg.norm(light) > 0:
    raise ValueError(f"render_face: light must be a non-zero 3-vector, got {light.tolist()!r}.")
  light = light / np.linalg.norm(light)
  rot = _rotation(yaw, pitch)
  n = size * supersample
  step = 2.0 * extent / n
  coords = -extent + step * (np.arange(n) + 0.5)
  uu, vv = np.meshgrid(coords, -coords)  # row 0 = top
  rgb, _, hit = _cast(params, rot, uu.ravel(), vv.ravel(), light, ambient)
  rgb = np.where(hit[:, None], rgb, background).reshape(n, n, 3)
  pix = 2.0 * extent / size
  centres = -extent + pix * (np.arange(size) + 0.5)
  cu, cv = np.meshgrid(centres, -centres)
  _, labels, _ = _cast(params, rot, cu.ravel(), cv.ravel(), light, ambient)
  image = rgb.reshape(size, supersample, size, supersample, 3).mean(axis=(1, 3))
  return image.astype(np.float32), labels.reshape(size, size)


def render_identities(
  seed: int,
  identities: Sequence[int],
  poses: Sequence[Sequence[float]] = DEFAULT_POSES,
  *,
  size: int = 40,
  grayscale: bool = False,
  **render_kwargs,
) -> dict[str, np.ndarray]:
  """Renders every identity over the explicit pose set, plus its frontal ground truth.

  Args:
    seed: dataset seed; identity ``i`` is ``sample_identity(seed, i)`` whatever else is rendered.
    identities: identity ids (non-negative ints, distinct).
    poses: explicit ``(yaw, pitch)`` pairs in degrees; need not be a full product.
    size: image side in pixels.
    grayscale: return one channel (ITU-R 601 luma) instead of RGB.
    **render_kwargs: passed to ``render_face`` (``supersample``, ``light``, ``ambient``, ...).

  Returns:
    ``{"image": float32 [N, P, size, size, C], "parsing": int64 [N, P, size, size],
    "frontal": float32 [N, size, size, C], "frontal_parsing": int64 [N, size, size],
    "identity": int64 [N], "poses": float64 [P, 2]}``; ``C`` is 1 or 3. ``frontal`` is the
    ``(0, 0)`` render, whether or not ``(0, 0)`` is in ``poses``.

  Raises:
    ValueError: bad ``poses`` (see ``check_poses``), empty or duplicate ``identities``, or bad
      ``render_face`` arguments.
  """
  poses = check_poses(poses)
  ids = [int(i) for i in identities]
  if not ids or len(set(ids)) != len(ids):
    raise ValueError(f"render_identities: identities must be non-empty and distinct, got {ids}.")
  images, parsings, frontals, frontal_parsings = [], [], [], []
  for i in ids:
    params = sample_identity(seed, i)
    views = [render_face(params, y, p, size=size, **render_kwargs) for y, p in poses]
    images.append(np.stack([v[0] for v in views]))
    parsings.append(np.stack([v[1] for v in views]))
    f_img, f_lab = render_face(params, 0.0, 0.0, size=size, **render_kwargs)
    frontals.append(f_img)
    frontal_parsings.append(f_lab)
  image, frontal = np.stack(images), np.stack(frontals)
  if grayscale:
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    image, frontal = image @ luma[:, None], frontal @ luma[:, None]
  return {
    "image": image.astype(np.float32),
    "parsing": np.stack(parsings),
    "frontal": frontal.astype(np.float32),
    "frontal_parsing": np.stack(frontal_parsings),
    "identity": np.asarray(ids, np.int64),
    "poses": poses,
  }


def save_pose_grid(path: str, seed: int, identity: int, poses=DEFAULT_POSES, *, size: int = 40,
                   scale: int = 2) -> None:  # fmt: skip
  """Writes a PNG of one identity over ``poses``: rows by pitch (up first), columns by yaw.

  Cells of (yaw, pitch) pairs outside ``poses`` are left background grey.
  """
  import PIL.Image

  poses = check_poses(poses)
  yaws, pitches = sorted(set(poses[:, 0])), sorted(set(poses[:, 1]), reverse=True)
  grid = np.full((len(pitches) * size, len(yaws) * size, 3), 0.5, np.float32)
  params = sample_identity(seed, identity)
  for y, p in poses:
    r, c = pitches.index(p), yaws.index(y)
    grid[r * size : (r + 1) * size, c * size : (c + 1) * size] = render_face(
      params, y, p, size=size
    )[0]
  img = PIL.Image.fromarray(np.round(grid * 255).astype(np.uint8))
  img.resize((img.width * scale, img.height * scale), PIL.Image.NEAREST).save(path)
