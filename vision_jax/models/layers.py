"""Layers shared by the models.

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

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


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


def conv_transpose(x: jnp.ndarray, kernel: jnp.ndarray, strides: tuple[int, int], padding: str = "SAME",
                   precision=None, preferred_element_type=None) -> jnp.ndarray:
  """`lax.conv_transpose(x, kernel, strides, padding)` for NHWC inputs and HWIO kernels (not
  transposed), as stride-1 convolutions, one per output phase. x: [b, h, w, c_in]."""
  b, h, w, _ = x.shape
  kh, kw, _, c_out = kernel.shape
  (rows, out_h, mh), (cols, out_w, mw) = _phases(h, kh, strides[0], padding), _phases(w, kw, strides[1], padding)
  conv = functools.partial(lax.conv_general_dilated, window_strides=(1, 1), padding="VALID",
                           dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision,
                           preferred_element_type=preferred_element_type)
  dtype = preferred_element_type or jnp.result_type(x, kernel)
  grid = []
  for t0h, nh, dh in rows:
    row = []
    for t0w, nw, dw in cols:
      if nh == 0 or nw == 0:  # a kernel smaller than its stride leaves these pixels empty
        row.append(jnp.zeros((b, mh, mw, c_out), dtype))
        continue
      xp = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (-dh, mh + nh - 1 - h + dh, 0),
                                               (-dw, mw + nw - 1 - w + dw, 0), (0, 0, 0)))
      row.append(conv(xp, kernel[t0h::strides[0], t0w::strides[1]]))
    grid.append(jnp.stack(row, axis=3))  # [b, mh, mw, s_w, c]
  y = jnp.stack(grid, axis=2).reshape(b, mh * strides[0], mw * strides[1], c_out)
  return y[:, :out_h, :out_w]


class ConvTranspose(nn.ConvTranspose):
  """`nn.ConvTranspose` whose 2-D, undilated, unmasked "SAME"/"VALID" case runs as per-phase
  convolutions (`conv_transpose`) on CPUs; elsewhere, and for the other cases, flax's own."""

  @nn.compact
  def __call__(self, inputs: jnp.ndarray) -> jnp.ndarray:
    kernel_size = (self.kernel_size,) * 2 if isinstance(self.kernel_size, int) else tuple(self.kernel_size)
    strides = (1, 1) if self.strides is None else (
        (self.strides,) * 2 if isinstance(self.strides, int) else tuple(self.strides))
    dilation = self.kernel_dilation
    fast = (jax.default_backend() == "cpu" and inputs.ndim == 4 and len(kernel_size) == 2
            and self.padding in ("SAME", "VALID") and self.mask is None and not self.transpose_kernel
            and dilation in (None, 1, (1, 1)))
    if not fast:
      return super().__call__(inputs)
    kernel = self.param("kernel", self.kernel_init, kernel_size + (inputs.shape[-1], self.features),
                        self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
    inputs, kernel, bias = self.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
    y = conv_transpose(inputs, kernel, strides, self.padding, self.precision, self.preferred_element_type)
    return y if bias is None else y + bias.reshape((1, 1, 1, -1))
