"""Which optional extra (pyproject `[project.optional-dependencies]`) a command needs, checked before the
command does anything, so a library install without extras says what to install in one line."""

from __future__ import annotations

import importlib.util

from perflab.errors import PerflabError

# Each extra and the modules of it that perflab imports. Commands name an extra, never a module.
EXTRAS: dict[str, tuple[str, ...]] = {
    "lab": (
        "papermill",
        "nbconvert",
        "nbformat",
        "ipykernel",
        "matplotlib",
        "pandas",
        "scipy",
        "locust",
        "pyvips",
        "skimage",
        "sklearn",
        "jupyterlab",
        "ipywidgets",
    ),
    "ml": ("torch",),
}


class MissingExtra(PerflabError):
    """A command needs an optional extra that is not installed."""

    def __init__(self, command: str, extra: str, module: str) -> None:
        self.command = command
        self.extra = extra
        self.module = module
        super().__init__(
            f"{command} needs the {extra} extra ({module} is not installed): pip install 'perflab[{extra}]'"
        )


def installed(module: str) -> bool:
    """True when `module` can be imported; it is not imported (a finder that refuses it counts as absent)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(command: str, extra: str, modules: tuple[str, ...] | None = None) -> None:
    """Raise MissingExtra unless every module of `extra` (or just `modules` of it) is importable."""
    for module in modules if modules is not None else EXTRAS[extra]:
        if not installed(module):
            raise MissingExtra(command, extra, module)
