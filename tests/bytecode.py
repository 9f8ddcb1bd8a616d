"""A pytest plugin (``-p bytecode`` in pyproject.toml): compiled modules are cached again.

Some machines set ``PYTHONDONTWRITEBYTECODE=1`` for every process. Under it no
``__pycache__`` is ever written, so every xdist worker rewrites the asserts of
every test module from source, and every ``sop`` child process the tests start
(hundreds of them) compiles SOP's modules from source again. This plugin lifts
the setting for the test run and its children: the first run writes the caches
(ignored by git), later imports read them. What the tests check is unchanged;
only where the interpreter finds compiled code.
"""

from __future__ import annotations

import os
import sys

if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:  # inherited by the children
    sys.dont_write_bytecode = False
