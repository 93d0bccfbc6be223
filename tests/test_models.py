"""The model zoo: registry, torchvision parameter counts, forward passes, input checks."""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jdl.models
from jdl.models import _registry


def fake_variables(model, x):
  """Deterministic variables shaped like ``model.init`` without compiling random initializers:
  kernels N(0, 1/fan_in) from numpy, biases/means 0, scales/variances 1, others 0.25."""
  shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
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


def n_params(name, input_shape, num_classes, **options):
  model = jdl.models.create(name, num_classes=num_classes, **options)
  x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
  return sum(math.prod(a.shape) for a in jax.tree.leaves(variables["params"]))


@pytest.fixture
def registry(monkeypatch):
  """A private copy of the registry, so test registrations do not leak."""
  with _registry.MODELS.scoped():
    yield _registry


# --------------------------------------------------------------------------- registry


def test_registered_names():
  assert set(jdl.models.list_models()) >= {
      "mlp", "logreg", "lenet5", "cnn_small", "cnn1d", "alexnet",
      "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
      "resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v2",
      "rnn", "lstm", "gru", "birnn", "bilstm", "bigru"}


def test_unknown_model_lists_known_ones():
  with pytest.raises(ValueError, match=r"unknown model 'resnet19'; known models: .*mlp.*resnet18.*vgg16"):
    jdl.models.create("resnet19", num_classes=10)


def test_unknown_option_lists_the_model_options():
  with pytest.raises(TypeError, match=r"model 'resnet18' has no option\(s\) \['depth'\]; its options: "
                                      r".*stem.*width"):
    jdl.models.create("resnet18", num_classes=10, depth=3)
  with pytest.raises(ValueError, match="num_classes must be a positive int, got 0"):
    jdl.models.create("mlp", num_classes=0)


def test_model_options():
  options = jdl.models.model_options("resnet50")
  assert options["stage_sizes"] == (3, 4, 6, 3) and options["block"] == "bottleneck"
  assert options["stem"] == "imagenet" and options["kernel_init"] == "he_normal"
  assert jdl.models.model_options("bilstm")["bidirectional"] is True
  assert jdl.models.default_input_shape("resnet18") == (224, 224, 3)
  assert jdl.models.default_input_shape("cnn1d") == (40,)


def test_register_user_module_and_duplicate_name(registry):
  @jdl.models.register("my_net", input_shape=(3,))
  class MyNet(nn.Module):
    num_classes: int
    width: int = 4

    @nn.compact
    def __call__(self, x, train: bool = False):
      return nn.Dense(self.num_classes)(nn.relu(nn.Dense(self.width)(x)))

  model = jdl.models.create("my_net", num_classes=2, width=5)
  assert isinstance(model, MyNet) and model.width == 5 and model.num_classes == 2
  assert "my_net" in jdl.models.list_models()
  assert jdl.models.model_options("my_net") == {"width": 4}
  assert jdl.models.count_params("my_net", num_classes=2, width=5) == 3 * 5 + 5 + 5 * 2 + 2
  assert jdl.models.count_params("my_net") == 3 * 4 + 4 + 4 * 10 + 10  # registered input, 10 classes

  with pytest.raises(ValueError, match="a model named 'my_net' is already registered"):
    jdl.models.register("my_net")(lambda num_classes: MyNet(num_classes))
  jdl.models.register("my_net")(MyNet)  # the same factory again is a no-op

  def define_again():  # the same definition run twice (a re-imported file, a notebook cell)
    @jdl.models.register("cell_net")
    class CellNet(nn.Module):
      num_classes: int

      @nn.compact
      def __call__(self, x, train: bool = False):
        return nn.Dense(self.num_classes)(x)

    return CellNet

  first, second = define_again(), define_again()
  assert first is not second and isinstance(jdl.models.create("cell_net", num_classes=2), second)

  @jdl.models.register("my_net", overwrite=True)
  def my_net(num_classes, **options):
    return MyNet(num_classes, width=7, **options)

  assert jdl.models.create("my_net", num_classes=3).width == 7
  with pytest.raises(TypeError, match="name must be a non-empty string"):
    jdl.models.register("")


def test_mlp_keeps_its_meaning():
  model = jdl.models.create("mlp", num_classes=10, hidden=(512,))
  x = jax.ShapeDtypeStruct((2, 28, 28, 1), jnp.float32)
  shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
  assert jax.tree.map(jnp.shape, shapes) == {"params": {
      "Dense_0": {"kernel": (784, 512), "bias": (512,)},
      "Dense_1": {"kernel": (512, 10), "bias": (10,)}}}

  class PlainFlaxMLP(nn.Module):  # what "mlp" was: Flax's Dense with its default initializer
    @nn.compact
    def __call__(self, x):
      h = nn.relu(nn.Dense(16)(x.reshape((x.shape[0], -1))))
      return nn.Dense(3)(h)

  x = _input((4, 2, 1))
  ours = jdl.models.create("mlp", num_classes=3, hidden=(16,))
  variables = ours.init(jax.random.key(5), x)
  reference = PlainFlaxMLP().init(jax.random.key(5), x)
  jax.tree.map(np.testing.assert_array_equal, variables, reference)
  np.testing.assert_allclose(np.asarray(ours.apply(variables, x)),
                             np.asarray(PlainFlaxMLP().apply(reference, x)), rtol=1e-6)


def test_mlp_options_by_name():
  model = jdl.models.create("mlp", num_classes=2, hidden=(3, 3), activation="prelu",
                            kernel_init="zeros")
  variables = model.init(jax.random.key(0), jnp.ones((1, 4)))
  assert set(variables["params"]) == {"Dense_0", "Dense_1", "Dense_2", "PReLU_0", "PReLU_1"}
  assert not np.any(np.asarray(variables["params"]["Dense_0"]["kernel"]))


# --------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("name, expected", [
    ("resnet18", 11_689_512),
    ("resnet34", 21_797_672),
    ("resnet50", 25_557_032),
    ("resnet101", 44_549_160),
    ("vgg11", 132_863_336),
    ("vgg16", 138_357_544),
    ("vgg16_bn", 138_365_992),
    ("mobilenet_v2", 3_504_872),
    ("alexnet", 61_100_840),
])
def test_parameter_counts_match_torchvision(name, expected):
  assert n_params(name, (224, 224, 3), 1000) == expected


def test_small_model_parameter_counts():
  assert n_params("lenet5", (32, 32, 1), 10) == 61_706
  assert n_params("lenet5", (28, 28, 1), 10, padding=2) == 61_706
  assert n_params("cnn_small", (28, 28, 1), 10) == 83_562  # < 100K
  assert n_params("cnn1d", (40,), 10) == 5_210  # 125 flattened features
  assert n_params("logreg", (28, 28, 1), 10) == 7_850
  assert n_params("mobilenet_v2", (224, 224, 3), 1000, width_multiplier=0.5) == 1_968_680
  # LSTM: 4 gates x (input kernel 1x8 + recurrent 8x8 + bias 8); fc 8x10 + 10
  assert n_params("lstm", (40,), 10, hidden=8) == 4 * (8 + 64 + 8) + 90
  assert n_params("bigru", (40,), 10, hidden=8) == 2 * (3 * 8 + 3 * 64 + 4 * 8) + 16 * 10 + 10


def test_batch_stats_are_not_parameters():
  model = jdl.models.create("resnet18", num_classes=10, stem="small")
  x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
  assert set(variables) == {"params", "batch_stats"}
  assert sum(math.prod(a.shape) for a in jax.tree.leaves(variables["batch_stats"])) == 9_600
  # small stem: 3x3x3x64 conv instead of 7x7x3x64, and 10 classes
  assert n_params("resnet18", (32, 32, 3), 10, stem="small") == (
      11_689_512 - 7 * 7 * 3 * 64 + 3 * 3 * 3 * 64 - 512 * 990 - 990)


# --------------------------------------------------------------------------- forward passes

# The cheapest configuration of every registered model: (input shape, options).
FORWARD_CASES = {
    "mlp": ((8, 8, 1), {"hidden": (16,), "dropout": 0.5}),
    "logreg": ((8, 8, 1), {}),
    "lenet5": ((28, 28, 1), {"padding": 2}),
    "cnn_small": ((8, 8, 1), {"features": (4, 8)}),
    "cnn1d": ((40,), {}),
    "alexnet": ((63, 63, 3), {"hidden": 16}),
    **{f"vgg{d}{bn}": ((32, 32, 3), {"hidden": 16, "pool_size": 1})
       for d in (11, 13, 16, 19) for bn in ("", "_bn")},
    **{f"resnet{d}": ((32, 32, 3), {"stem": "small", "width": 8}) for d in (18, 34, 50, 101)},
    "mobilenet_v2": ((32, 32, 3), {"width_multiplier": 0.25}),
    **{name: ((6,), {"hidden": 4}) for name in ("rnn", "lstm", "gru", "birnn", "bilstm", "bigru")},
}


def test_every_zoo_model_has_a_forward_case():
  zoo = set()
  for name in jdl.models.list_models():  # other tests may have registered their own models
    factory = _registry.MODELS[name]
    while isinstance(factory, functools.partial):
      factory = factory.func
    if factory.__module__.startswith("jdl.models."):
      zoo.add(name)
  assert set(FORWARD_CASES) == zoo


def _input(shape, batch=2, seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(batch, *shape)), jnp.float32)


# Deep variants built from the same layers as an executed one (vgg11/vgg11_bn, resnet18)
# are traced abstractly (shapes and dtypes, no compilation) to keep the suite fast.
# The bottleneck block runs in tests/test_nn.py.
TRACED_ONLY = {"vgg13", "vgg16", "vgg19", "vgg13_bn", "vgg16_bn", "vgg19_bn",
               "resnet34", "resnet50", "resnet101"}


def cheap_init(key, shape, dtype=jnp.float32):
  """A deterministic kernel initializer (variance ~ 1/fan_in) that compiles to a few ops."""
  del key
  fan_in = math.prod(shape[:-1])
  values = jnp.sin(jnp.arange(math.prod(shape), dtype=jnp.float32) * 0.7 + 0.3)
  return (values * math.sqrt(2.0 / fan_in)).reshape(shape).astype(dtype)


@pytest.mark.parametrize("name", sorted(FORWARD_CASES))
def test_forward_pass(name):
  shape, options = FORWARD_CASES[name]
  options = {**options, "kernel_init": cheap_init}
  if name in ("rnn", "lstm", "gru", "birnn", "bilstm", "bigru"):
    options["recurrent_init"] = cheap_init
  model = jdl.models.create(name, num_classes=3, **options)
  x = _input(shape)
  init_and_apply = lambda x: model.init_with_output(jax.random.key(0), x, train=False)  # noqa: E731
  if name in TRACED_ONLY:
    out, _ = jax.eval_shape(init_and_apply, x)
  else:
    out, _ = jax.jit(init_and_apply)(x)  # one trace, one compilation
    assert np.all(np.isfinite(np.asarray(out)))
    assert np.std(np.asarray(out)) > 0
  assert out.shape == (2, 3) and out.dtype == jnp.float32


def test_imagenet_stem_forward():
  model = jdl.models.create("resnet18", num_classes=3, width=4)
  x = _input((64, 64, 3), batch=1)
  variables = fake_variables(model, x)
  shapes = {}

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == "__call__" and len(context.module.path) == 1:
      shapes[context.module.path[0]] = out.shape
    return out

  with nn.intercept_methods(record):
    out = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
  assert out.shape == (1, 3)
  assert shapes["stem_conv"] == (1, 32, 32, 4)  # 7x7 / 2, padding 3
  assert shapes["layer1_0"] == (1, 16, 16, 4)  # after the 3x3 / 2 max-pool
  assert shapes["layer4_1"] == (1, 2, 2, 32)


@pytest.mark.parametrize("name", ["cnn_small", "mlp"])  # BatchNorm and dropout; dropout only
def test_train_mode_updates_batch_stats_and_uses_dropout(name):
  shape, options = FORWARD_CASES[name]
  model = jdl.models.create(name, num_classes=3, **options)
  x = _input(shape, batch=4)
  variables = fake_variables(model, x)

  @jax.jit
  def train_step(variables, x, key):
    return model.apply(variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": key})

  out, updates = train_step(variables, x, jax.random.key(1))
  again, _ = train_step(variables, x, jax.random.key(1))
  assert out.shape == (4, 3) and out.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(out), np.asarray(again))  # same rng, same output
  if "batch_stats" in variables:
    old = jax.tree.leaves(variables["batch_stats"])
    new = jax.tree.leaves(updates["batch_stats"])
    assert all(a.shape == b.shape for a, b in zip(old, new))
    assert any(np.any(np.asarray(a) != np.asarray(b)) for a, b in zip(old, new))
  else:
    assert not updates  # nothing else is mutable
  other, _ = train_step(variables, x, jax.random.key(2))  # dropout: the rng matters
  assert np.any(np.asarray(out) != np.asarray(other))
  evaluated = model.apply(variables, x, train=False)
  assert np.any(np.asarray(out) != np.asarray(evaluated))


# --------------------------------------------------------------------------- bad inputs


def _apply_shapes(name, build_shape, call_shape, **options):
  """Builds parameters for ``build_shape`` and traces the model on ``call_shape``."""
  model = jdl.models.create(name, num_classes=10, **options)
  build = jax.ShapeDtypeStruct(build_shape, jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), build)
  return jax.eval_shape(lambda v, x: model.apply(v, x), variables,
                        jax.ShapeDtypeStruct(call_shape, jnp.float32))


@pytest.mark.parametrize("name, build, call, message", [
    ("resnet18", (2, 32, 32, 3), (2, 784),
     r"resnet: expected images of shape \(batch, height, width, channels\) \(NHWC\).*\(2, 784\)"),
    ("cnn_small", (2, 28, 28, 1), (2, 28, 28, 3),
     r"cnn_small: expected an input of shape \(batch, height, width, 1\) .* got shape \(2, 28, 28, 3\)"),
    ("mobilenet_v2", (2, 32, 32, 3), (2, 32, 32, 1), r"\(batch, height, width, 3\)"),
    ("vgg11", (2, 32, 32, 1), (2, 32, 32, 3), r"vgg: expected an input of shape \(batch, height, width, 1\)"),
    ("alexnet", (2, 64, 64, 3), (2, 64, 64, 1), r"alexnet: expected an input of shape \(batch, height, width, 3\)"),
    ("lenet5", (2, 32, 32, 1), (2, 28, 28, 1),
     r"lenet5: the parameters were built for 400 features after the convolutions, but an input "
     r"of shape \(2, 28, 28, 1\) gives 256"),
    ("mlp", (2, 784), (2, 32, 32, 3),
     r"mlp: the parameters were built for 784 input features \(expected an input of shape "
     r"\(batch, 784\).*\(2, 32, 32, 3\) gives 3072"),
    ("cnn1d", (2, 40), (2, 40, 2), r"cnn1d: expected an input of shape \(batch, length, 1\)"),
    ("cnn1d", (2, 40), (2, 40, 1, 1), r"cnn1d: expected signals of shape \(batch, length\)"),
    ("lstm", (2, 40, 3), (2, 40, 2), r"rnn: expected an input of shape \(batch, time, 3\)"),
    ("bigru", (2, 40), (2, 40, 1, 1), r"rnn: expected sequences of shape \(batch, time, features\)"),
])
def test_wrong_input_names_the_expected_shape(name, build, call, message):
  with pytest.raises(ValueError, match=message):
    _apply_shapes(name, build, call)


@pytest.mark.parametrize("name, shape, message", [
    ("alexnet", (2, 32, 32, 3), r"alexnet: expected images of at least 63×63 pixels"),
    ("vgg16", (2, 16, 16, 3), r"vgg: expected images of at least 32×32 pixels"),
    ("lenet5", (2, 15, 15, 1), r"lenet5: expected images of at least 16×16 pixels"),
])
def test_too_small_images(name, shape, message):
  with pytest.raises(ValueError, match=message):
    _apply_shapes(name, shape, shape)


@pytest.mark.parametrize("name, options, message", [
    ("resnet18", {"stem": "tiny"}, r"stem must be one of \['imagenet', 'small'\], got 'tiny'"),
    ("lstm", {"pool": "first"}, r"pool must be one of \['last', 'mean', 'max'\], got 'first'"),
    ("mlp", {"activation": "relu7"}, r"unknown activation 'relu7'"),
    ("cnn_small", {"kernel_init": "he"}, r"unknown initializer 'he'; known initializers:"),
    ("lenet5", {"pooling": "min"}, r"pooling must be 'max' or 'avg', got 'min'"),
])
def test_bad_option_values(name, options, message):
  shape = {"lstm": (2, 5), "mlp": (2, 4)}.get(name, (2, 32, 32, 1))
  with pytest.raises(ValueError, match=message):
    _apply_shapes(name, shape, shape, **options)
