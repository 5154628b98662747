"""The operator's version, read from the installed distribution so it is never duplicated."""

from importlib import metadata

try:
    __version__ = metadata.version("dynatrace-apitoken-operator")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
