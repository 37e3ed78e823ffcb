"""The Ray executor of :func:`l0_rs.calibration.sweep`: each batch of at
most 8 λ values is one Ray task on the connected cluster (``ray.init()``
beforehand, or Ray's own start of a local one), the matrix is put in the
object store once and shared by every task, and a task whose worker dies
is retried by Ray (``max_retries``), resuming from its batch's last
checkpoint. Ray is an optional dependency: ``pip install 'l0-rs[ray]'``.
"""

#: How to install Ray for this package.
INSTALL = "pip install 'l0-rs[ray]'"


def require_ray():
    """The ``ray`` module, or ``ImportError`` saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise ImportError(
            f"sweep(executor='ray') needs Ray, which is not installed: {INSTALL}"
        ) from e
    return ray


def task_options(gpu, threads, ray_options):
    """The options of each batch's task: retried 3 times when its worker
    dies, ``threads`` CPUs (1 when not given) and one GPU when ``gpu``;
    ``ray_options`` (a dict for Ray's ``.options()``) overrides them."""
    options = {"max_retries": 3, "num_cpus": threads or 1, "num_gpus": 1 if gpu else 0}
    options.update(ray_options or {})
    return options


def run_batches(run_batch, M, jobs, options):
    """``run_batch(M, **job)`` for every job, each a Ray task with
    ``options``, ``M`` put in the object store once; returns the results in
    order. Ctrl-C cancels the tasks."""
    ray = require_ray()
    task = ray.remote(_task).options(**options)
    m_ref = ray.put(M)
    refs = [task.remote(run_batch, m_ref, job) for job in jobs]
    try:
        return ray.get(refs)
    except KeyboardInterrupt:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise


def _task(run_batch, M, job):
    """A Ray task's body (Ray hands over ``M`` from the object store)."""
    return run_batch(M, **job)
