#!/usr/bin/env python3
"""Generate tests/reference/golden.json from l0-python (PyTorch) on CPU.

Run from the repository root:

    /work/refvenv/bin/python tests/reference/make_golden.py

All randomness is removed: the Hard Concrete uniforms are injected by
monkeypatching ``torch.rand_like`` (the only random call inside the training
loops), the initial parameters are written directly, and the calibration
model is built with both jitter SDs set to 0.  Everything is float32 on CPU.

Calibration "after" comes from the real ``SparseCalibrationWeights.fit``.
Regression "after" comes from a loop that replicates ``SparseL0Linear.fit``'s
loop body (``fit`` itself re-initialises the weight from the global RNG); the
script checks that loop bit-for-bit against a real ``fit`` call.
"""

import contextlib
import json
import os
import sys

import numpy as np
import scipy.sparse as sp
import torch

import l0
from l0.calibration import SparseCalibrationWeights
from l0.sparse import SparseL0Linear

try:
    from importlib.metadata import version as _pkg_version

    L0_VERSION = _pkg_version("l0-python")
except Exception:  # pragma: no cover
    L0_VERSION = getattr(l0, "__version__", "unknown")

F32 = np.float32
OUT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden.json")

torch.set_default_dtype(torch.float32)


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------
def fl(x):
    """Tensor / array / scalar -> list of Python floats (exact float32 values)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=F32).reshape(-1)
    return [float(v) for v in a]


def f1(x):
    if isinstance(x, torch.Tensor):
        return float(x.detach().cpu().reshape(-1)[0].item())
    return float(F32(x))


class NoiseInjector(contextlib.AbstractContextManager):
    """Replace torch.rand_like so call k returns u[k] (float32)."""

    def __init__(self, u):
        self.u = [np.asarray(r, dtype=F32) for r in u]
        self.calls = 0

    def _rand_like(self, t, *args, **kwargs):
        if self.calls >= len(self.u):
            raise RuntimeError("rand_like called more often than injected rows")
        row = self.u[self.calls]
        self.calls += 1
        if tuple(t.shape) != row.shape:
            raise RuntimeError(f"shape mismatch {tuple(t.shape)} vs {row.shape}")
        return torch.tensor(row, dtype=t.dtype, device=t.device)

    def __enter__(self):
        self._orig = torch.rand_like
        torch.rand_like = self._rand_like
        return self

    def __exit__(self, *exc):
        torch.rand_like = self._orig
        return False


class CaptureAdam(contextlib.AbstractContextManager):
    """Replace torch.optim.Adam by a subclass that records instances, the
    parameter values at construction and the gradients seen at each step."""

    def __init__(self):
        self.instances = []

    def __enter__(self):
        self._orig = torch.optim.Adam
        outer = self
        orig = self._orig

        class RecordingAdam(orig):
            def __init__(self, params, *a, **k):
                params = list(params)
                super().__init__(params, *a, **k)
                self.init_params = [p.detach().clone() for p in params]
                self.step_grads = []
                outer.instances.append(self)

            def step(self, closure=None):
                self.step_grads.append(
                    [
                        None if p.grad is None else p.grad.detach().clone()
                        for g in self.param_groups
                        for p in g["params"]
                    ]
                )
                return super().step(closure)

        torch.optim.Adam = RecordingAdam
        return self

    def __exit__(self, *exc):
        torch.optim.Adam = self._orig
        return False


class CaptureBackward(contextlib.AbstractContextManager):
    """Record the value of every tensor on which .backward() is called."""

    def __init__(self):
        self.values = []

    def __enter__(self):
        self._orig = torch.Tensor.backward
        outer = self
        orig = self._orig

        def backward(t, *a, **k):
            outer.values.append(float(t.detach().item()))
            return orig(t, *a, **k)

        torch.Tensor.backward = backward
        return self

    def __exit__(self, *exc):
        torch.Tensor.backward = self._orig
        return False


def random_csr(rs, rows, cols, density, lo, hi):
    dense = rs.uniform(lo, hi, size=(rows, cols)).astype(F32)
    mask = rs.uniform(size=(rows, cols)) < density
    dense = np.where(mask, dense, F32(0)).astype(F32)
    m = sp.csr_matrix(dense, dtype=F32)
    m.sort_indices()
    return m


def make_u(rs, epochs, n, edges=False):
    u = rs.uniform(0.0, 1.0, size=(epochs, n)).astype(F32)
    u = np.clip(u, F32(1e-4), F32(1 - 1e-4)).astype(F32)
    # a few clamp-exercising values in every case
    u[0, 0] = F32(1e-8)
    u[0, 1] = np.nextafter(F32(1), F32(0))  # 1 - 2^-24; float32(1-1e-9) == 1.0
    if epochs > 1:
        u[1, 2] = F32(3e-7)
        u[1, 3] = F32(1 - 3e-7)
    if edges:
        for e in range(epochs):
            u[e, (e * 3) % n] = F32(1e-8)
            u[e, (e * 3 + 1) % n] = np.nextafter(F32(1), F32(0))
            u[e, (e * 3 + 2) % n] = F32(1e-6)
            u[e, (e * 3 + 4) % n] = F32(1 - 1e-6)
            u[e, (e * 3 + 5) % n] = F32(0.5)
    assert np.all(u > 0) and np.all(u < 1)
    return u


def csr_fields(m):
    return {
        "indptr": [int(v) for v in m.indptr],
        "indices": [int(v) for v in m.indices],
        "data": fl(m.data),
    }


# ----------------------------------------------------------------------------
# calibration
# ----------------------------------------------------------------------------
def group_weights_like_fit(y_t, groups, normalize_groups, group_multipliers):
    """Verbatim copy of SparseCalibrationWeights.fit's group-weight block."""
    if groups is not None:
        target_groups = torch.tensor(groups, dtype=torch.long)
        unique_groups = torch.unique(target_groups)
        if normalize_groups:
            gw = torch.zeros_like(y_t)
            for gid in unique_groups:
                mask = target_groups == gid
                gw[mask] = 1.0 / mask.sum().item()
        else:
            gw = torch.ones_like(y_t)
        if group_multipliers is not None:
            for gid, mult in group_multipliers.items():
                mask = target_groups == gid
                gw[mask] *= mult
    else:
        gw = torch.ones_like(y_t)
    return gw


def new_calib_model(c):
    m = SparseCalibrationWeights(
        c["cols"],
        beta=c["beta"],
        gamma=c["gamma"],
        zeta=c["zeta"],
        log_weight_jitter_sd=0.0,
        log_alpha_jitter_sd=0.0,
        device="cpu",
        use_gates=c["use_gates"],
    )
    with torch.no_grad():
        m.log_weight.data[:] = torch.tensor(c["_lw0"], dtype=torch.float32)
        m.log_alpha.data[:] = torch.tensor(c["_la0"], dtype=torch.float32)
    return m


def run_calibration_case(c):
    M, y, u = c["_M"], c["_y"], c["_u"]
    K = c["epochs"]
    gm = c["_gm"]

    # ---------------- first: manual forward/backward at initial params
    model = new_calib_model(c)
    y_t = torch.tensor(y, dtype=torch.float32)
    gw = group_weights_like_fit(y_t, c["_groups"], c["normalize_groups"], gm)
    rec = {}
    orig_sample = model._sample_gates

    def sample_and_record():
        g = orig_sample()
        rec["gates"] = g.detach().clone()
        return g

    model._sample_gates = sample_and_record
    with NoiseInjector(u[:1]) as inj:
        # same expression as get_weights (recorded separately for the JSON)
        weights = model.get_weights(deterministic=False)
        M_t = model._convert_sparse_to_torch(M)
        y_pred = torch.sparse.mm(M_t, weights.unsqueeze(1)).squeeze(1)
        # cross-check with the model's own forward (same u again)
        inj.u = [u[0]]
        inj.calls = 0
        y_pred_fwd = model.forward(M, deterministic=False)
    assert torch.equal(y_pred.detach(), y_pred_fwd.detach())
    if c["loss"] == "relative":
        rel = (y_t - y_pred) / (y_t + 1)
        data_loss = (rel.pow(2) * gw).sum()
    else:
        data_loss = ((y_t - y_pred).pow(2) * gw).sum()
    l0_pen = model.get_l0_penalty()
    l2_pen = model.get_l2_penalty()
    loss = data_loss + c["lambda_l0"] * l0_pen
    if c["lambda_l2"] > 0:
        loss = loss + c["lambda_l2"] * l2_pen
    model.zero_grad()
    loss.backward()
    gates0 = rec["gates"] if c["use_gates"] else torch.ones(c["cols"])
    first = {
        "gates": fl(gates0),
        "weights": fl(weights),
        "yhat": fl(y_pred),
        "data_loss": f1(data_loss),
        "l0_penalty": f1(l0_pen),
        "l2_penalty": f1(l2_pen),
        "total_loss": f1(loss),
        "grad_log_weight": fl(model.log_weight.grad),
        "grad_log_alpha": fl(model.log_alpha.grad),
    }

    # ---------------- after: the real fit()
    model = new_calib_model(c)
    with NoiseInjector(u) as inj, CaptureAdam() as cap, CaptureBackward() as bw:
        model.fit(
            M,
            y,
            lambda_l0=c["lambda_l0"],
            lambda_l2=c["lambda_l2"],
            lr=c["lr"],
            epochs=K,
            loss_type=c["loss"],
            verbose=False,
            target_groups=None if c["_groups"] is None else np.asarray(c["_groups"]),
            normalize_groups=c["normalize_groups"],
            group_multipliers=gm,
        )
    assert inj.calls == (K if c["use_gates"] else 0), inj.calls
    assert len(cap.instances) == 1
    opt = cap.instances[0]
    assert len(bw.values) == K
    # fit's epoch-0 loss and gradients must equal the manual "first" bitwise
    assert bw.values[0] == first["total_loss"], (bw.values[0], first["total_loss"])
    g0 = opt.step_grads[0]
    assert fl(g0[0]) == first["grad_log_weight"], c["name"]
    assert fl(g0[1]) == first["grad_log_alpha"], c["name"]
    st_w = opt.state[model.log_weight]
    st_a = opt.state[model.log_alpha]
    assert float(st_w["step"].item()) == K
    with torch.no_grad():
        det_g = model.get_deterministic_gates()
        det_w = model.get_weights(deterministic=True)
    pred = model.predict(M)
    after = {
        "log_weight": fl(model.log_weight),
        "log_alpha": fl(model.log_alpha),
        "exp_avg_log_weight": fl(st_w["exp_avg"]),
        "exp_avg_sq_log_weight": fl(st_w["exp_avg_sq"]),
        "exp_avg_log_alpha": fl(st_a["exp_avg"]),
        "exp_avg_sq_log_alpha": fl(st_a["exp_avg_sq"]),
        "total_loss_per_epoch": [float(v) for v in bw.values],
        "deterministic_gates": fl(det_g),
        "deterministic_weights": fl(det_w),
        "predict": fl(pred),
        "sparsity": float(model.get_sparsity()),
        "active_count": int(model.get_active_weights()["count"]),
    }

    out = {
        "name": c["name"],
        "rows": c["rows"],
        "cols": c["cols"],
        **csr_fields(M),
        "y": fl(y),
        "groups": None if c["_groups"] is None else [int(g) for g in c["_groups"]],
        "normalize_groups": bool(c["normalize_groups"]),
        "group_multipliers": None
        if gm is None
        else [[int(k), float(v)] for k, v in gm.items()],
        "loss": c["loss"],
        "beta": float(c["beta"]),
        "gamma": float(c["gamma"]),
        "zeta": float(c["zeta"]),
        "lambda_l0": float(c["lambda_l0"]),
        "lambda_l2": float(c["lambda_l2"]),
        "lr": float(c["lr"]),
        "use_gates": bool(c["use_gates"]),
        "log_weight0": fl(c["_lw0"]),
        "log_alpha0": fl(c["_la0"]),
        "u": [fl(r) for r in u],
        "epochs": K,
        "first": first,
        "after": after,
    }
    return out


def calibration_cases():
    cases = []

    def base(name, seed, rows=10, cols=30, epochs=5, density=0.3, **kw):
        rs = np.random.RandomState(seed)
        M = random_csr(rs, rows, cols, density, 0.0, 5.0)
        y = rs.uniform(10.0, 100.0, size=rows).astype(F32)
        lw0 = np.log(rs.uniform(0.5, 2.0, size=cols)).astype(F32)
        la0 = rs.uniform(-3.0, 3.0, size=cols).astype(F32)
        u = make_u(rs, epochs, cols, edges=kw.pop("edges", False))
        c = {
            "name": name,
            "rows": rows,
            "cols": cols,
            "epochs": epochs,
            "_M": M,
            "_y": y,
            "_lw0": lw0,
            "_la0": la0,
            "_u": u,
            "_groups": None,
            "normalize_groups": True,
            "_gm": None,
            "loss": "mse",
            "beta": 2 / 3,
            "gamma": -0.1,
            "zeta": 1.1,
            "lambda_l0": 0.01,
            "lambda_l2": 0.0,
            "lr": 0.01,
            "use_gates": True,
        }
        c.update(kw)
        return c, rs

    # (1) mse, no groups, lambda_l2 = 0
    c, _ = base("mse_basic", 101, rows=10, cols=30, epochs=5)
    cases.append(c)

    # (2) relative loss with lambda_l2 > 0
    c, _ = base("relative_l2", 202, rows=8, cols=24, epochs=6, loss="relative",
                lambda_l0=0.05, lambda_l2=1e-3)
    cases.append(c)

    # (3) relative with groups, normalize_groups=True and multipliers
    c, _ = base("relative_groups_normalized_multipliers", 303, rows=12, cols=32,
                epochs=6, loss="relative", lambda_l0=0.02)
    c["_groups"] = [0, 0, 0, 1, 1, 2, 2, 2, 2, 5, 3, 3]
    c["normalize_groups"] = True
    c["_gm"] = {0: 2.0, 2: 0.5, 5: 3.0}
    cases.append(c)

    # (4) groups with normalize_groups=False (one multiplier on top of ones)
    c, _ = base("mse_groups_unnormalized", 404, rows=9, cols=20, epochs=4,
                lambda_l0=0.1)
    c["_groups"] = [2, 0, 2, 1, 1, 0, 2, 7, 7]
    c["normalize_groups"] = False
    c["_gm"] = {7: 0.25}
    cases.append(c)

    # (5) use_gates = False
    c, _ = base("no_gates", 505, rows=7, cols=16, epochs=5, use_gates=False,
                lambda_l0=0.01, lambda_l2=1e-2, lr=0.02)
    cases.append(c)

    # (6) clamp edges
    c, _ = base("clamp_edges", 606, rows=10, cols=24, epochs=6, edges=True,
                loss="relative", lambda_l0=0.01)
    la0 = c["_la0"].copy()
    specials = [25.0, -30.0, 20.0, -20.0, 12.0, -12.0, 40.0, -40.0, 19.99999,
                -19.99999, 8.0, -8.0]
    la0[: len(specials)] = np.asarray(specials, dtype=F32)
    c["_la0"] = la0.astype(F32)
    cases.append(c)

    # (7) non-default beta/gamma/zeta, larger lr
    c, _ = base("custom_hard_concrete", 707, rows=11, cols=28, epochs=8,
                beta=0.5, gamma=-0.2, zeta=1.3, lr=0.1, loss="relative",
                lambda_l0=0.02, lambda_l2=1e-4)
    cases.append(c)
    return cases


# ----------------------------------------------------------------------------
# regression
# ----------------------------------------------------------------------------
def new_reg_model(c):
    m = SparseL0Linear(
        c["cols"],
        fit_intercept=c["fit_intercept"],
        beta=c["beta"],
        gamma=c["gamma"],
        zeta=c["zeta"],
        device="cpu",
    )
    return m


def set_reg_params(m, w0, la0, b0):
    with torch.no_grad():
        m.weight.data[:] = torch.as_tensor(np.asarray(w0, dtype=F32))
        m.log_alpha.data[:] = torch.as_tensor(np.asarray(la0, dtype=F32))
        if m.bias is not None:
            m.bias.data.fill_(float(b0))


def reg_loop(model, X, y, lambda_reg, lr, epochs, u):
    """Replicates SparseL0Linear.fit's loop body (minus the weight/bias init)."""
    y = torch.tensor(y, dtype=torch.float32)
    X_torch = model._convert_sparse_to_torch(X)
    params = [model.weight, model.log_alpha]
    if model.fit_intercept and model.bias is not None:
        params.append(model.bias)
    optimizer = torch.optim.Adam(params, lr=lr)
    losses = []
    with NoiseInjector(u) as inj:
        for _epoch in range(epochs):
            y_pred = model.forward(X_torch, deterministic=False)
            mse_loss = (y - y_pred).pow(2).mean()
            l0_loss = model.get_l0_penalty()
            loss = mse_loss + lambda_reg * l0_loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.item()))
    assert inj.calls == epochs
    return optimizer, losses


def verify_reg_loop_against_fit(c):
    """Run the real fit (seeded) and our loop from fit's own init; compare."""
    X, y, u = c["_X"], c["_y"], c["_u"]
    torch.manual_seed(12345)
    ref = new_reg_model(c)
    with torch.no_grad():
        ref.log_alpha.data[:] = torch.as_tensor(c["_la0"])
    with NoiseInjector(u) as inj, CaptureAdam() as cap, CaptureBackward() as bw:
        ref.fit(X, y, lambda_reg=c["lambda_l0"], lr=c["lr"], epochs=c["epochs"])
    assert inj.calls == c["epochs"]
    init = cap.instances[0].init_params  # [weight, log_alpha, (bias)]
    mine = new_reg_model(c)
    set_reg_params(
        mine,
        init[0].numpy(),
        init[1].numpy(),
        init[2].item() if len(init) > 2 else None,
    )
    _, losses = reg_loop(mine, X, y, c["lambda_l0"], c["lr"], c["epochs"], u)
    same = (
        torch.equal(ref.weight.detach(), mine.weight.detach())
        and torch.equal(ref.log_alpha.detach(), mine.log_alpha.detach())
        and (ref.bias is None or torch.equal(ref.bias.detach(), mine.bias.detach()))
        and losses == bw.values
    )
    return same


def run_regression_case(c):
    X, y, u = c["_X"], c["_y"], c["_u"]
    K = c["epochs"]
    w0, la0, b0 = c["_w0"], c["_la0"], c["_b0"]

    # ---------------- first
    model = new_reg_model(c)
    set_reg_params(model, w0, la0, b0)
    rec = {}
    orig_sample = model._sample_gates

    def sample_and_record():
        g = orig_sample()
        rec["gates"] = g.detach().clone()
        return g

    model._sample_gates = sample_and_record
    y_t = torch.tensor(y, dtype=torch.float32)
    X_torch = model._convert_sparse_to_torch(X)
    with NoiseInjector(u[:1]):
        y_pred = model.forward(X_torch, deterministic=False)
    mse = (y_t - y_pred).pow(2).mean()
    l0_pen = model.get_l0_penalty()
    loss = mse + c["lambda_l0"] * l0_pen
    model.zero_grad()
    loss.backward()
    first = {
        "gates": fl(rec["gates"]),
        "yhat": fl(y_pred),
        "mse": f1(mse),
        "l0_penalty": f1(l0_pen),
        "total_loss": f1(loss),
        "grad_weight": fl(model.weight.grad),
        "grad_log_alpha": fl(model.log_alpha.grad),
        "grad_bias": None if model.bias is None else f1(model.bias.grad),
    }

    # ---------------- after
    model = new_reg_model(c)
    set_reg_params(model, w0, la0, b0)
    opt, losses = reg_loop(model, X, y, c["lambda_l0"], c["lr"], K, u)
    assert losses[0] == first["total_loss"]
    with torch.no_grad():
        det_g = model.get_deterministic_gates()
    pred = model.predict(X)
    after = {
        "weight": fl(model.weight),
        "log_alpha": fl(model.log_alpha),
        "bias": None if model.bias is None else f1(model.bias),
        "total_loss_per_epoch": losses,
        "deterministic_gates": fl(det_g),
        "predict": fl(pred),
        "sparsity": float(model.get_sparsity()),
    }
    return {
        "name": c["name"],
        "rows": c["rows"],
        "cols": c["cols"],
        **csr_fields(X),
        "y": fl(y),
        "fit_intercept": bool(c["fit_intercept"]),
        "beta": float(c["beta"]),
        "gamma": float(c["gamma"]),
        "zeta": float(c["zeta"]),
        "lambda_l0": float(c["lambda_l0"]),
        "lr": float(c["lr"]),
        "weight0": fl(w0),
        "log_alpha0": fl(la0),
        "bias0": None if b0 is None else float(b0),
        "u": [fl(r) for r in u],
        "epochs": K,
        "first": first,
        "after": after,
    }


def regression_cases():
    cases = []

    def base(name, seed, rows, cols, epochs, fit_intercept, **kw):
        rs = np.random.RandomState(seed)
        X = random_csr(rs, rows, cols, 0.3, -2.0, 2.0)
        w_true = np.zeros(cols, dtype=F32)
        w_true[: cols // 4] = rs.uniform(1.0, 3.0, size=cols // 4).astype(F32)
        y = (X @ w_true + rs.normal(0, 0.1, size=rows) + (5.0 if fit_intercept else 0.0))
        y = y.astype(F32)
        w0 = rs.normal(0.0, 0.1, size=cols).astype(F32)
        la0 = (np.log(0.5 / 0.5) + 0.01 * rs.normal(size=cols)).astype(F32)
        la0[0] = F32(20.0)
        la0[1] = F32(-25.0)
        # bias0 = y.mean() exactly as fit computes it (float32 torch mean)
        b0 = float(torch.tensor(y).mean().item()) if fit_intercept else None
        u = make_u(rs, epochs, cols)
        c = {
            "name": name, "rows": rows, "cols": cols, "epochs": epochs,
            "fit_intercept": fit_intercept, "_X": X, "_y": y, "_w0": w0,
            "_la0": la0, "_b0": b0, "_u": u, "beta": 2 / 3, "gamma": -0.1,
            "zeta": 1.1, "lambda_l0": 0.05, "lr": 0.01,
        }
        c.update(kw)
        return c

    cases.append(base("reg_intercept", 1001, 12, 20, 6, True, lambda_l0=0.05))
    cases.append(base("reg_no_intercept_beta", 2002, 10, 16, 5, False,
                      beta=0.5, lambda_l0=0.02, lr=0.05))
    return cases


# ----------------------------------------------------------------------------
def main():
    torch.manual_seed(0)
    out = {
        "meta": {
            "l0_python": L0_VERSION,
            "torch": torch.__version__,
            "generated_by": "tests/reference/make_golden.py",
        },
        "calibration": [],
        "regression": [],
    }
    for c in calibration_cases():
        out["calibration"].append(run_calibration_case(c))
        print("calibration:", c["name"], file=sys.stderr)
    for c in regression_cases():
        ok = verify_reg_loop_against_fit(c)
        print("regression:", c["name"], "loop==fit bitwise:", ok, file=sys.stderr)
        if not ok:
            raise SystemExit("regression loop does not reproduce SparseL0Linear.fit")
        out["regression"].append(run_regression_case(c))
    with open(OUT_PATH, "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")
    print("wrote", OUT_PATH, os.path.getsize(OUT_PATH), "bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
