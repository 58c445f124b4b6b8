"""Frontalization networks: shapes, resolution-specific params, region towers see only their region."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax import frontalization as fr


@pytest.mark.parametrize("size,levels", [(32, 3), (48, 3), (128, 4), (16, 2)])
def test_num_levels(size, levels):
  assert fr.num_levels(size) == levels
  assert size // 2**levels >= 4


def test_generator_shapes_range_and_resolution_specific_params():
  shapes = {}
  for s in (16, 24):
    g = fr.FrontalGenerator(image_size=s, width=4, code_dim=8)
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, s, s, 1))
    p = jax.jit(g.init)(jax.random.PRNGKey(1), x)
    y = np.asarray(jax.jit(g.apply)(p, x))
    assert y.shape == (2, s, s, 1) and y.min() >= 0.0 and y.max() <= 1.0
    shapes[s] = p["params"]["fc_code"]["kernel"].shape
  assert shapes[16] != shapes[24]  # the bottleneck FC ties params to one resolution
  with pytest.raises(ValueError, match=r"image_size=16.*\[B, 16, 16, 1\]"):
    fr.FrontalGenerator(image_size=16, width=4).init(
      jax.random.PRNGKey(0), jnp.zeros((1, 24, 24, 1))
    )
  with pytest.raises(ValueError, match="image_size=6"):
    fr.num_levels(6)


def test_parsing_towers_see_only_their_region():
  s = 16
  pd = fr.ParsingDiscriminator(width=4, n_down=2)
  rng = np.random.default_rng(0)
  y = jnp.asarray(rng.random((2, s, s, 1)), jnp.float32)
  masks = fr.region_masks(jnp.asarray(rng.integers(0, 6, (2, s, s))))
  params = jax.jit(pd.init)(jax.random.PRNGKey(0), y, masks)
  assert {k.split("_")[0] for k in params["params"]} == {"hair", "skin", "features"}
  logits, present, maps = jax.jit(pd.apply)(params, y, masks)
  assert logits.shape == (3, 2) and present.shape == (3, 2) and maps.shape == (3, 2, 4, 4)
  # d(sum of region r's logits)/d(image) for the three regions at once, in one program
  jac = jax.jit(jax.jacrev(lambda v: jnp.sum(pd.apply(params, v, masks)[0], axis=1)))(y)
  for r in range(3):
    g = jac[r]
    outside = np.asarray(masks[r]) == 0
    assert np.all(np.asarray(g)[..., 0][outside] == 0.0)
    assert np.any(np.asarray(g)[..., 0][~outside] != 0.0)
  # separate weights: the towers differ after init
  k0 = params["params"]["hair_conv0"]["kernel"]
  k1 = params["params"]["skin_conv0"]["kernel"]
  assert not np.allclose(np.asarray(k0), np.asarray(k1))


def test_global_discriminator_one_logit_per_image():
  d = fr.GlobalDiscriminator(width=4)
  x = jnp.zeros((3, 32, 32, 1))
  assert d.apply(d.init(jax.random.PRNGKey(0), x), x).shape == (3,)


def test_encoder_res_blocks_option():
  x = jnp.zeros((2, 16, 16, 1))
  for cls, kw in ((fr.FrontalGenerator, {}), (fr.DrGanGenerator, dict(num_poses=3))):

    def names(**more):
      m = cls(image_size=16, width=4, code_dim=8, **kw, **more)
      return set(jax.eval_shape(m.init, jax.random.PRNGKey(0), x)["params"])

    assert {"enc_res0", "enc_res1"} <= names()  # default: one block per level
    assert not any(n.startswith("enc_res") for n in names(res_blocks=0))
    assert {"enc_res0", "enc_res0_1", "enc_res1_1"} <= names(res_blocks=2)
    with pytest.raises(ValueError, match="res_blocks=-1"):
      names(res_blocks=-1)
