"""Group commit of a dataset's ``_manifest.json`` while an ingest runs.

The manifest is one JSON document, replaced whole at each commit. Rewriting it after every
video costs O(n) for the n videos it holds, so an ingest of N videos would write O(N^2) bytes
and the driver, the manifest's only writer, would fall behind its decode actors as the dataset
grows. :class:`ManifestCommits` rewrites it once the videos recorded since the last write
reach ``growth`` times the videos it held then (and at least one): every video while it holds
fewer than ``1 / growth``, then at sizes growing geometrically, so the bytes written over the
whole ingest stay O(N / growth).

What a kill can lose: the videos recorded since the last write, about ``growth`` of those
finished. Their shards are then orphans, which a resumed ingest deletes and decodes again
(:func:`pipeline.shards.clean_uncommitted`), so each frame is still in the dataset exactly once.
:meth:`ManifestCommits.flush` writes whatever is pending; the ingest calls it at its end and on
the way out of an error or a Ctrl-C.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline import storage
from pipeline.shards import MANIFEST, SHARD_NAME, ShardInfo, commit_video, write_manifest

GROWTH = 0.01  # rewrite the manifest once the pending videos reach 1 % of those it holds


class ManifestCommits:
    """The manifest of the dataset folder ``root`` (a path or URI), committed in groups.

    ``manifest`` is the dict read from the folder (or a new one), updated in place. Shards
    that a re-ingested video no longer has are deleted only after a write that no longer
    lists them, so the manifest on disk never names a missing file.
    """

    def __init__(self, root: str | Path, manifest: dict[str, Any], growth: float | None = None):
        self.root, self.manifest = str(root), manifest
        self.growth = GROWTH if growth is None else growth
        self._by_source = {v["source"]: v for v in manifest["videos"]}
        self._held = len(manifest["videos"])  # videos in the manifest as last written or read
        self._pending = 0
        self._stale: set[str] = set()

    def add(self, record: dict[str, Any], shards: list[ShardInfo]) -> None:
        """Record one video's outcome and shards (replacing an older record of its source);
        writes the manifest when the group is full."""
        old = self._by_source.get(record["source"])
        if old is not None:
            self._stale |= set(old.get("shards", [])) - {s.path for s in shards}
        commit_video(self.manifest, record, shards, replaces=old is not None)
        self._by_source[record["source"]] = self.manifest["videos"][-1]
        self._pending += 1
        if self._pending >= max(1.0, self.growth * self._held):
            self.flush()

    def flush(self) -> None:
        """Write the manifest if anything is pending (or the folder has none yet), then delete
        the shards it no longer lists: only names of catneuron's shards (a record edited to
        list another file of the folder, a user's or the manifest, never deletes it)."""
        if self._pending or not storage.exists(storage.join(self.root, MANIFEST)):
            write_manifest(self.root, self.manifest)
        self._held, self._pending = len(self.manifest["videos"]), 0
        if not self._stale:
            return
        listed = {s["path"] for s in self.manifest["shards"]}
        for stale in sorted(self._stale - listed):
            if SHARD_NAME.fullmatch(stale):
                storage.delete(storage.join(self.root, stale))
        self._stale.clear()
