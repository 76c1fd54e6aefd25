"""Preprocessing as plain, vectorised functions on numpy batches, composed from the config.

Images arrive as uint8 (B, H, W, C) and leave as float32 (B, S, S, channels) in [0, 1], or
standardised per channel with the domain's training statistics. Vector features leave as float32
(standardised per dimension if asked). The model's input is called `input` in every batch.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.ndimage

from transfer_jax.errors import UserError

Batch = dict[str, Any]


def to_unit_float(images: np.ndarray) -> np.ndarray:
  """uint8 0..255 -> float32 0..1."""
  return images.astype(np.float32) / 255.0


def resize(images: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resize of (B, H, W, C) float images to (B, size, size, C)."""
  height, width = images.shape[1:3]
  if (height, width) == (size, size):
    return images
  zoomed = scipy.ndimage.zoom(images, (1, size / height, size / width, 1), order=1,
                              grid_mode=True, mode='nearest')
  return np.clip(zoomed, 0.0, 1.0).astype(np.float32)


def frame(images: np.ndarray, box: int, size: int) -> np.ndarray:
  """Resizes into a box x box square centred in a size x size frame (MNIST-style framing)."""
  if box > size:
    raise UserError(f'box_size={box} is larger than image_size={size}')
  before = (size - box) // 2
  pad = ((0, 0), (before, size - box - before), (before, size - box - before), (0, 0))
  return np.pad(resize(images, box), pad)


def set_channels(images: np.ndarray, channels: int) -> np.ndarray:
  """Grey -> RGB by repetition, RGB -> grey by the ITU-R 601 luma weights."""
  have = images.shape[-1]
  if have == channels:
    return images
  if have == 1 and channels == 3:
    return np.repeat(images, 3, axis=-1)
  if have == 3 and channels == 1:
    return (images @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
  raise UserError(f'cannot convert images with {have} channels to {channels}')


def binarize(images: np.ndarray) -> np.ndarray:
  """uint8 -> uint8 with every pixel > 0 set to 255 and the rest 0 (a binary digit)."""
  return np.where(images > 0, np.uint8(255), np.uint8(0))


def image_transform(image_size: int, channels: int, box_size: int = 0,
                    binary: bool = False) -> Callable:
  """uint8 (B, H, W, C) -> float32 (B, S, S, channels) in [0, 1] (`image_size` 0: keep size);
  `binary`: binarised first (`binarize`), before any resizing."""

  def transform(images: np.ndarray) -> np.ndarray:
    images = to_unit_float(binarize(images) if binary else images)
    if box_size:
      images = frame(images, box_size, image_size)
    elif image_size:
      images = resize(images, image_size)
    return set_channels(images, channels)

  return transform


def model_inputs(batch: Batch, image_fn: Callable) -> np.ndarray:
  """The model input of a stored batch: preprocessed images, or features as float32."""
  if 'input' in batch:  # Already materialised (in-memory domains).
    return batch['input']
  if 'image' in batch:
    return image_fn(np.asarray(batch['image']))
  return np.asarray(batch['features'], np.float32)


def symmetric(inputs: np.ndarray) -> np.ndarray:
  """[0, 1] -> [-1, 1]: (x - 0.5) / 0.5, torchvision's Normalize(0.5, 0.5) (TLlib's digits)."""
  return (inputs - 0.5) / 0.5


def standardizer(train_inputs: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
  """(x - mean) / std with statistics per channel (images) or per dimension (features)."""
  axes = tuple(range(train_inputs.ndim - 1))
  mean = train_inputs.mean(axes, dtype=np.float64).astype(np.float32)
  std = (train_inputs.std(axes, dtype=np.float64) + 1e-6).astype(np.float32)
  return lambda x: (x - mean) / std


def centerer(mean: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
  """x - mean, the mean per channel (images) or per dimension (features); no scaling."""
  mean = np.asarray(mean, np.float32)
  return lambda x: x - mean


def to_model_batch(batch: Batch, image_fn: Callable, post_fn: Callable | None = None,
                   with_label: bool = True) -> Batch:
  """A stored batch -> {'input', 'label'} (the label dropped when `with_label` is False)."""
  inputs = model_inputs(batch, image_fn)
  out = {'input': post_fn(inputs) if post_fn is not None else inputs}
  if with_label:
    out['label'] = np.asarray(batch['label'], np.int32)
  return out
