#!/usr/bin/env python3
"""Golden trajectories of Keras 3 optimizers for train/optim.c (tests/test_optim.c).

Four small float32 variables (one of them named "scale", excluded from AdamW's weight decay with
exclude_from_weight_decay(var_names=["scale"]) as KerasHub's Gemma recipe does with
["bias", "scale"]) are updated for 10 steps by keras.optimizers.AdamW, Adam, SGD(momentum=0.9) and
plain SGD with weight decay, each starting from the same values and fed the same fixed
pseudo-random gradients. The learning rate changes every step (assigned to the optimizer before
each apply) so that the per-step lr, the decay and Adam's bias correction are all exercised.
Initial values are bounded away from zero (|w| in [0.5, 2]) so relative errors are meaningful;
the "tiny" variable gets gradients of 1e-7..1e-5 so Adam's epsilon (1e-7) matters.

Written to tests/fixtures/optim.h5:
  /vars/<name>/init       [shape]          initial value
  /vars/<name>/grads      [STEPS, shape]   gradient applied at each step
  /lr                     [STEPS]          learning rate of each step
  /<opt>                  attrs beta_1, beta_2, epsilon, weight_decay, momentum (0 if unused)
  /<opt>/<name>/after     [STEPS, shape]   the variable after each step
  /<opt>/<name>           attr use_weight_decay (Keras' _use_weight_decay for it, 0/1)
  /<opt>/<name>/momentum, /<opt>/<name>/velocity   optimizer state after the last step
  <opt> in adamw, adam, sgd_momentum, sgd_decay.

Run: KERAS_BACKEND=jax python3 tools/reference/make_optim_fixture.py
"""
import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

STEPS = 10
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "optim.h5")
VARS = [("kernel", (4, 3)), ("bias", (3,)), ("scale", (5,)), ("lora_kernel_a", (2, 3, 2)),
        ("tiny", (6,))]
# Varying per-step learning rate: a short warmup then a decay (any sequence would do).
LRS = [1e-2 * min(1.0, (t + 1) / 3) * (1.0 - 0.05 * t) for t in range(STEPS)]


def optimizers():
    adamw = keras.optimizers.AdamW(learning_rate=LRS[0], weight_decay=0.01, beta_1=0.9,
                                   beta_2=0.999, epsilon=1e-7)
    adamw.exclude_from_weight_decay(var_names=["scale"])
    return {
        "adamw": (adamw, dict(beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.01)),
        "adam": (keras.optimizers.Adam(learning_rate=LRS[0], beta_1=0.8, beta_2=0.99, epsilon=1e-7),
                 dict(beta_1=0.8, beta_2=0.99, epsilon=1e-7, weight_decay=0.0)),
        "sgd_momentum": (keras.optimizers.SGD(learning_rate=LRS[0], momentum=0.9),
                         dict(momentum=0.9, weight_decay=0.0)),
        "sgd_decay": (keras.optimizers.SGD(learning_rate=LRS[0], weight_decay=0.05),
                      dict(momentum=0.0, weight_decay=0.05)),
    }


def main():
    rng = np.random.default_rng(2024)
    init, grads = {}, {}
    for name, shape in VARS:
        mag = rng.uniform(0.5, 2.0, shape)
        init[name] = (mag * rng.choice([-1.0, 1.0], shape)).astype("float32")
        scale = 1e-6 if name == "tiny" else 1.0
        g = rng.normal(0, scale, (STEPS,) + shape)
        if name == "kernel":
            g[3] *= 50.0  # one large step: v lags behind m
            g[:, 0, 0] = 0.0  # a coordinate that never gets a gradient
        grads[name] = g.astype("float32")

    with h5py.File(OUT, "w") as f:
        f["lr"] = np.asarray(LRS, dtype="float64")
        for name, _ in VARS:
            f[f"vars/{name}/init"] = init[name]
            f[f"vars/{name}/grads"] = grads[name]
        for key, (opt, attrs) in optimizers().items():
            variables = [keras.Variable(init[n], name=n, dtype="float32") for n, _ in VARS]
            after = {n: [] for n, _ in VARS}
            for t in range(STEPS):
                opt.learning_rate = LRS[t]
                opt.apply([grads[n][t] for n, _ in VARS], variables)
                for (n, _), v in zip(VARS, variables):
                    after[n].append(np.asarray(v.value))
            assert int(opt.iterations.value) == STEPS
            g = f.create_group(key)
            for a in ("beta_1", "beta_2", "epsilon", "weight_decay", "momentum"):
                g.attrs[a] = float(attrs.get(a, 0.0))
            for (n, _), v in zip(VARS, variables):
                vg = g.create_group(n)
                vg.attrs["use_weight_decay"] = int(attrs["weight_decay"] > 0 and opt._use_weight_decay(v))
                vg["after"] = np.stack(after[n]).astype("float32")
            idx = {n: i for i, (n, _) in enumerate(VARS)}
            if key.startswith("adam"):
                for n, _ in VARS:
                    g[f"{n}/momentum"] = np.asarray(opt._momentums[idx[n]].value)
                    g[f"{n}/velocity"] = np.asarray(opt._velocities[idx[n]].value)
            elif opt.momentum:
                for n, _ in VARS:
                    g[f"{n}/momentum"] = np.asarray(opt.momentums[idx[n]].value)
    print("wrote", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
