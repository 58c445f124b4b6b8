"""Every image model rejects a non-NHWC input with one message naming the model and the shape."""

import jax
import jax.numpy as jnp
import pytest

from vision_jax.detection.model import FPNDetector
from vision_jax.models import ConvNet, ResNet18
from vision_jax.models.fewshot import Conv4, ResNet12
from vision_jax.models.lightcnn import LightCNN9, LightCNN29v2

MODELS = {
  "ConvNet": ConvNet,
  "ResNet": ResNet18,
  "LightCNN9": LightCNN9,
  "LightCNN29v2": LightCNN29v2,
  "Conv4": Conv4,
  "ResNet12": ResNet12,
  "FPNDetector": lambda: FPNDetector(backbone=ResNet18(num_classes=None)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_non_nhwc_input_raises_naming_the_model(name):
  with pytest.raises(
    ValueError, match=rf"{name} expects NHWC input \[B, H, W, C\]; got shape \(8, 8, 3\)"
  ):
    MODELS[name]().init(jax.random.key(0), jnp.zeros((8, 8, 3)), train=False)
