"""bhogad: the daemon that owns quota state for every harness on this machine."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bhoga")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"
