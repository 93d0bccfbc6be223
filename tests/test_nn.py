"""jdl.nn: activations and initializers by name, layers, blocks, signal propagation."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jdl.nn


def fake_variables(module, *args, **kwargs):
  """Deterministic variables shaped like ``module.init`` (no RNG compile): kernels
  N(0, 1/fan_in) from numpy, biases/means 0, scales/variances 1, others 0.25."""
  shapes = jax.eval_shape(lambda *a: module.init(jax.random.key(0), *a, **kwargs), *args)
  rng = np.random.default_rng(0)

  def fill(path, s):
    name = getattr(path[-1], "key", path[-1])
    if name == "kernel":
      return jnp.asarray(rng.normal(size=s.shape) / math.sqrt(math.prod(s.shape[:-1])), s.dtype)
    if name in ("scale", "var"):
      return jnp.ones(s.shape, s.dtype)
    if name in ("bias", "mean"):
      return jnp.zeros(s.shape, s.dtype)
    return jnp.full(s.shape, 0.25, s.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


# --------------------------------------------------------------------------- activations


@pytest.mark.parametrize("name, kwargs, x, expected", [
    ("sigmoid", {}, [0.0, math.log(3.0)], [0.5, 0.75]),
    ("tanh", {}, [0.0, math.atanh(0.5)], [0.0, 0.5]),
    ("relu", {}, [-1.0, 0.0, 2.0], [0.0, 0.0, 2.0]),
    ("relu6", {}, [-1.0, 3.0, 7.0], [0.0, 3.0, 6.0]),
    ("leaky_relu", {}, [-2.0, 3.0], [-0.02, 3.0]),
    ("leaky_relu", {"negative_slope": 0.1}, [-2.0, 3.0], [-0.2, 3.0]),
    ("elu", {}, [-1.0, 2.0], [math.exp(-1.0) - 1.0, 2.0]),
    ("elu", {"alpha": 2.0}, [-1.0], [2.0 * (math.exp(-1.0) - 1.0)]),
    ("gelu", {}, [1.0, -1.0], [0.8413447460685429, -0.15865525393145707]),  # x * Phi(x)
    ("softplus", {}, [0.0], [math.log(2.0)]),
    ("softmax", {}, [0.0, math.log(3.0)], [0.25, 0.75]),
    ("log_softmax", {}, [0.0, math.log(3.0)], [math.log(0.25), math.log(0.75)]),
    ("silu", {}, [0.0, math.log(3.0)], [0.0, 0.75 * math.log(3.0)]),
    ("swish", {}, [math.log(3.0)], [0.75 * math.log(3.0)]),
    ("identity", {}, [-1.5, 2.0], [-1.5, 2.0]),
    ("Leaky-ReLU", {}, [-1.0], [-0.01]),
])
def test_activation_values(name, kwargs, x, expected):
  y = jdl.nn.get_activation(name, **kwargs)(jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-6, atol=1e-7)


def test_activation_softmax_axis():
  x = jnp.asarray([[0.0, 0.0], [math.log(3.0), 0.0]])
  y = jdl.nn.get_activation("softmax", axis=0)(x)
  np.testing.assert_allclose(np.asarray(y), [[0.25, 0.5], [0.75, 0.5]], rtol=1e-6)


def test_activation_unknown_name_lists_known_ones():
  with pytest.raises(ValueError, match=r"unknown activation 'relu7'.*leaky_relu.*prelu.*sigmoid"):
    jdl.nn.get_activation("relu7")


def test_activation_bad_option_and_type():
  with pytest.raises(TypeError, match=r"'relu' takes options none, got unexpected option\(s\) \['alpha'\]"):
    jdl.nn.get_activation("relu", alpha=0.1)
  with pytest.raises(TypeError, match="name must be an activation name"):
    jdl.nn.get_activation(3)
  assert jdl.nn.get_activation(jnp.tanh) is jnp.tanh
  assert {"sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "gelu", "softplus", "softmax",
          "log_softmax"} <= set(jdl.nn.list_activations())


def test_prelu_values_and_param():
  layer = jdl.nn.get_activation("prelu")
  assert isinstance(layer, jdl.nn.PReLU)
  x = jnp.asarray([[-2.0, 3.0, -4.0]])
  variables = layer.init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, variables) == {"params": {"slope": ()}}
  np.testing.assert_allclose(np.asarray(layer.apply(variables, x)), [[-0.5, 3.0, -1.0]])
  np.testing.assert_allclose(
      np.asarray(layer.apply({"params": {"slope": jnp.asarray(0.0)}}, x)), [[0.0, 3.0, 0.0]])


def test_prelu_per_channel():
  layer = jdl.nn.PReLU(init_slope=0.5, per_channel=True)
  x = -jnp.ones((2, 2, 3))
  variables = layer.init(jax.random.key(0), x)
  assert variables["params"]["slope"].shape == (3,)
  slope = jnp.asarray([0.0, 1.0, 2.0])
  y = layer.apply({"params": {"slope": slope}}, x)
  np.testing.assert_allclose(np.asarray(y[1, 1]), [0.0, -1.0, -2.0])


def test_prelu_gradients():
  layer = jdl.nn.PReLU()
  # away from the kink at 0, where finite differences are exact enough
  x = jnp.asarray([[-2.0, -0.5, 0.7, 1.5]])
  with jax.enable_x64(True):
    x = x.astype(jnp.float64)
    slope = jnp.asarray(0.3, jnp.float64)
    f = jax.jit(lambda s, x: layer.apply({"params": {"slope": s}}, x))
    check_grads(f, (slope, x), order=1, modes=("fwd", "rev"))
    ds = jax.grad(lambda s: f(s, x).sum())(slope)
  assert float(ds) == pytest.approx(-2.5)  # d/da of a*x summed over negative x


# --------------------------------------------------------------------------- initializers


@pytest.mark.parametrize("name, std", [
    ("he_normal", math.sqrt(2 / 400)),
    ("kaiming_normal", math.sqrt(2 / 400)),
    ("he_uniform", math.sqrt(2 / 400)),
    ("lecun_normal", math.sqrt(1 / 400)),
    ("lecun_uniform", math.sqrt(1 / 400)),
    ("glorot_normal", math.sqrt(2 / (400 + 200))),
    ("xavier_uniform", math.sqrt(2 / (400 + 200))),
])
def test_variance_scaling_std(name, std):
  w = jdl.nn.get_initializer(name)(jax.random.key(1), (400, 200), jnp.float32)
  assert w.shape == (400, 200) and w.dtype == jnp.float32
  assert float(jnp.mean(w)) == pytest.approx(0.0, abs=0.03 * std)
  assert float(jnp.std(w)) == pytest.approx(std, rel=0.02)


def test_uniform_bounds_and_aliases_are_identical():
  key = jax.random.key(2)
  shape = (400, 200)  # as above: eager primitives are compiled per shape
  w = jdl.nn.get_initializer("glorot_uniform")(key, shape)
  assert float(jnp.max(jnp.abs(w))) <= math.sqrt(6 / 600)
  assert float(jnp.max(jnp.abs(w))) > 0.99 * math.sqrt(6 / 600)
  np.testing.assert_array_equal(np.asarray(jdl.nn.get_initializer("kaiming_uniform")(key, shape)),
                                np.asarray(jdl.nn.get_initializer("he_uniform")(key, shape)))
  np.testing.assert_array_equal(np.asarray(jdl.nn.get_initializer("he_normal")(key, shape)),
                                np.asarray(jax.nn.initializers.he_normal()(key, shape)))


def test_initializer_options():
  key = jax.random.key(3)
  w = jdl.nn.get_initializer("he_normal", mode="fan_out")(key, (400, 200))
  assert float(jnp.std(w)) == pytest.approx(math.sqrt(2 / 200), rel=0.02)
  w = jdl.nn.get_initializer("normal", stddev=0.5)(key, (400, 200))
  assert float(jnp.std(w)) == pytest.approx(0.5, rel=0.02)
  w = jdl.nn.get_initializer("constant", value=0.7)(key, (2, 3))
  np.testing.assert_array_equal(np.asarray(w), np.full((2, 3), 0.7, np.float32))


def test_orthogonal_zeros_ones():
  key = jax.random.key(4)
  w = jdl.nn.get_initializer("orthogonal")(key, (16, 16))
  np.testing.assert_allclose(np.asarray(w.T @ w), np.eye(16), atol=1e-5)
  w = jdl.nn.get_initializer("orthogonal", scale=2.0)(key, (16, 16))
  np.testing.assert_allclose(np.asarray(w.T @ w), 4 * np.eye(16), atol=1e-4)
  assert not np.any(np.asarray(jdl.nn.get_initializer("zeros")(key, (3, 2))))
  np.testing.assert_array_equal(np.asarray(jdl.nn.get_initializer("ones")(key, (2,))), [1.0, 1.0])


def test_initializer_errors():
  with pytest.raises(ValueError, match=r"unknown initializer 'he_normall'; known initializers: .*"
                                       r"glorot_normal.*he_normal.*lecun_uniform.*orthogonal.*zeros"):
    jdl.nn.get_initializer("he_normall")
  with pytest.raises(TypeError, match=r"unexpected option\(s\) \['stddev'\]"):
    jdl.nn.get_initializer("he_normal", stddev=1.0)
  with pytest.raises(ValueError, match="mode must be one of .* got 'fan_both'"):
    jdl.nn.get_initializer("he_normal", mode="fan_both")
  with pytest.raises(TypeError, match="name must be an initializer name"):
    jdl.nn.get_initializer(1.0)
  fn = jax.nn.initializers.zeros
  assert jdl.nn.get_initializer(fn) is fn


# --------------------------------------------------------------------------- layers


def test_dense_and_conv_take_initializer_names():
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = jdl.nn.Conv(2, (3, 3), padding=1, kernel_init="ones", bias_init="ones")(x)
      x = jdl.nn.Flatten()(x)
      return jdl.nn.Dense(3, kernel_init="zeros")(x)

  x = jnp.ones((1, 4, 4, 1))
  variables = Net().init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, variables["params"]) == {
      "Conv_0": {"kernel": (3, 3, 1, 2), "bias": (2,)},
      "Dense_0": {"kernel": (32, 3), "bias": (3,)},
  }
  np.testing.assert_array_equal(np.asarray(variables["params"]["Conv_0"]["kernel"]), 1.0)
  np.testing.assert_array_equal(np.asarray(variables["params"]["Dense_0"]["kernel"]), 0.0)
  conv = jdl.nn.Conv(1, (3, 3), padding=1, kernel_init="ones", bias_init="ones")
  y = conv.apply(conv.init(jax.random.key(0), x), x)
  # corner pixel sees 4 ones, edge 6, interior 9; plus bias 1
  np.testing.assert_array_equal(np.asarray(y[0, :, :, 0]),
                                [[5, 7, 7, 5], [7, 10, 10, 7], [7, 10, 10, 7], [5, 7, 7, 5]])


def test_pooling_values():
  x = jnp.arange(16.0).reshape(1, 4, 4, 1)
  np.testing.assert_array_equal(np.asarray(jdl.nn.max_pool(x, 2)[0, :, :, 0]), [[5, 7], [13, 15]])
  np.testing.assert_array_equal(np.asarray(jdl.nn.avg_pool(x, 2)[0, :, :, 0]),
                                [[2.5, 4.5], [10.5, 12.5]])
  # 3x3 / 2 with padding 1 (ResNet's stem pool): padding never wins the max
  np.testing.assert_array_equal(np.asarray(jdl.nn.max_pool(x - 100, 3, strides=2, padding=1)[0, :, :, 0]),
                                [[-95, -93], [-87, -85]])
  np.testing.assert_array_equal(np.asarray(jdl.nn.global_avg_pool(x)), [[7.5]])
  np.testing.assert_array_equal(np.asarray(jdl.nn.global_max_pool(x)), [[15.0]])


@pytest.mark.parametrize("shape,window",
                         [((3, 7, 9, 4), 2), ((2, 12, 12, 3), 3), ((2, 11, 5), 2), ((2, 6, 8, 2), (2, 4))])
def test_tiled_pooling_equals_reduce_window_values_and_gradients(shape, window):
  # Non-overlapping unpadded windows take the reshape path; flax's reduce_window is the reference
  # (odd sizes: the remainder is cropped, as 'VALID'). Distinct values: no ties, so max's gradients agree too.
  x = jax.random.permutation(jax.random.key(0), jnp.arange(np.prod(shape), dtype=jnp.float32)).reshape(shape)
  n = len(shape) - 2
  w = (window,) * n if isinstance(window, int) else window
  for ours, ref in ((jdl.nn.max_pool, lambda v: nn.max_pool(v, w, strides=w, padding="VALID")),
                    (jdl.nn.avg_pool, lambda v: nn.avg_pool(v, w, strides=w, padding="VALID"))):
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda v: ours(v, window))(x)), np.asarray(jax.jit(ref)(x)))
    cot = jax.random.normal(jax.random.key(1), jax.eval_shape(ref, x).shape)
    g_ours = jax.jit(jax.grad(lambda v: jnp.sum(ours(v, window) * cot)))(x)
    g_ref = jax.jit(jax.grad(lambda v: jnp.sum(ref(v) * cot)))(x)
    np.testing.assert_allclose(np.asarray(g_ours), np.asarray(g_ref), rtol=1e-6, atol=1e-7)


def test_tiled_max_pool_splits_tied_maxima_like_jax_max():
  # Ties (an all-zero window after a ReLU, two equal maxima) share the gradient evenly, as jnp.max's rule does;
  # the cropped remainder (row and column 4) gets none.
  x = jnp.asarray([[0, 0, 3, 1, 9], [0, 0, 3, 2, 9], [5, 4, 1, 7, 9], [4, 5, 0, 7, 9], [9, 9, 9, 9, 9]],
                  jnp.float32)[None, :, :, None]
  g = jax.grad(lambda v: jnp.sum(jdl.nn.max_pool(v, 2) * jnp.asarray([[1.0, 2.0], [3.0, 4.0]])[None, :, :, None]))(x)
  ref = jax.grad(lambda v: jnp.sum(jnp.max(v[:, :4, :4].reshape(1, 2, 2, 2, 2, 1), axis=(2, 4))
                                   * jnp.asarray([[1.0, 2.0], [3.0, 4.0]])[None, :, :, None]))(x)
  np.testing.assert_allclose(np.asarray(g[0, :, :, 0]), [[0.25, 0.25, 1, 0, 0], [0.25, 0.25, 1, 0, 0],
                                                        [1.5, 0, 0, 2, 0], [0, 1.5, 0, 2, 0], [0, 0, 0, 0, 0]])
  np.testing.assert_array_equal(np.asarray(g), np.asarray(ref))


def test_adaptive_avg_pool_follows_pytorch():
  x = jnp.arange(5.0).reshape(1, 5, 1)
  # 5 -> 3: cells [0, 2), [1, 4), [3, 5)
  np.testing.assert_allclose(np.asarray(jdl.nn.adaptive_avg_pool(x, 3)[0, :, 0]), [0.5, 2.0, 3.5])
  # 2 -> 3: [0, 1), [0, 2), [1, 2)
  np.testing.assert_allclose(np.asarray(jdl.nn.adaptive_avg_pool(x[:, :2], 3)[0, :, 0]), [0.0, 0.5, 1.0])
  y = jdl.nn.adaptive_avg_pool(jnp.full((2, 1, 1, 3), 2.0), 7)
  assert y.shape == (2, 7, 7, 3) and float(jnp.min(y)) == float(jnp.max(y)) == 2.0
  x = jnp.arange(16.0).reshape(1, 4, 4, 1)
  np.testing.assert_array_equal(np.asarray(jdl.nn.adaptive_avg_pool(x, 2)),
                                np.asarray(jdl.nn.avg_pool(x, 2)))
  with pytest.raises(ValueError, match="output_size must be an int or a sequence of 2 ints"):
    jdl.nn.adaptive_avg_pool(x, (2, 2, 2))


def test_flatten():
  assert jdl.nn.Flatten().apply({}, jnp.ones((3, 2, 4, 5))).shape == (3, 40)


def test_dropout_eval_identity_and_train_deterministic():
  layer = jdl.nn.Dropout(0.5)
  x = jnp.arange(1.0, 101.0)
  np.testing.assert_array_equal(np.asarray(layer.apply({}, x, deterministic=True)), np.asarray(x))
  a = layer.apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(7)})
  b = layer.apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(7)})
  c = layer.apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(8)})
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert np.any(np.asarray(a) != np.asarray(c))
  kept = np.asarray(a) != 0
  assert 20 < kept.sum() < 80
  np.testing.assert_allclose(np.asarray(a)[kept], 2.0 * np.asarray(x)[kept])  # scaled by 1/(1-p)


def test_batchnorm_train_updates_stats_and_eval_uses_them():
  x = jnp.asarray([[1.0, 10.0], [3.0, 30.0]])  # batch mean (2, 20), biased var (1, 100)
  bn = jdl.nn.BatchNorm(use_running_average=False)
  variables = bn.init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, variables) == {
      "params": {"scale": (2,), "bias": (2,)}, "batch_stats": {"mean": (2,), "var": (2,)}}
  y, updates = bn.apply(variables, x, mutable=["batch_stats"])
  np.testing.assert_allclose(np.asarray(y), [[-1.0, -1.0], [1.0, 1.0]], rtol=1e-4)
  # momentum 0.9 (PyTorch's 0.1): 0.9 * init + 0.1 * batch statistic
  np.testing.assert_allclose(np.asarray(updates["batch_stats"]["mean"]), [0.2, 2.0], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(updates["batch_stats"]["var"]), [0.9 + 0.1, 0.9 + 10.0],
                             rtol=1e-6)
  stats = {"mean": jnp.asarray([1.0, -1.0]), "var": jnp.asarray([4.0, 0.25])}
  params = {"scale": jnp.asarray([2.0, 1.0]), "bias": jnp.asarray([0.5, 0.0])}
  y = jdl.nn.BatchNorm(use_running_average=True).apply({"params": params, "batch_stats": stats}, x)
  expected = (np.asarray(x) - [1.0, -1.0]) / np.sqrt(np.asarray([4.0, 0.25]) + 1e-5) * [2.0, 1.0] + [0.5, 0.0]
  np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5)


def test_layernorm():
  x = jnp.asarray([[1.0, 2.0, 3.0, 6.0]])
  ln = jdl.nn.LayerNorm()
  y = ln.apply(ln.init(jax.random.key(0), x), x)
  np.testing.assert_allclose(np.asarray(y), (np.asarray(x) - 3.0) / math.sqrt(3.5 + 1e-6), rtol=1e-5)


# --------------------------------------------------------------------------- blocks


@pytest.mark.parametrize("block, strides, out_channels, params", [
    (jdl.nn.BasicBlock(4), 1, 4, {"conv1", "bn1", "conv2", "bn2"}),
    (jdl.nn.BasicBlock(8, strides=2), 2, 8,
     {"conv1", "bn1", "conv2", "bn2", "downsample_conv", "downsample_bn"}),
    (jdl.nn.BottleneckBlock(2, strides=2), 2, 8,
     {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "downsample_conv", "downsample_bn"}),
    (jdl.nn.InvertedResidual(4, expand_ratio=6), 1, 4,
     {"expand_conv", "expand_bn", "depthwise_conv", "depthwise_bn", "project_conv", "project_bn"}),
    (jdl.nn.InvertedResidual(6, strides=2, expand_ratio=1), 2, 6,
     {"depthwise_conv", "depthwise_bn", "project_conv", "project_bn"}),
])
def test_block_shapes_and_params(block, strides, out_channels, params):
  x = jax.ShapeDtypeStruct((2, 6, 6, 4), jnp.float32)
  variables = jax.eval_shape(lambda x: block.init(jax.random.key(0), x), x)
  assert set(variables["params"]) == params
  y = jax.eval_shape(lambda v, x: block.apply(v, x), variables, x)
  assert y.shape == (2, 6 // strides, 6 // strides, out_channels)


def test_inverted_residual_depthwise_and_residual():
  block = jdl.nn.InvertedResidual(4, expand_ratio=6)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 3, 3, 4)), jnp.float32)
  variables = fake_variables(block, x)
  assert variables["params"]["depthwise_conv"]["kernel"].shape == (3, 3, 1, 24)
  # a zero projection leaves only the residual connection
  variables["params"]["project_conv"]["kernel"] = jnp.zeros((1, 1, 24, 4))
  np.testing.assert_allclose(np.asarray(block.apply(variables, x)), np.asarray(x), rtol=1e-6)


def test_zero_init_residual_block_is_relu_of_identity():
  block = jdl.nn.BasicBlock(4, zero_init_residual=True, kernel_init="ones")  # cheap to compile
  x = jnp.asarray(np.random.default_rng(1).normal(size=(1, 3, 3, 4)), jnp.float32)
  variables = block.init(jax.random.key(0), x)
  np.testing.assert_array_equal(np.asarray(variables["params"]["bn2"]["scale"]), 0.0)
  np.testing.assert_allclose(np.asarray(block.apply(variables, x)), np.maximum(np.asarray(x), 0.0))


@pytest.mark.parametrize("block, train", [
    (jdl.nn.BasicBlock(3, strides=2), True),
    (jdl.nn.BottleneckBlock(2, strides=1), False),
    (jdl.nn.InvertedResidual(3, expand_ratio=2), True),
], ids=["basic-train", "bottleneck-eval", "inverted_residual-train"])
def test_block_gradients(block, train):
  x = np.random.default_rng(2).normal(size=(2, 4, 4, 3))
  variables = fake_variables(block, jnp.zeros((2, 4, 4, 3), jnp.float32))
  rng = np.random.default_rng(3)
  with jax.enable_x64(True):
    # nonzero BatchNorm biases keep (Re)LU inputs off their kink at exactly 0 (where an all-zero
    # window of a convolution would otherwise sit), so finite differences are valid
    params = jax.tree_util.tree_map_with_path(
        lambda p, a: jnp.asarray(a + 0.1 * rng.normal(size=a.shape) * (p[-1].key == "bias"),
                                 jnp.float64), variables["params"])
    stats = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables["batch_stats"])

    @jax.jit
    def f(params, x):
      if train:
        y, _ = block.apply({"params": params, "batch_stats": stats}, x, train=True,
                           mutable=["batch_stats"])
        return y
      return block.apply({"params": params, "batch_stats": stats}, x, train=False)

    check_grads(f, (params, jnp.asarray(x, jnp.float64)), order=1, modes=("rev",))


def test_block_bad_input():
  with pytest.raises(ValueError, match=r"BasicBlock: expected an input of shape \(batch, height, width, "
                                       r"channels\), got shape \(2, 16\)"):
    jax.eval_shape(lambda x: jdl.nn.BasicBlock(4).init(jax.random.key(0), x),
                   jax.ShapeDtypeStruct((2, 16), jnp.float32))


# --------------------------------------------------------------------------- initialization


def test_he_init_keeps_relu_variance_within_factor_two():
  stats = jdl.nn.signal_propagation("he_normal", depth=20, width=512, batch=512)
  v = stats["variance"]
  assert v.shape == (20,)
  assert v.max() / v.min() < 2.0
  # ReLU of N(0, q): variance q (1/2 - 1/(2 pi)); He keeps q = 2 from the first layer on
  assert v[0] == pytest.approx(2 * (0.5 - 0.5 / math.pi), rel=0.1)


def test_small_init_collapses_and_glorot_halves_per_layer():
  small = jdl.nn.signal_propagation(jdl.nn.get_initializer("normal", stddev=0.01),
                                    depth=20, width=512, batch=512)["variance"]
  assert small[-1] / small[0] < 1e-20  # each layer multiplies the variance by ~512 * 1e-4 / 2
  glorot = jdl.nn.signal_propagation("glorot_normal", depth=20, width=512, batch=512)["variance"]
  ratios = glorot[1:] / glorot[:-1]
  np.testing.assert_allclose(ratios, 0.5, rtol=0.25)  # fan_avg = fan_in: half of He's variance
  assert glorot[-1] / glorot[0] < 1e-4


def test_dead_fraction_is_scale_invariant_without_bias_and_grows_with_negative_bias():
  shape = dict(depth=20, width=512, batch=512)  # the shapes above: no new compilation
  he = jdl.nn.signal_propagation("he_normal", **shape)
  he_scaled = jdl.nn.signal_propagation(jdl.nn.get_initializer("he_normal", scale=0.5), **shape)
  np.testing.assert_array_equal(he["dead_fraction"], he_scaled["dead_fraction"])
  assert he["dead_fraction"][0] == 0.0  # with 512 Gaussian inputs every unit fires for some input
  biased = jdl.nn.signal_propagation("he_normal", bias=-5.0, **shape)
  # P(N(0, 2) > 5) ~ 2e-4: most units stay off for all 512 inputs
  assert biased["dead_fraction"][0] > 0.5
  with pytest.raises(ValueError, match="depth must be an int >= 1, got 0"):
    jdl.nn.signal_propagation("he_normal", depth=0)
