"""kpiguard: a regression tripwire and drift monitor that enforces through a database guarded apps obey."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kpiguard")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
