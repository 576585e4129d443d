"""What a prefork worker does once before forking its pool: the lazily imported modules are
imported and every email template is compiled."""

from __future__ import annotations

import sys

from renewals.notifications.rendering import SUBJECTS, _environment
from renewals.worker.preload import LAZY_MODULES, preload


def test_preload_imports_the_lazy_modules_and_compiles_every_template() -> None:
    preload()
    assert all(name in sys.modules for name in LAZY_MODULES)
    cache = _environment().cache
    assert cache is not None
    compiled = {key[1] for key in cache}
    assert compiled >= {f"{kind}.{suffix}" for kind in SUBJECTS for suffix in ("txt", "html")}
