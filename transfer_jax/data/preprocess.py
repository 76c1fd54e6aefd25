"""Per-example preprocessing as plain functions on numpy arrays, composed from the config.

Images arrive as uint8 (H, W, C); they leave as float32 (S, S, channels) in [0, 1] (`unit`) or
standardised per channel with the domain's training statistics (`standardize`). Vector features
leave as float32. The training batch calls the model's input `input`.
"""

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.ndimage

from transfer_jax.errors import UserError

Example = dict[str, Any]


def to_unit_float(image: np.ndarray) -> np.ndarray:
  """uint8 0..255 -> float32 0..1."""
  return image.astype(np.float32) / 255.0


def resize(image: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resize of an (H, W, C) float image to (size, size, C)."""
  height, width = image.shape[:2]
  if (height, width) == (size, size):
    return image
  zoomed = scipy.ndimage.zoom(image, (size / height, size / width, 1), order=1, grid_mode=True,
                              mode='nearest')
  return np.clip(zoomed, 0.0, 1.0).astype(np.float32)


def frame(image: np.ndarray, box: int, size: int) -> np.ndarray:
  """Resizes into a box x box square centred in a size x size frame (MNIST-style framing)."""
  if box > size:
    raise UserError(f'box_size={box} is larger than image_size={size}')
  before = (size - box) // 2
  pad = ((before, size - box - before), (before, size - box - before), (0, 0))
  return np.pad(resize(image, box), pad)


def set_channels(image: np.ndarray, channels: int) -> np.ndarray:
  """Grey -> RGB by repetition, RGB -> grey by the ITU-R 601 luma weights."""
  have = image.shape[-1]
  if have == channels:
    return image
  if have == 1 and channels == 3:
    return np.repeat(image, 3, axis=-1)
  if have == 3 and channels == 1:
    return (image @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
  raise UserError(f'cannot convert images with {have} channels to {channels}')


def standardize(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  return (image - mean) / std


def image_pipeline(image_size: int, channels: int, box_size: int = 0,
                   stats: tuple[np.ndarray, np.ndarray] | None = None) -> Callable:
  """The composed image transform for one domain (`image_size` 0 keeps the stored size)."""

  def transform(image: np.ndarray) -> np.ndarray:
    image = to_unit_float(image)
    if box_size:
      image = frame(image, box_size, image_size)
    elif image_size:
      image = resize(image, image_size)
    image = set_channels(image, channels)
    return standardize(image, *stats) if stats is not None else image

  return transform


def to_model_example(example: Example, transform: Callable, with_label: bool = True) -> Example:
  """{'image' or 'features', 'label'} -> {'input', 'label'} (label dropped if not wanted)."""
  if 'image' in example:
    model_input = transform(np.asarray(example['image']))
  else:
    model_input = np.asarray(example['features'], np.float32)
  out = {'input': model_input}
  if with_label:
    out['label'] = np.int32(example['label'])
  return out


def example_fn(transform: Callable, with_label: bool = True) -> Callable[[Example], Example]:
  return functools.partial(to_model_example, transform=transform, with_label=with_label)
