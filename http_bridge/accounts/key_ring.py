"""The keys in force, re-read from the keys file when it changes (hot reload by mtime polling, no restart).

The first request after `interval_s` has passed stats the file (one `stat`, no read, when nothing changed); a
changed (mtime, size, inode) is read and parsed. So a key created, revoked or restricted in the file is in force for
every request that starts `interval_s` after the write (plus the read itself). A file that fails to parse keeps the
previous keys (logged once per change). Authentication that is on stays on: a file emptied while the bridge runs
refuses every key (restart the bridge with an empty file to turn authentication off); keys added to a file that
was empty at start-up turn it on.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

from http_bridge.accounts.keys import KeyFileError, KeyStore

logger = logging.getLogger(__name__)

Signature = tuple[int, int, int]  # mtime_ns, size, inode


def _signature(path: Path) -> Signature | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class KeyRing:
    """Owns the current KeyStore; `current()` is what a request authenticates against."""

    def __init__(self, plain_keys: list[str], key_file: Path | None, interval_s: float) -> None:
        self._plain_keys = list(plain_keys)
        self._file = key_file
        self._interval_s = interval_s
        self._seen = _signature(key_file) if key_file is not None else None
        self._store = KeyStore.build(plain_keys, key_file)  # a bad keys file fails here, at start
        self._checked = time.monotonic()

    @property
    def store(self) -> KeyStore:
        return self._store

    def current(self) -> KeyStore:
        if self._file is not None and time.monotonic() - self._checked >= self._interval_s:
            self._checked = time.monotonic()
            self._reload_if_changed(self._file)
        return self._store

    def _reload_if_changed(self, path: Path) -> None:
        signature = _signature(path)
        if signature == self._seen:
            return
        self._seen = signature
        try:
            store = KeyStore.build(self._plain_keys, path)
        except KeyFileError as exc:
            logger.error("keys file changed but cannot be used, keeping the previous keys: %s", exc)
            return
        if self._store.enabled and not store.enabled:
            logger.warning("keys file has no keys: every request is refused until keys are added")
            store = dataclasses.replace(store, required=True)
        self._store = store
        logger.info("keys file reloaded: %d keys", len(store.records))
