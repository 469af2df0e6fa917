"""Pooling with PyTorch's semantics, which flax.linen does not offer: adaptive average pooling
and ceil-mode max pooling. Both are needed for torchvision's AlexNet, VGG and GoogLeNet to give
the same shapes and numbers as the originals (and so for imported weights to work) at any input
size.

On CPUs `max_pool` has its own gradient (`_max_pool_cpu`): XLA:CPU's select-and-scatter, the
gradient of a window max, took 6-9x the forward pass (a 3x3 stride-2 pool of 64 images of
32x32x64: 91 ms against 15 ms for the per-phase sum below).
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


def _adaptive_bins(size: int, out: int) -> list[tuple[int, int]]:
  """torch's AdaptiveAvgPool bins: bin i covers [floor(i*size/out), ceil((i+1)*size/out))."""
  return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def _adaptive_avg_pool_axis(x: jnp.ndarray, axis: int, out: int) -> jnp.ndarray:
  size = x.shape[axis]
  if size == out:
    return x
  if size % out == 0:  # Equal, non-overlapping bins: one reshape and mean.
    k = size // out
    shape = x.shape[:axis] + (out, k) + x.shape[axis + 1 :]
    return x.reshape(shape).mean(axis=axis + 1)
  # Bins of unequal size, overlapping when size is not a multiple of out, or repeating input
  # rows when out > size (torch's behaviour, which VGG relies on below 224x224).
  bins = [
    lax.slice_in_dim(x, start, end, axis=axis).mean(axis=axis, keepdims=True)
    for start, end in _adaptive_bins(size, out)
  ]
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


def max_pool(
  x: jnp.ndarray, window: int, stride: int, padding: int = 0, ceil_mode: bool = False
) -> jnp.ndarray:
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
  if jax.default_backend() == "cpu" and jnp.issubdtype(x.dtype, jnp.floating):
    return _max_pool_cpu(x, window, stride, tuple(pads))
  return nn.max_pool(x, (window, window), strides=(stride, stride), padding=pads)


def _window_max(x, window, stride, pads):
  # flax's own function (a window max with -inf padding), which vision_jax.summary records.
  return nn.max_pool(x, (window, window), strides=(stride, stride), padding=pads)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool_cpu(x, window, stride, pads):
  """The window max of `nn.max_pool`, with a gradient built from slices instead of XLA's
  select-and-scatter: each output's gradient goes to the first input of its window (in row-major
  order) that equals the maximum, as torch's MaxPool2d assigns it."""
  return _window_max(x, window, stride, pads)


def _max_pool_cpu_fwd(x, window, stride, pads):
  y = _window_max(x, window, stride, pads)
  return y, (x, y)


def _max_pool_cpu_bwd(window, stride, pads, residuals, g):
  """Tap (i, j) of every window reads input pixel (s*m + i, s*n + j) of the padded input; the
  taps with i = r, j = c (mod s) land on the same phase (r, c) of it, shifted by (i // s, j // s).
  So the gradient is s*s phase images, each a sum of shifted masked copies of g, interleaved."""
  x, y = residuals
  b, _, _, c = x.shape
  s, (oh, ow) = stride, y.shape[1:3]
  xp = lax.pad(
    x,
    jnp.array(-jnp.inf, x.dtype),
    ((0, 0, 0),) + tuple((lo, hi, 0) for lo, hi in pads) + ((0, 0, 0),),
  )
  hp, wp = xp.shape[1:3]
  taps = -(-window // s)  # per phase and axis, at most
  mh, mw = oh + taps - 1, ow + taps - 1
  taken = jnp.zeros(y.shape, bool)
  phases = {}
  for i in range(window):
    for j in range(window):
      xs = lax.slice(
        xp, (0, i, j, 0), (b, i + s * (oh - 1) + 1, j + s * (ow - 1) + 1, c), (1, s, s, 1)
      )
      first = (xs == y) & ~taken
      taken = taken | first
      part = jnp.pad(
        jnp.where(first, g, jnp.zeros((), g.dtype)),
        ((0, 0), (i // s, mh - oh - i // s), (j // s, mw - ow - j // s), (0, 0)),
      )
      phases[i % s, j % s] = part if (i % s, j % s) not in phases else phases[i % s, j % s] + part
  empty = jnp.zeros((b, mh, mw, c), g.dtype)  # a window smaller than its stride skips pixels
  grid = jnp.stack(
    [jnp.stack([phases.get((r, q), empty) for q in range(s)], axis=3) for r in range(s)], axis=2
  )
  full = grid.reshape(b, mh * s, mw * s, c)[:, :hp, :wp]
  full = jnp.pad(full, ((0, 0), (0, hp - full.shape[1]), (0, wp - full.shape[2]), (0, 0)))
  (top, bottom), (left, right) = pads
  return (full[:, top : hp - bottom, left : wp - right],)


_max_pool_cpu.defvjp(_max_pool_cpu_fwd, _max_pool_cpu_bwd)
