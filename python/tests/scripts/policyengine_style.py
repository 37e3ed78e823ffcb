"""A calibration written for l0-python the way PolicyEngine's pipelines
write it: chunked fits with progress every ``verbose_freq`` epochs,
``.cpu().numpy()`` on the weights, ``model.to(device)``/``eval()``/``train()``
and a state-dict round trip. The only line changed for l0_rs is the import."""

import io
import pickle

import numpy as np
import scipy.sparse as sp

from l0_rs.calibration import SparseCalibrationWeights  # was: from l0.calibration import ...

device = "cpu"
rng = np.random.default_rng(2024)
n_targets, n_households = 40, 2_000
X_sparse = sp.random(n_targets, n_households, density=0.2, format="csr", random_state=rng)
X_sparse.data *= 100
true_weights = rng.uniform(0.5, 3.0, n_households)
targets = X_sparse @ true_weights
target_groups = np.arange(n_targets) % 4
initial_weights = np.full(n_households, 1.5)

model = SparseCalibrationWeights(
    n_features=X_sparse.shape[1],
    beta=2 / 3,
    gamma=-0.1,
    zeta=1.1,
    init_keep_prob=0.999,
    init_weights=initial_weights,
    log_weight_jitter_sd=0.05,
    log_alpha_jitter_sd=0.01,
    device=device,
    seed=7,
)
model.to(device)

EPOCHS_PER_CHUNK = 100
TOTAL_EPOCHS = 400
history = []
for chunk_start in range(0, TOTAL_EPOCHS, EPOCHS_PER_CHUNK):
    model.train()
    model.fit(
        M=X_sparse,
        y=targets,
        target_groups=target_groups,
        lambda_l0=1e-4,
        lambda_l2=0.0,
        lr=0.1,
        epochs=EPOCHS_PER_CHUNK,
        loss_type="relative",
        verbose=True,
        verbose_freq=50,
    )
    model.eval()
    weights = model.get_weights(deterministic=True).cpu().numpy()
    estimates = X_sparse @ weights
    rel_err = np.abs(estimates - targets) / (np.abs(targets) + 1)
    history.append((chunk_start + EPOCHS_PER_CHUNK, int((weights > 0).sum()), float(rel_err.mean())))
    print(f"after {chunk_start + EPOCHS_PER_CHUNK} epochs: {history[-1][1]} active, mean rel err {history[-1][2]:.4%}")

final_weights = model.get_weights(deterministic=True).detach().cpu().numpy()
buffer = io.BytesIO()
pickle.dump(model.state_dict(), buffer)
restored = SparseCalibrationWeights(n_features=X_sparse.shape[1], init_weights=initial_weights, device=device)
restored.load_state_dict(pickle.loads(buffer.getvalue()))
restored_weights = restored.get_weights(deterministic=True).cpu().numpy()
