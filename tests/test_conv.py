"""jdl.nn.conv: the canonical-gradient convolution equals lax.conv_general_dilated, values and gradients,
and keeps XLA's CPU fast path inside loops."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jdl.nn import conv as conv_lib

SPECS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}

# (spatial dims, input size, kernel, strides, padding, dilation, in channels, out channels, groups): the
# zoo's convolutions (LeNet's 5x5 valid, cnn_small's 3x3 same, ResNet's 7x7/2 stem and 1x1/2 shortcut,
# MobileNetV2's depthwise 3x3/2, cnn1d's 1-D) and the corners: odd strides, asymmetric padding, dilation.
CASES = [
    (2, (28, 28), (3, 3), (1, 1), "SAME", (1, 1), 1, 24, 1),
    (2, (14, 14), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 24, 48, 1),
    (2, (32, 32), (5, 5), (1, 1), "VALID", (1, 1), 1, 6, 1),
    (2, (17, 15), (7, 7), (2, 2), ((3, 3), (3, 3)), (1, 1), 3, 8, 1),
    (2, (9, 9), (1, 1), (2, 2), "VALID", (1, 1), 8, 16, 1),
    (2, (10, 11), (3, 3), (2, 2), "SAME", (1, 1), 6, 6, 6),  # depthwise, stride 2
    (2, (8, 8), (3, 3), (1, 1), "SAME", (1, 1), 12, 12, 12),  # depthwise
    (2, (12, 10), (3, 2), (3, 2), ((2, 0), (0, 1)), (1, 1), 4, 6, 2),  # grouped, asymmetric
    (2, (13, 13), (3, 3), (1, 1), "SAME", (2, 2), 4, 5, 1),  # dilated
    (2, (11, 12), (3, 3), (2, 3), ((1, 2), (0, 0)), (2, 1), 4, 8, 2),
    (1, (40,), (5,), (2,), ((1, 1),), (1,), 1, 25, 1),  # cnn1d
    (1, (21,), (3,), (1,), "SAME", (3,), 5, 7, 1),
    (3, (6, 7, 5), (3, 3, 2), (1, 2, 1), "SAME", (1, 1, 1), 3, 4, 1),
    (2, (15, 13), (3, 3), (2, 2), "SAME", (1, 1), 3, 16, 1),
    (2, (12, 12), (3, 3), (1, 1), ((2, 2), (2, 2)), (2, 2), 1, 16, 1),
    (1, (30,), (5,), (3,), ((2, 1),), (1,), 2, 32, 1),
    (2, (9, 9), (3, 3), (1, 1), ((-1, 1), (1, -1)), (1, 1), 2, 3, 1),  # negative padding crops
    (2, (8, 9), (1, 1), (1, 1), "VALID", (1, 1), 24, 16, 1),  # pointwise: x itself is the patches matrix
    # More than 8 input channels and a window: the convolution path, strided, dilated, asymmetric.
    (2, (11, 12), (3, 3), (2, 3), ((1, 2), (0, 0)), (2, 1), 12, 8, 1),
    (1, (21,), (3,), (1,), "SAME", (3,), 10, 7, 1),
    (3, (6, 7, 5), (3, 3, 2), (1, 2, 1), "SAME", (1, 1, 1), 9, 4, 1),
]


def _inputs(case, seed=0):
  spatial, size, kernel, _, _, _, c_in, c_out, groups = case
  kx, kw = jax.random.split(jax.random.key(seed))
  x = jax.random.normal(kx, (3, *size, c_in), jnp.float32)
  w = jax.random.normal(kw, (*kernel, c_in // groups, c_out), jnp.float32)
  return x, w


def _both(case):
  spatial, _, _, strides, padding, dilation, _, _, groups = case
  kwargs = dict(window_strides=strides, padding=padding, rhs_dilation=dilation, dimension_numbers=SPECS[spatial],
                feature_group_count=groups)
  return (lambda x, w: lax.conv_general_dilated(x, w, **kwargs),
          lambda x, w: conv_lib.conv_general_dilated(x, w, **kwargs))


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}d-k{c[2]}-s{c[3]}-{c[4]}-d{c[5]}-g{c[8]}" for c in CASES])
def test_values_and_gradients_equal_lax(case):
  x, w = _inputs(case)
  ref, ours = _both(case)
  np.testing.assert_allclose(jax.jit(ours)(x, w), jax.jit(ref)(x, w), rtol=1e-5, atol=1e-5)
  probe = jax.random.normal(jax.random.key(3), jax.eval_shape(ref, x, w).shape)
  loss_ref = lambda x, w: jnp.sum(ref(x, w) * probe)  # noqa: E731
  loss_ours = lambda x, w: jnp.sum(ours(x, w) * probe)  # noqa: E731
  grads = lambda loss: jax.jit(jax.grad(loss, (0, 1)))(x, w)  # noqa: E731  (one compiled program each)
  for a, b in zip(grads(loss_ours), grads(loss_ref)):
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  # Second-order: jax's rules differentiate the canonical backward pass too.
  hvp = lambda f: jax.jit(jax.grad(lambda x: jnp.sum(jax.grad(f)(x, w) ** 2)))(x)  # noqa: E731
  np.testing.assert_allclose(hvp(loss_ours), hvp(loss_ref), rtol=1e-3, atol=1e-3)


def _descent(conv):
  """Three steps of gradient descent on x and w, as one jitted ``lax.scan``."""

  def body(carry, _):
    x, w = carry
    dx, dw = jax.grad(lambda x, w: jnp.sum(jnp.tanh(conv(x, w))), (0, 1))(x, w)
    return (x - 1e-3 * dx, w - 1e-3 * dw), None

  return jax.jit(lambda x, w: lax.scan(body, (x, w), None, length=3)[0])


def test_inside_a_scan_every_convolution_keeps_the_canonical_form():
  case = CASES[1]
  x, w = _inputs(case)
  _, ours = _both(case)
  text = _descent(ours).lower(x, w).compile().as_text()
  labels = [line.split("dim_labels=")[1].split(",")[0] for line in text.splitlines() if " convolution(" in line]
  assert len(labels) == 3 and set(labels) == {"b01f_01io->b01f"}, labels


def test_other_layouts_and_input_dilation_are_lax_itself():
  x = jax.random.normal(jax.random.key(0), (2, 3, 9, 9))
  w = jax.random.normal(jax.random.key(1), (4, 3, 3, 3))
  for kwargs in ({"dimension_numbers": ("NCHW", "OIHW", "NCHW")}, {"dimension_numbers": None}):
    np.testing.assert_array_equal(conv_lib.conv_general_dilated(x, w, (1, 1), "SAME", **kwargs),
                                  lax.conv_general_dilated(x, w, (1, 1), "SAME", **kwargs))
  xh = jnp.transpose(x, (0, 2, 3, 1))
  wh = jnp.transpose(w, (2, 3, 1, 0))
  pads = ((1, 1), (1, 1))
  got = conv_lib.conv_general_dilated(xh, wh, (1, 1), pads, lhs_dilation=(2, 2),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_array_equal(got, lax.conv_general_dilated(xh, wh, (1, 1), pads, lhs_dilation=(2, 2),
                                                              dimension_numbers=("NHWC", "HWIO", "NHWC")))


def _lowered(case, wrt=(1,)):
  x, w = _inputs(case)
  _, ours = _both(case)
  return jax.jit(jax.grad(lambda x, w: jnp.sum(ours(x, w) ** 2), wrt)).lower(x, w).as_text()


def test_few_input_channels_and_pointwise_take_the_patches_path_and_others_do_not():
  # Few input channels (<= 8) or a 1x1 window: matrix products of the patches, no convolution at all.
  for case in (CASES[0], CASES[2], CASES[3], CASES[4], CASES[12], CASES[16], CASES[17]):
    text = _lowered(case, (0, 1))
    assert "stablehlo.dot_general" in text and "stablehlo.convolution" not in text, case
  # 24 -> 48 with a 3x3 window: the forward and the two gradient convolutions.
  assert _lowered(CASES[1], (0, 1)).count("stablehlo.convolution") == 3
  assert "stablehlo.convolution" not in _lowered(CASES[6])  # depthwise: shifted slices
  # A patches matrix past the size bound takes the convolution path.
  x = jax.ShapeDtypeStruct((4096, 64, 64, 3), jnp.float32)
  w = jax.ShapeDtypeStruct((7, 7, 3, 64), jnp.float32)
  text = jax.jit(lambda x, w: conv_lib.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=SPECS[2])
                 ).lower(x, w).as_text()
  assert "stablehlo.convolution" in text and "dot_general" not in text


def test_patches_path_inside_a_scan_is_matrix_products():
  case = CASES[2]  # LeNet's 5x5, 1 -> 6
  x, w = _inputs(case)
  ref, ours = _both(case)
  run = _descent(ours)
  assert " convolution(" not in run.lower(x, w).compile().as_text()
  # Three steps of plain gradient descent: the same as with lax's convolution.
  for a, b in zip(run(x, w), _descent(ref)(x, w)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
