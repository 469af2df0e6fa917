"""Shared layers: the per-phase transposed convolution equals flax's and lax's, values and gradients."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.models.layers import ConvTranspose, conv_transpose


@pytest.mark.parametrize("size,k,s,padding", [
    ((4, 4), 4, 2, "SAME"),     # DCGAN's generator
    ((7, 5), 3, 2, "SAME"),     # the convolutional autoencoder's decoder; odd, non-square input
    ((5, 6), 4, 2, "VALID"),
    ((3, 3), 2, 2, "SAME"),     # k = s: no overlap
    ((3, 4), 1, 2, "SAME"),     # k < s: empty phases
    ((4, 4), 16, 8, "SAME"),    # FCN-style x8 upsampling
    ((6, 6), 3, 1, "VALID"),    # stride 1
    ((4, 3), 5, 3, "SAME"),
])
def test_conv_transpose_matches_lax_with_gradients(size, k, s, padding):
  kx, kk, kg = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (2, *size, 3))
  kernel = jax.random.normal(kk, (k, k, 3, 5))
  ref = lambda x, w: jax.lax.conv_transpose(x, w, (s, s), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
  new = lambda x, w: conv_transpose(x, w, (s, s), padding)
  y_ref, y_new = ref(x, kernel), new(x, kernel)
  assert y_new.shape == y_ref.shape
  np.testing.assert_allclose(y_new, y_ref, rtol=1e-5, atol=1e-5)
  cot = jax.random.normal(kg, y_ref.shape)
  loss = lambda f: (lambda x, w: jnp.sum(f(x, w) * cot))
  for a, b in zip(jax.grad(loss(ref), argnums=(0, 1))(x, kernel), jax.grad(loss(new), argnums=(0, 1))(x, kernel)):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)


def test_module_is_a_drop_in_for_flax_conv_transpose():
  x = jax.random.normal(jax.random.key(1), (2, 5, 5, 4))
  ours = ConvTranspose(6, (3, 3), strides=(2, 2), padding="SAME")
  theirs = nn.ConvTranspose(6, (3, 3), strides=(2, 2), padding="SAME")
  variables = theirs.init(jax.random.key(2), x)
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(2), x)) == jax.tree.map(jnp.shape, variables)
  variables = jax.tree.map(lambda v: v + 0.1, variables)  # a non-zero bias too
  np.testing.assert_allclose(ours.apply(variables, x), theirs.apply(variables, x), rtol=1e-5, atol=1e-5)
  assert isinstance(ours, nn.ConvTranspose)  # vision_jax.summary counts it as one
  # Cases outside the per-phase path (explicit padding, a dilated kernel) are flax's own.
  for kw in (dict(padding=((1, 1), (1, 1))), dict(kernel_dilation=(2, 2))):
    ours, theirs = ConvTranspose(6, (3, 3), strides=(2, 2), **kw), nn.ConvTranspose(6, (3, 3), strides=(2, 2), **kw)
    v = theirs.init(jax.random.key(3), x)
    np.testing.assert_array_equal(ours.apply(v, x), theirs.apply(v, x))
