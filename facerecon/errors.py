"""Errors a user can cause. Each carries a one-line message meant for people, not a traceback.

The CLI prints ``str(err)`` for any :class:`FaceReconError` and never a traceback; anything
else escaping is a bug in facerecon.
"""


class FaceReconError(Exception):
    """Base of every expected, user-facing failure."""


class ConfigError(FaceReconError):
    """params.yaml / --set / CLI argument is wrong; the message names the key."""


class InputImageError(FaceReconError):
    """An input file is not a usable image (names the file and the reason)."""


class NoFaceError(FaceReconError):
    """No face was found in an otherwise valid image."""


class MissingWeightsError(FaceReconError):
    """A checkpoint a selected backend needs is not present (names file, places tried, where to get it)."""


class CheckpointError(FaceReconError):
    """A checkpoint exists but is malformed or of the wrong layout."""


class StorageError(FaceReconError):
    """Reading from SRC or writing to DST failed (permission, disk full, bucket missing...)."""


class DatasetError(FaceReconError):
    """A dataset folder / BFM file is unusable for the benchmark."""


class DestinationError(StorageError):
    """DST cannot take any more output (disk full, quota, permission denied, read-only): the batch stops.

    Unlike a per-photo failure this is the same for every face, so it ends the batch with one
    message instead of one failed row per remaining photo; results already written stay as they are.
    """
