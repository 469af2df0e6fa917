"""Shared layers: the per-phase transposed convolution, the matmul convolution and the CPU max-pool
gradient equal flax's and lax's, values and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.models import layers, pooling
from vision_jax.models.layers import ConvTranspose, conv_im2col, conv_transpose


@pytest.mark.parametrize(
  "size,k,s,padding",
  [
    ((4, 4), 4, 2, "SAME"),  # DCGAN's generator
    ((7, 5), 3, 2, "SAME"),  # the convolutional autoencoder's decoder; odd, non-square input
    ((5, 6), 4, 2, "VALID"),
    ((3, 3), 2, 2, "SAME"),  # k = s: no overlap
    ((3, 4), 1, 2, "SAME"),  # k < s: empty phases
    ((4, 4), 16, 8, "SAME"),  # FCN-style x8 upsampling
    ((6, 6), 3, 1, "VALID"),  # stride 1
    ((4, 3), 5, 3, "SAME"),
  ],
)
def test_conv_transpose_matches_lax_with_gradients(size, k, s, padding):
  kx, kk, kg = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (2, *size, 3))
  kernel = jax.random.normal(kk, (k, k, 3, 5))
  ref = lambda x, w: jax.lax.conv_transpose(
    x, w, (s, s), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
  )
  new = lambda x, w: conv_transpose(x, w, (s, s), padding)
  y_ref, y_new = ref(x, kernel), new(x, kernel)
  assert y_new.shape == y_ref.shape
  np.testing.assert_allclose(y_new, y_ref, rtol=1e-5, atol=1e-5)
  cot = jax.random.normal(kg, y_ref.shape)
  loss = lambda f: lambda x, w: jnp.sum(f(x, w) * cot)
  for a, b in zip(
    jax.grad(loss(ref), argnums=(0, 1))(x, kernel), jax.grad(loss(new), argnums=(0, 1))(x, kernel)
  ):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)


def test_module_is_a_drop_in_for_flax_conv_transpose():
  x = jax.random.normal(jax.random.key(1), (2, 5, 5, 4))
  ours = ConvTranspose(6, (3, 3), strides=(2, 2), padding="SAME")
  theirs = nn.ConvTranspose(6, (3, 3), strides=(2, 2), padding="SAME")
  variables = theirs.init(jax.random.key(2), x)
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(2), x)) == jax.tree.map(
    jnp.shape, variables
  )
  variables = jax.tree.map(lambda v: v + 0.1, variables)  # a non-zero bias too
  np.testing.assert_allclose(
    ours.apply(variables, x), theirs.apply(variables, x), rtol=1e-5, atol=1e-5
  )
  assert isinstance(ours, nn.ConvTranspose)  # vision_jax.summary counts it as one
  # Cases outside the per-phase path (explicit padding, a dilated kernel) are flax's own.
  for kw in (dict(padding=((1, 1), (1, 1))), dict(kernel_dilation=(2, 2))):
    ours, theirs = (
      ConvTranspose(6, (3, 3), strides=(2, 2), **kw),
      nn.ConvTranspose(6, (3, 3), strides=(2, 2), **kw),
    )
    v = theirs.init(jax.random.key(3), x)
    np.testing.assert_array_equal(ours.apply(v, x), theirs.apply(v, x))


@pytest.mark.parametrize(
  "size,k,s,padding",
  [
    ((2, 2), 3, 1, ((1, 1), (1, 1))),  # ResNet-18's last stage at 64x64, VGG's on CIFAR-10
    ((5, 5), 5, 1, "VALID"),  # LeNet-5's C5: one output pixel
    ((4, 3), 3, 2, "SAME"),  # strided, uneven padding
    ((1, 1), 3, 1, ((1, 1), (1, 1))),
    ((3, 5), 2, 2, ((0, 1), (1, 0))),  # asymmetric padding
  ],
)
def test_conv_im2col_matches_lax_with_gradients(size, k, s, padding):
  kx, kk, kg = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (3, *size, 4))
  kernel = jax.random.normal(kk, (k, k, 4, 6))
  dn = ("NHWC", "HWIO", "NHWC")
  ref = lambda x, w: jax.lax.conv_general_dilated(x, w, (s, s), padding, dimension_numbers=dn)
  pads = (
    jax.lax.padtype_to_pads(size, (k, k), (s, s), padding) if isinstance(padding, str) else padding
  )
  new = lambda x, w: conv_im2col(x, w, (s, s), tuple(map(tuple, pads)))
  y_ref = ref(x, kernel)
  np.testing.assert_allclose(new(x, kernel), y_ref, rtol=1e-5, atol=1e-5)
  # The dispatcher takes the matmul exactly when the output has at most 4 pixels (on this CPU).
  assert (y_ref.shape[1] * y_ref.shape[2] <= layers.IM2COL_MAX_OUTPUT_PIXELS) == (
    "dot_general"
    in str(
      jax.make_jaxpr(
        lambda x, w: layers.conv_general_dilated(x, w, (s, s), padding, dimension_numbers=dn)
      )(x, kernel)
    )
  )
  cot = jax.random.normal(kg, y_ref.shape)
  loss = lambda f: lambda x, w: jnp.sum(f(x, w) * cot)
  for a, b in zip(
    jax.grad(loss(ref), argnums=(0, 1))(x, kernel), jax.grad(loss(new), argnums=(0, 1))(x, kernel)
  ):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
  "size,kw",
  [
    ((2, 2), dict(padding=((1, 1), (1, 1)))),
    ((2, 2), dict(padding="SAME")),
    ((8, 8), dict(padding="SAME")),  # XLA's own conv
    ((2, 2), dict(padding="SAME", kernel_dilation=2)),  # likewise
    ((2, 2), dict(padding="SAME", feature_group_count=2)),
  ],
)
def test_conv_module_is_a_drop_in_for_flax_conv(size, kw):
  x = jax.random.normal(jax.random.key(1), (2, *size, 4))
  ours, theirs = layers.Conv(6, (3, 3), **kw), nn.Conv(6, (3, 3), **kw)
  variables = theirs.init(jax.random.key(2), x)
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(2), x)) == jax.tree.map(
    jnp.shape, variables
  )
  variables = jax.tree.map(lambda v: v + 0.1, variables)
  np.testing.assert_allclose(
    ours.apply(variables, x), theirs.apply(variables, x), rtol=1e-5, atol=1e-5
  )
  assert isinstance(ours, nn.Conv)  # vision_jax.summary counts it as one


@pytest.mark.parametrize(
  "size,window,stride,padding,ceil_mode",
  [
    ((32, 32), 3, 2, 1, False),  # the ResNet stem's
    ((16, 16), 2, 2, 0, False),  # VGG's
    ((15, 14), 3, 2, 0, True),  # GoogLeNet's, ceil mode
    ((9, 9), 3, 1, 1, True),  # the Inception pool branch
    ((9, 7), 2, 3, 0, False),  # window smaller than stride: skipped pixels get no gradient
  ],
)
def test_max_pool_cpu_gradient_equals_xla_select_and_scatter(
  size, window, stride, padding, ceil_mode
):
  # Continuous inputs (no ties), where every rule for ties agrees.
  x = jax.random.normal(jax.random.key(3), (2, *size, 5))
  ours = lambda x: pooling.max_pool(x, window, stride, padding, ceil_mode)
  pads = (
    tuple(pooling._ceil_mode_padding(n, window, stride, padding) for n in size)
    if ceil_mode
    else ((padding, padding),) * 2
  )
  xla = lambda x: nn.max_pool(x, (window, window), strides=(stride, stride), padding=pads)
  y = xla(x)
  np.testing.assert_array_equal(ours(x), y)
  cot = jax.random.normal(jax.random.key(4), y.shape)
  np.testing.assert_allclose(
    jax.vjp(ours, x)[1](cot)[0], jax.vjp(xla, x)[1](cot)[0], rtol=1e-6, atol=1e-6
  )
  assert "select_and_scatter" not in str(jax.make_jaxpr(jax.grad(lambda x: ours(x).sum()))(x))
