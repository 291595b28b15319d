"""Reductions whose reverse-mode derivative survives XLA's recomputation.

``jnp.max``'s derivative finds the maximum's element by comparing the operand with the result (``x == max(x)``).
Under ``jax.jit`` XLA may compute the operand twice, in two fusions (once for the reduction, once for the
comparison), and the two copies can differ in the last bit; then no element equals the maximum and the
gradient is silently zero. Seen with the IL-6 peak of one teclistamab solve: ``jax.grad`` gave the right
derivatives, ``jax.jit(jax.grad)`` all zeros (``tests/test_reductions.py``). :func:`peak` takes the location once,
as an index (``argmax``), and gathers the value there: the same value, and a gradient that always reaches the
peak's element.
"""

from __future__ import annotations

import jax.numpy as jnp


def peak(x, axis: int = -1):
    """``max(x, axis)`` as ``x[argmax(x)]`` along ``axis``: equal values (NaN where ``x`` has a NaN, as
    ``jnp.max``); the derivative is 1 at the first maximal element, 0 elsewhere (``jnp.max`` splits ties; a
    tie between continuous model outputs has measure zero)."""
    x = jnp.asarray(x)
    i = jnp.argmax(x, axis=axis, keepdims=True)
    return jnp.squeeze(jnp.take_along_axis(x, i, axis=axis), axis=axis)
