"""The SWarp binary: finding it, asking it what it knows, and running it safely."""

import codecs
import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from ._conf import conf
from .exceptions import SwarpError, SwarpNotFoundError

__all__ = ["StageLine", "find_swarp", "run_swarp", "swarp_info", "tail"]

SWARP_NAMES = ("swarp", "SWarp")
#: seconds between two reports of a run's progress
PROGRESS_INTERVAL = 0.25
#: SWarp's stage lines: "> Resampling f0.fits ...", between terminal escape sequences
STAGE = re.compile(r"> ([^\x1b\r\n]*)")


def find_swarp(path=None):
    """Find the SWarp binary.

    Parameters
    ----------
    path : str or path-like, optional
        An explicit binary. Without it, ``stdpipe_ccd.conf.swarp_path`` is
        used, then the ``PATH`` is searched for ``swarp`` (conda-forge, source
        builds) and ``SWarp`` (Debian and Ubuntu).

    Returns
    -------
    path : `pathlib.Path`

    Raises
    ------
    stdpipe_ccd.SwarpNotFoundError
        No executable SWarp was found, or the one named is not executable.
    """
    for explicit, origin in ((path, "path"), (conf.swarp_path or None, "conf.swarp_path")):
        if explicit is None:
            continue
        found = shutil.which(str(explicit))
        if found is None:
            msg = f"{origin}={str(explicit)!r} is not an executable SWarp binary"
            raise SwarpNotFoundError(msg)
        return Path(found)
    for name in SWARP_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    msg = (
        "SWarp was not found on the PATH as 'swarp' or 'SWarp'. Install it with "
        "'apt-get install swarp' (Debian, Ubuntu) or 'conda install -c conda-forge "
        "astromatic-swarp', or set stdpipe_ccd.conf.swarp_path."
    )
    raise SwarpNotFoundError(msg)


@functools.lru_cache(maxsize=8)
def swarp_info(executable):
    """Version string and the set of valid parameter names of a SWarp binary."""
    version_text = run_swarp([executable, "-v"], cwd=None, timeout=60)
    match = re.search(r"version\s+(\S+)", version_text)
    defaults = run_swarp([executable, "-dd"], cwd=None, timeout=60)
    names = {
        line.split()[0]
        for line in defaults.splitlines()
        if line.strip() and not line.startswith("#") and line.split()[0].isupper()
    }
    return (match.group(1) if match else "unknown"), frozenset(names)


def run_swarp(command, *, cwd, timeout, progress=None):
    """Run a command; return what it printed, or raise `SwarpError`.

    ``progress``, if given, is called about four times a second with the
    seconds elapsed, the stage SWarp last reported (its ``> ...`` lines) and
    False; at the end, with True and ``"done"`` or how it was stopped.
    """
    command = [str(part) for part in command]
    try:
        # its own process group: a kill reaches whatever it started, which would
        # otherwise hold its pipes open until it ends
        process = subprocess.Popen(
            command,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=os.name == "posix",
        )
    except OSError as err:
        msg = f"SWarp could not be started: {err}"
        raise SwarpError(msg, command=command) from err
    with process:
        try:
            if progress is None:
                stdout, stderr = process.communicate(timeout=timeout)
            else:
                stdout, stderr = follow(process, timeout, progress)
        except subprocess.TimeoutExpired as err:
            kill(process)
            # follow() has read the pipes itself; communicate() would race its readers
            stderr = err.stderr if progress is not None else process.communicate()[1]
            msg = f"SWarp did not finish within {timeout} s"
            raise SwarpError(msg, command=command, output_tail=tail(stderr)) from err
        except BaseException:
            # Ctrl-C or a signal: no SWarp left running, nor a zombie
            kill(process)
            process.wait()
            raise
    output = (stdout or "") + (stderr or "")
    if process.returncode != 0 or "*Error*" in output:
        errors = [line for line in output.splitlines() if "Error" in line]
        reason = errors[-1].strip() if errors else f"exit code {process.returncode}"
        msg = f"SWarp failed ({reason})"
        raise SwarpError(
            msg, command=command, returncode=process.returncode, output_tail=tail(output)
        )
    return output


def kill(process):
    """Kill ``process`` and everything it started (its process group on POSIX)."""
    if process.returncode is not None:  # reaped: its group id may be another's now
        return
    if os.name != "posix":
        process.kill()
        return
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, signal.SIGKILL)


def follow(process, timeout, progress):
    """Wait for ``process`` as `subprocess.Popen.communicate` does, reporting its stages."""
    chunks = {"stdout": [], "stderr": []}

    def drain(name):
        # read what is there as it comes (a text pipe's read(n) waits for n characters)
        fd, decoder = getattr(process, name).fileno(), codecs.getincrementaldecoder("utf-8")()
        for data in iter(lambda: os.read(fd, 4096), b""):
            chunks[name].append(decoder.decode(data))

    readers = [threading.Thread(target=drain, args=(name,), daemon=True) for name in chunks]
    for reader in readers:
        reader.start()
    start = time.monotonic()
    while True:
        try:
            process.wait(timeout=PROGRESS_INTERVAL)
            break
        except subprocess.TimeoutExpired:
            elapsed = time.monotonic() - start
            if timeout is not None and elapsed > timeout:
                kill(process)
                for reader in readers:
                    reader.join(timeout=1)  # a helper in a session of its own may hold the pipes
                progress(elapsed, f"killed after {timeout} s", True)
                stderr = "".join(chunks["stderr"])
                raise subprocess.TimeoutExpired(process.args, timeout, stderr=stderr) from None
            progress(elapsed, last_stage("".join(chunks["stderr"][-64:])) or "starting", False)
    for reader in readers:
        reader.join()
    progress(time.monotonic() - start, "done", True)
    return "".join(chunks["stdout"]), "".join(chunks["stderr"])


def last_stage(text):
    """Return the last non-empty ``> ...`` line SWarp printed in ``text``, or None."""
    stages = [stage.strip() for stage in STAGE.findall(text)]
    stages = [stage for stage in stages if stage]
    return stages[-1] if stages else None


class StageLine:
    """Show SWarp's elapsed time and stage on one line of a terminal, rewritten in place.

    Parameters
    ----------
    stream : file-like
        Where to write (the command line's standard error).
    width : int, optional
        Longest line written. Default is 79.
    """

    def __init__(self, stream, width=79):
        self.stream, self.width = stream, width

    def __call__(self, elapsed, stage, last):
        line = f"SWarp {elapsed:7.1f} s  {stage}"[: self.width]
        # the line is rewritten until the last, which ends it
        self.stream.write(f"\r{line}\x1b[K" + ("\n" if last else ""))
        self.stream.flush()


def tail(text, lines=15):
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").splitlines()[-lines:])
