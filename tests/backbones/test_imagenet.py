"""The real ImageNet weights work: the classifier heads call scikit-image's cat photo a cat."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from PIL import Image

from oddeye.backbones import IMAGENET_MEAN, create_backbone

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@functools.lru_cache(maxsize=1)
def cat_pixels() -> torch.Tensor:
    """Chelsea the cat, resized to 224x224, as (1, 3, 224, 224) floats in [0, 1]."""
    data = pytest.importorskip("skimage.data")
    image = Image.fromarray(data.chelsea()).resize((224, 224), Image.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)


def normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_pretrained_head_sees_a_cat(name: str) -> None:
    net = create_backbone(name)
    # mobilenet_v2: ImageNet mean/std; efficientnet_lite0: (pixel - 127) / 128 (TF lite recipe)
    assert (net.input_mean == IMAGENET_MEAN) == (name == "mobilenet_v2")
    with torch.inference_mode():
        probs = net(normalise(cat_pixels(), net.input_mean, net.input_std)).softmax(1)[0]
    top = int(probs.argmax())
    assert top in CAT_CLASSES, (top, float(probs[top]))
    assert float(probs[list(CAT_CLASSES)].sum()) > 0.8
    # a randomly initialised network does not do this: the check can fail
    random_net = create_backbone(name, weights=None)
    with torch.inference_mode():
        random_probs = random_net(normalise(cat_pixels(), net.input_mean, net.input_std))
    assert float(random_probs.softmax(1)[0, list(CAT_CLASSES)].sum()) < 0.5
