"""`python -m rlm_desktop` is the same as the `rlm-desktop` command; also the desktop bundle's entry point."""

import sys

from rlm_desktop.frozen import (
    ENGINE_WORKER_FLAG,
    SANDBOX_WORKER_FLAG,
    restore_library_path,
    run_sandbox_worker,
)


def _entry() -> int:
    # A bundle has no Python: the sandbox host starts the REPL worker as `rlm-desktop --sandbox-worker`.
    # Dispatched before anything else is imported, so the worker stays small and its audit hook sees
    # only its own imports.
    if sys.argv[1:2] == [SANDBOX_WORKER_FLAG]:
        del sys.argv[1]
        return run_sandbox_worker()
    if sys.argv[1:2] == [ENGINE_WORKER_FLAG]:  # the window's question threads run their engine in a child
        del sys.argv[1]
        restore_library_path()
        from rlm_desktop.engine.remote import _main_and_leave

        _main_and_leave()
    # Ingest extracts in spawned processes; in a bundle they are this executable again with
    # multiprocessing's arguments, which freeze_support() recognises (it returns at once otherwise).
    import multiprocessing

    multiprocessing.freeze_support()
    restore_library_path()
    from rlm_desktop.cli import main

    return main()


if __name__ == "__main__":
    sys.exit(_entry())
