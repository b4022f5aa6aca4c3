"""Background threads run at a lower CPU priority, so ingest gets the core first."""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

BACKGROUND_NICE = 10


def lower_this_thread(role: str) -> None:
    """Lower the calling thread's CPU priority (Linux: a thread's own nice value), if allowed.
    Nice 10: about a tenth of the CPU when requests need it too, all of it when they do not."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
    except (AttributeError, OSError) as error:
        log.debug("cannot lower the %s thread's priority: %s", role, error)
