"""Independent tasks run in turn, on dask's local schedulers or on a ``distributed`` client.

Shared by `~stdpipe_ccd.mask_collection`, tiled coadds, the demo and the command line.
"""

from contextlib import nullcontext

__all__ = ["SCHEDULERS", "run_tasks"]

#: the dask schedulers tasks may run on (besides a ``distributed`` client)
SCHEDULERS = ("threads", "processes", "synchronous")


def run_tasks(function, arguments, *, scheduler, client, jobs, progress):
    """Run ``function(*args)`` for each of ``arguments`` on dask; return the results."""
    if client is not None:
        from distributed import progress as distributed_progress

        futures = [client.submit(function, *args, pure=False) for args in arguments]
        if progress:
            distributed_progress(futures)
        return client.gather(futures)
    if scheduler == "synchronous":
        return [function(*args) for args in arguments]
    try:
        import dask
        from dask.diagnostics import ProgressBar
    except ImportError as err:
        msg = (
            f"scheduler={scheduler!r} needs dask: pip install 'stdpipe_ccd[dask]', "
            "or use scheduler='synchronous'"
        )
        raise ImportError(msg) from err
    tasks = [dask.delayed(function, pure=False)(*args) for args in arguments]
    with ProgressBar() if progress else nullcontext():
        return list(dask.compute(*tasks, scheduler=scheduler, num_workers=jobs))
