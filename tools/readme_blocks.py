#!/usr/bin/env python3
"""Runs the README's code as a reader would: every fenced ```python block, top to bottom, as
one script (one namespace, in a scratch folder), and the C quickstart (```c) compiled against
include/ddpm.h and the built libddpm, then run. `make test` runs it (test-readme).

    python3 tools/readme_blocks.py [README.md] [--lib .build/release] [--keep DIR]

A block's info string may carry `needs=` with what it needs beyond `make test`'s packages,
comma-separated; such a block runs only where that is present and is reported as NOT RUN
(with the reason) otherwise, never skipped silently:
    ```python needs=torch        PyTorch importable (make test-torch runs the blocks in its venv)
    ```python needs=mpi          mpi4py importable (the block runs as one process, rank 0 of 1)
    ```python needs=photos       a folder photos/ of class sub-folders of PNGs, written here
                                 from scikit-learn's digits (real images) before the block runs
    ```python needs=folder:NAME  a file or folder NAME that must be downloaded (nothing is
                                 downloaded here): in the repository root, or in $README_BLOCKS_DATA;
                                 linked into the scratch folder
Blocks in other languages (```sh) are not run. A failing block stops the run: its README line,
the traceback, exit status 1. --strict makes a block that could not run a failure too.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```\s*$", re.M | re.S)


@dataclass
class Block:
    language: str
    needs: tuple[str, ...]
    code: str
    line: int  # the README line of the opening fence


def blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text, in order."""
    found = []
    for match in FENCE.finditer(text):
        info = dict(re.findall(r"(\w+)=(\S+)", match.group(2)))
        needs = tuple(n for n in info.get("needs", "").split(",") if n)
        found.append(Block(match.group(1), needs, match.group(3), text.count("\n", 0, match.start()) + 1))
    return found


def _photos(folder: Path) -> None:
    """photos/<digit>/<i>.png: 20 of scikit-learn's 8×8 digits per class for digits 0-2,
    scaled to 32×32 grey PNGs (what `image_folder` is shown reading)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for label in range(3):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(digits.images[digits.target == label][:20]):
            pixels = np.kron(image / 16.0 * 255.0, np.ones((4, 4))).astype(np.uint8)  # 8×8 -> 32×32
            Image.fromarray(pixels).save(folder / str(label) / f"{i}.png")


def data_path(name: str) -> Path | None:
    """Where a needs=folder:NAME file or folder is: $README_BLOCKS_DATA/NAME or the repository's NAME."""
    for base in filter(None, (os.environ.get("README_BLOCKS_DATA"), str(ROOT))):
        if (Path(base) / name).exists():
            return Path(base) / name
    return None


def missing(need: str) -> str | None:
    """Why a need is not met here, or None when it is."""
    if need.startswith("folder:"):
        name = need.split(":", 1)[1]
        if data_path(name) is None:
            return f"needs {name}/ (downloaded as the README says), found neither in $README_BLOCKS_DATA nor in {ROOT}"
        return None
    modules = {"torch": "torch", "mpi": "mpi4py", "photos": "PIL"}
    if need not in modules:
        return f"unknown need {need!r} (known: {', '.join(modules)})"
    if importlib.util.find_spec(modules[need]) is None:
        return f"needs {need}: no module named {modules[need]!r} in {sys.executable}"
    if need == "photos" and importlib.util.find_spec("sklearn") is None:
        return "needs photos: no module named 'sklearn' (the digits they are made from)"
    return None


def run_c(block: Block, lib_dir: Path, work: Path) -> None:
    """Compiles the block against include/ and lib_dir's libddpm, with an rpath, and runs it."""
    source = work / f"readme_{block.line}.c"
    source.write_text(block.code)
    exe = work / f"readme_{block.line}"
    cc = os.environ.get("CC", "cc")
    cmd = [cc, "-O2", "-Wall", "-Wextra", "-Werror", "-std=c11", str(source), f"-I{ROOT / 'include'}",
           f"-L{lib_dir}", "-lddpm", f"-Wl,-rpath,{lib_dir}", "-lm", "-o", str(exe)]
    subprocess.run(cmd, check=True)
    result = subprocess.run([str(exe)], cwd=work, capture_output=True, text=True, timeout=600)
    sys.stdout.write("".join(f"    | {line}\n" for line in result.stdout.splitlines()))
    if result.returncode != 0:
        raise RuntimeError(f"the program exited with status {result.returncode}: {result.stderr.strip()}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("readme", type=Path, nargs="?", default=ROOT / "README.md", help="the Markdown file")
    p.add_argument("--lib", type=Path, default=ROOT / ".build" / "release", help="folder of libddpm for the C block")
    p.add_argument("--keep", type=Path, default=None, help="run in this folder and keep it (default: a temporary one)")
    p.add_argument("--strict", action="store_true", help="a block whose needs are not met fails the run")
    args = p.parse_args()
    readme = args.readme.resolve()
    all_blocks = blocks(readme.read_text())
    work = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="readme-blocks-"))
    work.mkdir(parents=True, exist_ok=True)
    namespace: dict = {"__name__": "__main__"}
    ran, not_run = 0, []
    cwd = os.getcwd()
    os.chdir(work)  # the blocks write roll.safetensors, roll/, ...: in the scratch folder
    try:
        for block in all_blocks:
            if block.language not in ("python", "c"):
                continue
            where = f"{readme.name}:{block.line} ```{block.language}"
            reasons = [r for r in map(missing, block.needs) if r]
            if reasons:
                not_run.append(f"{where}: {'; '.join(reasons)}")
                print(f"NOT RUN {where}: {'; '.join(reasons)}", flush=True)
                continue
            if "photos" in block.needs and not (work / "photos").is_dir():
                _photos(work / "photos")
            for need in block.needs:
                if need.startswith("folder:") and not (work / need[7:]).exists():
                    (work / need[7:]).symlink_to(data_path(need[7:]))
            print(f"run     {where} ({block.code.count(chr(10))} lines)", flush=True)
            started = time.perf_counter()
            try:
                if block.language == "c":
                    run_c(block, args.lib.resolve(), work)
                else:
                    exec(compile(block.code, f"{readme}:{block.line} (block)", "exec"), namespace)
            except BaseException as error:  # noqa: BLE001 - reported with the block's line, then fail
                # Tracebacks number lines from the block's first line (README line + 1).
                traceback.print_exc()
                print(f"FAILED  {where}: {type(error).__name__}: {error}\n"
                      f"        (traceback line n is README line {block.line + 1} + n - 1)", flush=True)
                return 1
            ran += 1
            print(f"ok      {where} ({time.perf_counter() - started:.1f} s)", flush=True)
    finally:
        os.chdir(cwd)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"README blocks: {ran} ran, {len(not_run)} not run" + "".join(f"\n  not run: {n}" for n in not_run))
    return 1 if args.strict and not_run else 0


if __name__ == "__main__":
    sys.exit(main())
