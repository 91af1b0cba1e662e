"""The installed-package check of `make test-wheel` (not a pytest file): run by the Python of a
fresh virtual environment into which `pip install ./python` put swiftddpm, from outside the
checkout, with neither PYTHONPATH nor SWIFTDDPM_LIBRARY set. It checks that the package and
its libddpm come from that environment (the loader found the library next to __init__.py and
its version check passed at import), that every module of the source package was installed
and imports, trains ten steps and samples.
"""

from __future__ import annotations

import importlib
import os
import sys
import sysconfig
from pathlib import Path

for var in ("PYTHONPATH", "SWIFTDDPM_LIBRARY"):
    assert var not in os.environ, f"{var} is set: this check must see the installed package alone"

import numpy as np  # noqa: E402

import swiftddpm as sd  # noqa: E402

site_dirs = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}
package = Path(sd.__file__).resolve().parent
library = Path(sd.library_path()).resolve()
assert package.parent in site_dirs, f"swiftddpm imported from {package}, not from {site_dirs}"
assert library.parent == package, f"libddpm loaded from {library}, not from the package folder {package}"

# Every module of the source package is in the wheel (the backend ships swiftddpm/*.py) and imports.
source = Path(__file__).resolve().parents[1] / "swiftddpm"
missing = {p.name for p in source.glob("*.py")} - {p.name for p in package.glob("*.py")}
assert not missing, f"modules missing from the installed package: {sorted(missing)}"
OPTIONAL = {"swiftddpm.torch": "torch", "swiftddpm.distributed": "mpi4py"}  # modules that need an extra
for path in sorted(package.glob("*.py")):
    if path.stem == "__main__":  # runs the command line
        continue
    name = "swiftddpm" if path.stem == "__init__" else f"swiftddpm.{path.stem}"
    try:
        importlib.import_module(name)
    except ImportError as error:
        assert name in OPTIONAL and OPTIONAL[name] in str(error), f"{name}: {error}"

data = sd.datasets.swiss_roll(512, seed=0)
with sd.NoiseSchedule.linear(100, scale_to_steps=True) as schedule, \
        sd.Model(schedule, network=sd.MLPConfig(data_dim=2, hidden=32, depth=2)) as model:
    losses = model.fit(data, steps=10, batch_size=64, progress=False)
    samples = model.sample(64, seed=1)
assert losses.shape == (10,) and np.isfinite(losses).all(), losses
assert samples.shape == (64, 2) and np.isfinite(samples).all()
print(f"installed swiftddpm {sd.__version__} (libddpm {sd.library_version()}, {library.stat().st_size / 1e6:.1f} MB "
      f"at {library}): 10 steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}; 64 samples, std {samples.std(0)}; "
      f"python {sys.version.split()[0]}")
