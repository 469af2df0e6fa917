"""Pooling with PyTorch's semantics, which flax.linen does not offer: adaptive average pooling
and ceil-mode max pooling. Both are needed for torchvision's AlexNet, VGG and GoogLeNet to give
the same shapes and numbers as the originals (and so for imported weights to work) at any input
size.
"""
from __future__ import annotations

import math

import flax.linen as nn
from jax import lax
import jax.numpy as jnp


def _adaptive_bins(size: int, out: int) -> list[tuple[int, int]]:
  """torch's AdaptiveAvgPool bins: bin i covers [floor(i*size/out), ceil((i+1)*size/out))."""
  return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def _adaptive_avg_pool_axis(x: jnp.ndarray, axis: int, out: int) -> jnp.ndarray:
  size = x.shape[axis]
  if size == out:
    return x
  if size % out == 0:  # Equal, non-overlapping bins: one reshape and mean.
    k = size // out
    shape = x.shape[:axis] + (out, k) + x.shape[axis + 1:]
    return x.reshape(shape).mean(axis=axis + 1)
  # Bins of unequal size, overlapping when size is not a multiple of out, or repeating input
  # rows when out > size (torch's behaviour, which VGG relies on below 224x224).
  bins = [lax.slice_in_dim(x, start, end, axis=axis).mean(axis=axis, keepdims=True)
          for start, end in _adaptive_bins(size, out)]
  return jnp.concatenate(bins, axis=axis)


def adaptive_avg_pool(x: jnp.ndarray, output_size: tuple[int, int]) -> jnp.ndarray:
  """torch.nn.AdaptiveAvgPool2d for NHWC inputs of any spatial size.

  Pools rows, then columns; each output element is the mean of the input rectangle that torch
  assigns to it (the mean of row means of equal width equals the rectangle's mean).

  Args:
    x: [batch, height, width, channels].
    output_size: (out_height, out_width).

  Returns:
    [batch, out_height, out_width, channels], in x's dtype.
  """
  out_h, out_w = output_size
  x = _adaptive_avg_pool_axis(x, 1, out_h)
  return _adaptive_avg_pool_axis(x, 2, out_w)


def _ceil_mode_padding(size: int, window: int, stride: int, padding: int) -> tuple[int, int]:
  """Left and right padding that make a VALID pool produce torch's ceil_mode output size."""
  out = math.ceil((size + 2 * padding - window) / stride) + 1
  if (out - 1) * stride >= size + padding:  # torch: the last window must start inside the input.
    out -= 1
  return padding, (out - 1) * stride + window - size - padding


def max_pool(x: jnp.ndarray, window: int, stride: int, padding: int = 0,
             ceil_mode: bool = False) -> jnp.ndarray:
  """torch.nn.MaxPool2d(window, stride, padding, ceil_mode) for NHWC inputs.

  Padding is symmetric as in torch (flax's "SAME" pads more on the right at stride 2). With
  ceil_mode, a partial window at the bottom and right edges is kept, as in torch; pooled values
  never include the padding, which is -inf.

  Args:
    x: [batch, height, width, channels].

  Returns:
    [batch, out_height, out_width, channels].
  """
  if ceil_mode:
    pads = [_ceil_mode_padding(size, window, stride, padding) for size in x.shape[1:3]]
  else:
    pads = [(padding, padding)] * 2
  return nn.max_pool(x, (window, window), strides=(stride, stride), padding=pads)
