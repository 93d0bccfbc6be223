"""Convolutions whose backward pass XLA's CPU backend runs fast, inside loops too.

``lax.conv_general_dilated``'s gradients are convolutions too, but with their
dimensions in unusual roles: the kernel gradient treats the batch as the
feature dimension and the channels as the batch (``dim_labels=f01b_i01o->01bf``
for an NHWC convolution), the input gradient reads the kernel as ``OI``. On a
CPU, XLA calls its fast convolution kernels (Eigen, or XNNPACK) only for the
canonical form ``b01f_01io->b01f``; in a program of one step its layout
assignment physically transposes the operands to reach that form, but inside a
``while`` loop (``lax.scan``: jdl's device-resident epoch) the operands' layouts
are fixed by the loop and the gradient convolutions fall back to XLA's generic
loop emitter, an order of magnitude slower (the upstream report
jax-ml/jax#12868; measured here: 23× slower for a 2-conv CNN's step).

``conv_general_dilated`` here has the same signature and values as
``lax.conv_general_dilated``. For channel-last convolutions on a CPU
(``NWC``/``NHWC``/``NDHWC`` inputs, ``WIO``/``HWIO``/``DHWIO`` kernels, no input
dilation) it is a ``jax.custom_vjp`` whose two gradient convolutions are
written in the canonical form, their operands transposed explicitly, so XLA
runs all three with its fast kernels wherever they are: the input gradient is
the output gradient convolved with the spatially flipped kernel (input and
output channels swapped within each group); the kernel gradient convolves the
input, channels as the batch, with the output gradient, the batch as the
features. Strides, padding, kernel dilation and feature groups are handled.
A convolution with few input channels (at most 8: a first layer's 1 or 3,
LeNet's 6) or a 1×1 window (ResNet's shortcuts, MobileNetV2's pointwise
layers) is matrix products of its patches instead, forward and backward
(``_im2col``): XLA's CPU convolution kernels are slow on thin channel
dimensions, its matrix products are not (2-4× per layer, measured in
benchmarks/results/conv_cpu.md), while the patches are gathered by one fused
pass of shifted slices; the input gradient returns each patch's share to its
pixels by interior padding. A depthwise
convolution (one kernel per channel, MobileNet's) is a sum of shifted, strided
slices times the per-channel weights instead: XLA's CPU convolution kernels take
no grouped convolution, and its generic loop for them is slow in a step and in
a loop alike, while the slices fuse into one pass over the data. The values and
gradients equal ``lax.conv_general_dilated``'s (``tests/test_conv.py``). On GPUs
and TPUs, and for other layouts, it is ``lax.conv_general_dilated`` itself.

``jdl.nn.Conv`` uses it, so every convolution of the zoo (LeNet-5,
``cnn_small``, ``cnn1d``, AlexNet, VGG, ResNet, MobileNetV2) gets it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_LHS = {3: "NWC", 4: "NHWC", 5: "NDHWC"}
_RHS = {3: "WIO", 4: "HWIO", 5: "DHWIO"}


def _canonical_numbers(ndim: int) -> lax.ConvDimensionNumbers:
  return lax.conv_dimension_numbers((1,) * ndim, (1,) * ndim, (_LHS[ndim], _RHS[ndim], _LHS[ndim]))


def _is_channel_last(dimension_numbers: Any, ndim: int) -> bool:
  if ndim not in _LHS:
    return False
  if dimension_numbers is None:
    return False  # lax's default is NCHW
  if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    given = dimension_numbers
  else:
    given = lax.conv_dimension_numbers((1,) * ndim, (1,) * ndim, dimension_numbers)
  return given == _canonical_numbers(ndim)


def use_canonical_path() -> bool:
  """Whether convolutions take the canonical-gradient path: on a CPU backend."""
  return jax.default_backend() == "cpu"


def conv_general_dilated(lhs, rhs, window_strides: Sequence[int], padding: str | Sequence[tuple[int, int]],
                         lhs_dilation: Sequence[int] | None = None, rhs_dilation: Sequence[int] | None = None,
                         dimension_numbers: Any = None, feature_group_count: int = 1, batch_group_count: int = 1,
                         precision: Any = None, preferred_element_type: Any = None) -> jax.Array:
  """``lax.conv_general_dilated``, with gradients XLA's CPU backend runs fast in loops (module docstring)."""
  ndim = np.ndim(lhs)
  spatial = ndim - 2
  plain = (lhs_dilation is None or all(d == 1 for d in lhs_dilation)) and batch_group_count == 1
  if not (plain and use_canonical_path() and _is_channel_last(dimension_numbers, ndim)
          and preferred_element_type is None):
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
                                    rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                                    feature_group_count=feature_group_count, batch_group_count=batch_group_count,
                                    precision=precision, preferred_element_type=preferred_element_type)
  strides = tuple(int(s) for s in window_strides)
  dilation = tuple(int(d) for d in (rhs_dilation or (1,) * spatial))
  if isinstance(padding, str):
    window = [(k - 1) * d + 1 for k, d in zip(np.shape(rhs)[:spatial], dilation)]
    pads = tuple(tuple(int(p) for p in pair)
                 for pair in lax.padtype_to_pads(np.shape(lhs)[1:-1], window, strides, padding))
  else:
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  groups = int(feature_group_count)
  if groups > 1 and groups == np.shape(lhs)[-1] == np.shape(rhs)[-1]:
    return _depthwise(lhs, rhs, strides, pads, dilation)
  out = _out_shape(np.shape(lhs), np.shape(rhs)[:spatial], strides, pads, dilation)
  if _use_im2col(np.shape(lhs), np.shape(rhs), out, groups, np.dtype(lhs.dtype).itemsize):
    return _im2col(lhs, rhs, strides, pads, dilation, precision)
  return _conv(lhs, rhs, strides, pads, dilation, groups, precision)


def _depthwise(x, w, strides, pads, dilation):
  """A depthwise convolution (one kernel per channel) as a sum of shifted, strided slices.

  ``y[n, p, c] = Σ_k x_pad[n, p·s + k·d, c] · w[k, 0, c]``: a few multiply-adds
  per output that XLA fuses into one pass over the data, where its CPU
  convolution kernels take grouped convolutions only through a generic loop
  (and their gradients, with ``batch_group_count``, likewise). JAX's own rules
  differentiate it (slices, pads and products), equally fusable.
  """
  spatial = x.ndim - 2
  x = _pad(x, pads)
  kernel = w.shape[:spatial]
  out = [(x.shape[1 + i] - (kernel[i] - 1) * dilation[i] - 1) // strides[i] + 1 for i in range(spatial)]
  y = None
  for offsets in np.ndindex(*kernel):
    start = (0, *(o * d for o, d in zip(offsets, dilation)), 0)
    limit = (x.shape[0], *(st + (n - 1) * s + 1 for st, n, s in zip(start[1:-1], out, strides)), x.shape[-1])
    part = lax.slice(x, start, limit, (1, *strides, 1)) * w[offsets + (0,)].reshape((1,) * (spatial + 1) + (-1,))
    y = part if y is None else y + part
  return y


def _pad(x, pads):
  """``x`` with its spatial dimensions padded (negative pads crop, as in ``lax.conv_general_dilated``)."""
  return lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), *((lo, hi, 0) for lo, hi in pads), (0, 0, 0)])


def _forward(x, w, strides, pads, dilation, groups, precision):
  return lax.conv_general_dilated(x, w, strides, pads, rhs_dilation=dilation,
                                  dimension_numbers=_canonical_numbers(x.ndim), feature_group_count=groups,
                                  precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _conv(x, w, strides, pads, dilation, groups, precision):
  return _forward(x, w, strides, pads, dilation, groups, precision)


def _conv_fwd(x, w, strides, pads, dilation, groups, precision):
  return _forward(x, w, strides, pads, dilation, groups, precision), (x, w)


def _conv_bwd(strides, pads, dilation, groups, precision, residuals, g):
  x, w = residuals
  spatial = x.ndim - 2
  numbers = _canonical_numbers(x.ndim)
  kernel = w.shape[:spatial]
  c_in, c_out = x.shape[-1], w.shape[-1]
  in_shape, out_shape = x.shape[1:-1], g.shape[1:-1]
  window = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
  dilated_out = [(o - 1) * s + 1 for o, s in zip(out_shape, strides)]

  # The input gradient: g, dilated by the strides, convolved with the flipped kernel whose input and
  # output channels are swapped within each group: (*K, Cin/G, Cout) -> (*K, Cout/G, Cin).
  w_flip = lax.rev(w, tuple(range(spatial)))
  w_t = w_flip.reshape(kernel + (c_in // groups, groups, c_out // groups))
  w_t = jnp.transpose(w_t, tuple(range(spatial)) + (spatial + 2, spatial + 1, spatial)).reshape(
      kernel + (c_out // groups, c_in))
  pads_x = []
  for (lo, _), n, win, out in zip(pads, in_shape, window, dilated_out):
    before = win - lo - 1
    pads_x.append((before, n + win - 1 - out - before))
  dx = lax.conv_general_dilated(g, w_t, (1,) * spatial, pads_x, lhs_dilation=strides, rhs_dilation=dilation,
                                dimension_numbers=numbers, feature_group_count=groups, precision=precision)

  # The kernel gradient: x with its channels as the batch (Cin, *S, N), convolved with g with its batch as
  # the input features (*So, N, Cout), the window strided by the kernel dilation and dilated by the
  # strides; each group of Cin pairs with its group of Cout (batch_group_count). Result (Cin/G, *K, Cout).
  x_t = jnp.transpose(x, (x.ndim - 1,) + tuple(range(1, spatial + 1)) + (0,))
  g_t = jnp.transpose(g, tuple(range(1, spatial + 1)) + (0, x.ndim - 1))
  pads_w = []
  for (lo, _), n, win, out in zip(pads, in_shape, window, dilated_out):
    pads_w.append((lo, out - n + win - lo - 1))
  dw = lax.conv_general_dilated(x_t, g_t, dilation, pads_w, rhs_dilation=strides, dimension_numbers=numbers,
                                batch_group_count=groups, precision=precision)
  dw = jnp.transpose(dw, tuple(range(1, spatial + 1)) + (0, x.ndim - 1))
  return dx.astype(x.dtype), dw.astype(w.dtype)


# Few input channels (a first layer's 1 or 3, LeNet's 6) or a 1×1 window: XLA's CPU convolution kernels
# run such convolutions, and their gradients, at a few GFLOP/s, while the same arithmetic as matrix
# products of the patches is several times faster (benchmarks/results/conv_cpu.md). The patches
# matrix has N·So·K·Cin entries, hence the bound on its size (past it, the convolution path).
_IM2COL_MAX_CIN = 8
_IM2COL_MAX_BYTES = 256 * 2**20


def _use_im2col(x_shape, w_shape, out_shape, groups, itemsize) -> bool:
  spatial = len(x_shape) - 2
  kernel = int(np.prod(w_shape[:spatial]))
  c_in = x_shape[-1]
  if groups != 1 or not (c_in <= _IM2COL_MAX_CIN or kernel == 1):
    return False
  if not isinstance(x_shape[0], (int, np.integer)):  # a symbolic batch (jax.export): the bound cannot be decided
    return False
  return x_shape[0] * int(np.prod(out_shape)) * kernel * c_in * itemsize <= _IM2COL_MAX_BYTES


def _out_shape(x_shape, kernel, strides, pads, dilation):
  return tuple((n + lo + hi - (k - 1) * d - 1) // s + 1
               for n, k, s, (lo, hi), d in zip(x_shape[1:-1], kernel, strides, pads, dilation))


def _patches(x, kernel, strides, pads, dilation, out):
  """``(N, *So, prod(K)·Cin)``: ``x_pad[n, p·s + k·d, i]`` for every window offset ``k``, offsets outer."""
  spatial = x.ndim - 2
  if all(k == 1 for k in kernel) and all(lo == hi == 0 for lo, hi in pads) and all(s == 1 for s in strides):
    return x
  x = _pad(x, pads)
  columns = []
  for offsets in np.ndindex(*kernel):
    begin = (0, *(o * d for o, d in zip(offsets, dilation)), 0)
    limit = (x.shape[0], *(b + (n - 1) * s + 1 for b, n, s in zip(begin[1:-1], out, strides)), x.shape[-1])
    columns.append(lax.slice(x, begin, limit, (1, *strides, 1)))
  if len(columns) == 1:
    return columns[0]
  return jnp.concatenate(columns, axis=spatial + 1)


def _matmul_last(a, b, precision):
  """``a[..., k] · b[k, o]`` over the last axis of ``a``."""
  return lax.dot_general(a, b, (((a.ndim - 1,), (0,)), ((), ())), precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _im2col(x, w, strides, pads, dilation, precision):
  """A convolution as patches × kernel: one matrix product (and two for its gradients)."""
  kernel = w.shape[:x.ndim - 2]
  out = _out_shape(x.shape, kernel, strides, pads, dilation)
  return _matmul_last(_patches(x, kernel, strides, pads, dilation, out), w.reshape(-1, w.shape[-1]), precision)


def _im2col_fwd(x, w, strides, pads, dilation, precision):
  return _im2col(x, w, strides, pads, dilation, precision), (x, w)


def _im2col_bwd(strides, pads, dilation, precision, residuals, g):
  x, w = residuals
  spatial = x.ndim - 2
  kernel = w.shape[:spatial]
  c_in, c_out = x.shape[-1], w.shape[-1]
  out = g.shape[1:-1]
  # The kernel gradient: patchesᵀ · g, every pixel of the batch reduced in one product (recomputing the
  # patches, a fused pass over x, rather than keeping them from the forward pass).
  p = _patches(x, kernel, strides, pads, dilation, out)
  dw = lax.dot_general(p.reshape(-1, p.shape[-1]), g.reshape(-1, c_out), (((0,), (0,)), ((), ())),
                       precision=precision).reshape(w.shape)
  # The input gradient: g · Wᵀ gives each window offset's share of every patch; each share goes back to
  # the input positions p·s + k·d - lo it was read from (a pad with interior s-1 places it there, negative
  # pads crop what fell into the padding), and the shares add up in one fused pass.
  shares = _matmul_last(g, w.reshape(-1, c_out).T, precision)
  shares = shares.reshape(g.shape[:-1] + (int(np.prod(kernel)), c_in))
  dx = None
  for i, offsets in enumerate(np.ndindex(*kernel)):
    config = [(0, 0, 0)]
    for o, d, (lo, _), n_in, n_out, st in zip(offsets, dilation, pads, x.shape[1:-1], out, strides):
      before = o * d - lo
      config.append((before, n_in - before - ((n_out - 1) * st + 1), st - 1))
    config.append((0, 0, 0))
    part = lax.pad(shares[..., i, :], jnp.zeros((), shares.dtype), config)
    dx = part if dx is None else dx + part
  return dx.astype(x.dtype), dw.astype(w.dtype)


_im2col.defvjp(_im2col_fwd, _im2col_bwd)


_conv.defvjp(_conv_fwd, _conv_bwd)
