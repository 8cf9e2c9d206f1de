"""A mixture-of-experts feed-forward layer with sparse dispatch: compute follows k, not the experts."""

import keras
import tensorflow as tf

from model.layers.input_checks import check_dim, check_rank
from model.supermoe.expert_routing import route_tokens

DISPATCHES = ("sparse", "dense")


@keras.saving.register_keras_serializable(package="uur")
class SparseMixtureOfExperts(keras.layers.Layer):
    """E feed-forward experts, each token served by its top-k (``model/supermoe/expert_routing.py``).

    Expert e is ``W2_e act(W1_e x + b1_e) + b2_e`` (the transformer
    feed-forward of Vaswani et al., 2017, one per expert); a token's output is
    the gate-weighted sum of its kept experts' outputs, and 0 where every
    assignment was dropped (the block's residual carries the token on).

    ``dispatch="sparse"`` (the default) gathers each expert's tokens into its
    ``capacity`` slots, runs the experts as one batched matmul over
    [experts, capacity, dim] and scatters the results back: the work is about
    ``capacity_factor * k`` feed-forwards per token whatever the number of
    experts. ``dispatch="dense"`` runs every expert on every token and
    weights the outputs by the same gates, as keras-hub's Mixtral and
    Qwen-MoE blocks do; it exists to measure the difference (``bench/moe.py``)
    and to check the sparse form against (no capacity: the two agree).

    ``context_dim > 0`` adds a per-example context to the router's logits,
    ``logits = x W_r + c W_c``: SUPERMOE's task indicator conditions which
    experts a task's tokens use through it. ``num_routers > 1`` keeps that
    many router kernels and a call picks one (``router``): per-task gates
    over shared experts, as MMoE (Ma et al., KDD 2018); with k = E the
    mixture is MMoE's soft one.

    With one expert (k = 1) the layer is exactly a dense feed-forward layer
    (the gate is 1 and, for capacity factors >= 1, nothing is dropped).

    Example:

    ```python
    moe = SparseMixtureOfExperts(num_experts=8, experts_per_token=2, hidden_dim=256)
    outputs, routing = moe(hidden, token_mask=mask, training=True)
    # outputs: [batch_size, length, dim]; routing["load_balancing_loss"]: a scalar
    ```

    Args:
        num_experts: E.
        experts_per_token: k (1: Switch; 2: GShard / Mixtral).
        hidden_dim: width inside each expert.
        capacity_factor: training-time slots per expert relative to an even
            share (Switch: 1.0-1.25); at inference nothing is dropped.
        activation: the experts' activation.
        dispatch: "sparse" or "dense" (see above).
        context_dim: width of the router's context input, 0 for none.
        router_stddev: standard deviation of the router's initial weights;
            small, so routing starts near uniform (Switch: scale 0.1).
        num_routers: router kernels to choose from per call (1: one shared router).
    """

    def __init__(self, num_experts, experts_per_token, hidden_dim, capacity_factor=1.25,
                 activation="gelu", dispatch="sparse", context_dim=0, router_stddev=0.02,
                 num_routers=1, **kwargs):
        super().__init__(**kwargs)
        if int(num_experts) < 1:
            raise ValueError(f"`num_experts` should be at least 1. Received: num_experts={num_experts}.")
        if not 1 <= int(experts_per_token) <= int(num_experts):
            raise ValueError(f"`experts_per_token` should be in [1, num_experts={num_experts}]. "
                             f"Received: experts_per_token={experts_per_token}.")
        if int(hidden_dim) < 1:
            raise ValueError(f"`hidden_dim` should be at least 1. Received: hidden_dim={hidden_dim}.")
        if not float(capacity_factor) > 0:
            raise ValueError(f"`capacity_factor` should be more than 0. "
                             f"Received: capacity_factor={capacity_factor}.")
        if dispatch not in DISPATCHES:
            raise ValueError(f"`dispatch` should be one of {DISPATCHES}. Received: dispatch={dispatch!r}.")
        if int(num_routers) < 1:
            raise ValueError(f"`num_routers` should be at least 1. Received: num_routers={num_routers}.")
        if int(context_dim) < 0:
            raise ValueError(f"`context_dim` should be at least 0. Received: context_dim={context_dim}.")
        self.num_experts = int(num_experts)
        self.experts_per_token = int(experts_per_token)
        self.hidden_dim = int(hidden_dim)
        self.capacity_factor = float(capacity_factor)
        self.activation = keras.activations.get(activation)
        self.dispatch = dispatch
        self.context_dim = int(context_dim)
        self.router_stddev = float(router_stddev)
        self.num_routers = int(num_routers)

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim is None:
            raise ValueError(f"The last dimension of the layer's input should be known. "
                             f"Received: input_shape={tuple(input_shape)}.")
        dim = int(dim)
        experts, hidden = self.num_experts, self.hidden_dim
        router = keras.initializers.TruncatedNormal(stddev=self.router_stddev)
        # The router stays float32 under any dtype policy (see expert_routing).
        self.router_kernel = self.add_weight(name="router_kernel",
                                             shape=(self.num_routers, dim, experts),
                                             initializer=router, dtype="float32")
        self.context_kernel = (self.add_weight(name="context_kernel",
                                               shape=(self.context_dim, experts),
                                               initializer=router, dtype="float32")
                               if self.context_dim else None)
        # Fan-in scaling per expert: Keras's fan-in of a 3-D kernel would count E * dim.
        self.inner_kernel = self.add_weight(
            name="inner_kernel", shape=(experts, dim, hidden),
            initializer=keras.initializers.TruncatedNormal(stddev=dim ** -0.5))
        self.inner_bias = self.add_weight(name="inner_bias", shape=(experts, hidden),
                                          initializer="zeros")
        self.outer_kernel = self.add_weight(
            name="outer_kernel", shape=(experts, hidden, dim),
            initializer=keras.initializers.TruncatedNormal(stddev=hidden ** -0.5))
        self.outer_bias = self.add_weight(name="outer_bias", shape=(experts, dim),
                                          initializer="zeros")

    def call(self, inputs, token_mask=None, context=None, router=0, training=False):
        """Routes and runs the experts.

        Args:
            inputs: [batch_size, length, dim].
            token_mask: bool [batch_size, length], False at padding (routed nowhere,
                output 0); None: every position is real.
            context: [batch_size, context_dim], the router's context (needed
                exactly when ``context_dim > 0``).
            router: which router kernel routes (a Python int below ``num_routers``).
            training: apply the capacity factor (inference drops nothing).

        Returns:
            (outputs [batch_size, length, dim], routing): ``routing`` holds the
            scalars ``load_balancing_loss``, ``router_z_loss``,
            ``dropped_fraction`` and ``expert_load`` [num_experts].
        """
        batch_size, length, dim = check_rank(inputs, 3, "inputs", "[batch_size, length, dim]")
        if token_mask is not None:
            mask_shape = check_rank(token_mask, 2, "token_mask", "[batch_size, length]")
            check_dim(mask_shape[1], length,
                      f"`token_mask` should have the length of `inputs` ({length}). "
                      f"Received: `token_mask.shape` = {mask_shape}.")
        if (context is None) != (self.context_dim == 0):
            raise ValueError(f"`context` should be given exactly when context_dim > 0 "
                             f"(context_dim={self.context_dim}). Received: "
                             f"context={'None' if context is None else tuple(context.shape)}.")
        if context is not None:
            context_shape = check_rank(context, 2, "context", "[batch_size, context_dim]")
            check_dim(context_shape[1], self.context_dim,
                      f"`context` should have {self.context_dim} columns. "
                      f"Received: `context.shape` = {context_shape}.")

        if not 0 <= int(router) < self.num_routers:
            raise ValueError(f"`router` should be in [0, num_routers={self.num_routers}). "
                             f"Received: router={router}.")
        shape = tf.shape(inputs)
        tokens = tf.reshape(inputs, [-1, dim])  # [batch * length, dim]
        valid = (tf.ones([tf.shape(tokens)[0]], tf.bool) if token_mask is None
                 else tf.reshape(tf.cast(token_mask, tf.bool), [-1]))
        logits = tf.matmul(tf.cast(tokens, tf.float32), self.router_kernel[int(router)])
        if context is not None:
            per_example = tf.matmul(tf.cast(context, tf.float32), self.context_kernel)
            logits = tf.reshape(tf.reshape(logits, [shape[0], shape[1], -1])
                                + per_example[:, None, :], [-1, self.num_experts])
        routing = route_tokens(logits, valid, self.experts_per_token,
                               capacity_factor=self.capacity_factor if training else None)
        if self.dispatch == "sparse":
            outputs = self._sparse_experts(tokens, routing)
        else:
            outputs = self._dense_experts(tokens, routing)
        statistics = {"load_balancing_loss": routing.load_balancing_loss,
                      "router_z_loss": routing.router_z_loss,
                      "dropped_fraction": routing.dropped_fraction,
                      "expert_load": routing.expert_load}
        return tf.reshape(outputs, shape), statistics

    def _expert_outputs(self, slots):
        """[experts, n, dim] -> [experts, n, dim]: expert e's feed-forward on its own rows."""
        hidden = self.activation(tf.einsum("end,edh->enh", slots, self.inner_kernel)
                                 + self.inner_bias[:, None, :])
        return tf.einsum("enh,ehd->end", hidden, self.outer_kernel) + self.outer_bias[:, None, :]

    def _sparse_experts(self, tokens, routing):
        dim = tokens.shape[-1]
        slot_count = self.num_experts * routing.capacity
        dispatched = tf.scatter_nd(routing.slots[:, None], tf.gather(tokens, routing.tokens),
                                   tf.stack([slot_count, dim]))
        served = self._expert_outputs(tf.reshape(dispatched, [self.num_experts, -1, dim]))
        # Empty slots computed the biases alone; no assignment reads them back.
        results = tf.gather(tf.reshape(served, [-1, dim]), routing.slots)
        weighted = results * tf.cast(routing.gates, results.dtype)[:, None]
        return tf.math.unsorted_segment_sum(weighted, routing.tokens, tf.shape(tokens)[0])

    def _dense_experts(self, tokens, routing):
        num_tokens = tf.shape(tokens)[0]
        # [tokens, experts] gate matrix, zero where a token did not choose (or lost) an expert.
        experts = routing.slots // routing.capacity
        gates = tf.scatter_nd(tf.stack([routing.tokens, experts], axis=1), routing.gates,
                              tf.stack([num_tokens, self.num_experts]))
        every = self._expert_outputs(tf.repeat(tokens[None], self.num_experts, axis=0))
        return tf.einsum("te,etd->td", tf.cast(gates, every.dtype), every)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_experts": self.num_experts,
            "experts_per_token": self.experts_per_token,
            "hidden_dim": self.hidden_dim,
            "capacity_factor": self.capacity_factor,
            "activation": keras.activations.serialize(self.activation),
            "dispatch": self.dispatch,
            "context_dim": self.context_dim,
            "router_stddev": self.router_stddev,
            "num_routers": self.num_routers,
        })
        return config
