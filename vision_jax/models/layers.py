"""Layers shared by the models, with faster formulations where XLA:CPU is slow.

`Conv` is flax's `nn.Conv` (same attributes, parameters and numbers) whose convolutions with
at most four output pixels per image run on CPUs as one matrix product of the input's patches
with the kernel (`conv_im2col`). XLA:CPU's convolution falls off its fast path there: a 3x3
convolution of 64 images of 2x2x512 (ResNet-18's last stage at 64x64 inputs, VGG's on CIFAR-10)
took 440-690 ms, 3 GFLOP/s, and the same product as a matmul 6.6 ms; at 1x1 outputs (LeNet-5's
C5) 11.5 against 3.8 ms. From 4x4 outputs on, XLA's own convolution is the faster one.

`ConvTranspose` is flax's `nn.ConvTranspose` (same attributes, parameters and numbers) computed
as one stride-1 convolution per output phase: the output pixels y[s*m + r] of a stride-s
transposed convolution take only the kernel taps t = r' (mod s), so the s_h * s_w phases are
ordinary convolutions of the input with slices of the kernel, interleaved. XLA:CPU computes the
kernel gradient of the lhs-dilated convolution that `lax.conv_transpose` lowers to about 50-100x
slower than that of an ordinary one (a 4x4 stride-2 layer, 64 images of 4x4x128 -> 8x8x64:
525 ms), which made the DCGAN generators' updates ~10x slower than their critics'.
"""

from __future__ import annotations

import functools
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def l2_normalize(x: jnp.ndarray, axis: int = -1, eps: float = 1e-12) -> jnp.ndarray:
  """x / |x| along `axis` (zero vectors stay zero)."""
  x = x.astype(jnp.float32)
  return x * lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=axis, keepdims=True), eps))


def _transpose_pads(k: int, s: int, padding: str) -> tuple[int, int]:
  """The (low, high) padding of the stride-dilated input that `lax.conv_transpose` uses."""
  if padding == "SAME":
    pad_len = k + s - 2
    low = k - 1 if s > k - 1 else int(np.ceil(pad_len / 2))
  elif padding == "VALID":
    pad_len = k + s - 2 + max(k - s, 0)
    low = k - 1
  else:
    raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")
  return low, pad_len - low


def _phases(size: int, k: int, s: int, padding: str):
  """Per output phase r along one axis: (first kernel tap, number of taps, input offset), and
  the output length and the phases' common length."""
  low, high = _transpose_pads(k, s, padding)
  out = (size - 1) * s + 1 + low + high - k + 1
  per_phase = -(-out // s)
  phases = []
  for r in range(s):
    t0 = (low - r) % s
    phases.append((t0, len(range(t0, k, s)), (r + t0 - low) // s))
  return phases, out, per_phase


def conv_transpose(
  x: jnp.ndarray,
  kernel: jnp.ndarray,
  strides: tuple[int, int],
  padding: str = "SAME",
  precision=None,
  preferred_element_type=None,
) -> jnp.ndarray:
  """`lax.conv_transpose(x, kernel, strides, padding)` for NHWC inputs and HWIO kernels (not
  transposed), as stride-1 convolutions, one per output phase. x: [b, h, w, c_in]."""
  b, h, w, _ = x.shape
  kh, kw, _, c_out = kernel.shape
  (rows, out_h, mh), (cols, out_w, mw) = (
    _phases(h, kh, strides[0], padding),
    _phases(w, kw, strides[1], padding),
  )
  conv = functools.partial(
    lax.conv_general_dilated,
    window_strides=(1, 1),
    padding="VALID",
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    precision=precision,
    preferred_element_type=preferred_element_type,
  )
  dtype = preferred_element_type or jnp.result_type(x, kernel)
  grid = []
  for t0h, nh, dh in rows:
    row = []
    for t0w, nw, dw in cols:
      if nh == 0 or nw == 0:  # a kernel smaller than its stride leaves these pixels empty
        row.append(jnp.zeros((b, mh, mw, c_out), dtype))
        continue
      xp = lax.pad(
        x,
        jnp.zeros((), x.dtype),
        ((0, 0, 0), (-dh, mh + nh - 1 - h + dh, 0), (-dw, mw + nw - 1 - w + dw, 0), (0, 0, 0)),
      )
      row.append(conv(xp, kernel[t0h :: strides[0], t0w :: strides[1]]))
    grid.append(jnp.stack(row, axis=3))  # [b, mh, mw, s_w, c]
  y = jnp.stack(grid, axis=2).reshape(b, mh * strides[0], mw * strides[1], c_out)
  return y[:, :out_h, :out_w]


# Outputs of at most this many pixels per image (and channel) are computed as a matmul on CPUs.
IM2COL_MAX_OUTPUT_PIXELS = 4
_NHWC = ("NHWC", "HWIO", "NHWC")


def conv_im2col(
  x: jnp.ndarray,
  kernel: jnp.ndarray,
  strides: tuple[int, int],
  padding: tuple[tuple[int, int], tuple[int, int]],
  precision=None,
  preferred_element_type=None,
) -> jnp.ndarray:
  """`lax.conv_general_dilated(x, kernel, strides, padding)` for NHWC inputs and HWIO kernels
  (no dilation, one feature group, padding non-negative) as one matmul of the input's patches:
  [b * out_h * out_w, kh * kw * c_in] @ [kh * kw * c_in, c_out]."""
  b = x.shape[0]
  kh, kw, c_in, c_out = kernel.shape
  (sh, sw), ((ph0, ph1), (pw0, pw1)) = strides, padding
  xp = jnp.pad(x, ((0, 0), (ph0, ph1), (pw0, pw1), (0, 0)))
  out_h, out_w = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
  taps = [
    lax.slice(
      xp,
      (0, i, j, 0),
      (b, i + sh * (out_h - 1) + 1, j + sw * (out_w - 1) + 1, c_in),
      (1, sh, sw, 1),
    )
    for i in range(kh)
    for j in range(kw)
  ]  # (i, j, c) order: the HWIO kernel's, flattened
  patches = jnp.concatenate(taps, axis=-1).reshape(b * out_h * out_w, kh * kw * c_in)
  y = lax.dot(
    patches,
    kernel.reshape(kh * kw * c_in, c_out),
    precision=precision,
    preferred_element_type=preferred_element_type,
  )
  return y.reshape(b, out_h, out_w, c_out)


def conv_general_dilated(
  lhs,
  rhs,
  window_strides,
  padding,
  lhs_dilation=None,
  rhs_dilation=None,
  dimension_numbers=None,
  feature_group_count=1,
  batch_group_count=1,
  precision=None,
  preferred_element_type=None,
):
  """`lax.conv_general_dilated`, computed by `conv_im2col` on CPUs for 2-D NHWC convolutions
  without dilation or groups whose outputs have at most `IM2COL_MAX_OUTPUT_PIXELS` pixels."""
  args = (lhs, rhs, window_strides, padding)
  kwargs = dict(
    lhs_dilation=lhs_dilation,
    rhs_dilation=rhs_dilation,
    dimension_numbers=dimension_numbers,
    feature_group_count=feature_group_count,
    batch_group_count=batch_group_count,
    precision=precision,
    preferred_element_type=preferred_element_type,
  )
  if (
    jax.default_backend() != "cpu"
    or lhs.ndim != 4
    or feature_group_count != 1
    or batch_group_count != 1
    or any(d != 1 for d in tuple(lhs_dilation or ()) + tuple(rhs_dilation or ()))
    or lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    != lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
  ):
    return lax.conv_general_dilated(*args, **kwargs)
  strides = tuple(window_strides)
  pads = (
    lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
    if isinstance(padding, str)
    else [tuple(p) for p in padding]
  )
  out = [
    (size + lo + hi - k) // s + 1
    for size, (lo, hi), k, s in zip(lhs.shape[1:3], pads, rhs.shape[:2], strides)
  ]
  if min(min(p) for p in pads) < 0 or min(out) < 1 or out[0] * out[1] > IM2COL_MAX_OUTPUT_PIXELS:
    return lax.conv_general_dilated(*args, **kwargs)
  return conv_im2col(lhs, rhs, strides, tuple(pads), precision, preferred_element_type)


class Conv(nn.Conv):
  """`nn.Conv` computed by this module's `conv_general_dilated`: the same parameters and
  numbers, a matmul for the tiny outputs on which XLA:CPU's convolution is slow."""

  conv_general_dilated: Callable | None = conv_general_dilated


class ConvTranspose(nn.ConvTranspose):
  """`nn.ConvTranspose` whose 2-D, undilated, unmasked "SAME"/"VALID" case runs as per-phase
  convolutions (`conv_transpose`) on CPUs; elsewhere, and for the other cases, flax's own."""

  @nn.compact
  def __call__(self, inputs: jnp.ndarray) -> jnp.ndarray:
    kernel_size = (
      (self.kernel_size,) * 2 if isinstance(self.kernel_size, int) else tuple(self.kernel_size)
    )
    strides = (
      (1, 1)
      if self.strides is None
      else ((self.strides,) * 2 if isinstance(self.strides, int) else tuple(self.strides))
    )
    dilation = self.kernel_dilation
    fast = (
      jax.default_backend() == "cpu"
      and inputs.ndim == 4
      and len(kernel_size) == 2
      and self.padding in ("SAME", "VALID")
      and self.mask is None
      and not self.transpose_kernel
      and dilation in (None, 1, (1, 1))
    )
    if not fast:
      return super().__call__(inputs)
    kernel = self.param(
      "kernel", self.kernel_init, kernel_size + (inputs.shape[-1], self.features), self.param_dtype
    )
    bias = (
      self.param("bias", self.bias_init, (self.features,), self.param_dtype)
      if self.use_bias
      else None
    )
    inputs, kernel, bias = self.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
    y = conv_transpose(
      inputs, kernel, strides, self.padding, self.precision, self.preferred_element_type
    )
    return y if bias is None else y + bias.reshape((1, 1, 1, -1))


def torchvision_transform_input(x: jnp.ndarray) -> jnp.ndarray:
  """Inputs normalised with ImageNet's mean and std, mapped to (x - 0.5) / 0.5: what torchvision's
  pretrained GoogLeNet and Inception-v3 were trained on (their `transform_input`)."""
  mean = jnp.array([0.485, 0.456, 0.406])
  std = jnp.array([0.229, 0.224, 0.225])
  return (x * std + mean - 0.5) / 0.5
