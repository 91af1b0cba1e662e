"""Every examples/python/*.py answers --help without matplotlib (it imports matplotlib after
parsing its arguments) and documents every option, with its default
(argparse.ArgumentDefaultsHelpFormatter and a help string on each option).

Each example runs in a fresh interpreter in which `import matplotlib` raises ImportError (a
meta-path finder refuses it), with argparse's parse_args wrapped to report the parser's
options as JSON before it prints the help and exits."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO

EXAMPLES = sorted(p for p in (REPO / "examples" / "python").glob("*.py") if not p.name.startswith("_"))

DRIVER = r"""
import argparse, importlib.abc, json, runpy, sys

class NoMatplotlib(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"{name} is made unimportable by the test")
        return None

sys.meta_path.insert(0, NoMatplotlib())
original = argparse.ArgumentParser.parse_args

def parse_args(self, *args, **kwargs):
    options = [{"flags": a.option_strings, "dest": a.dest, "help": a.help, "default": repr(a.default)}
               for a in self._actions if not isinstance(a, argparse._HelpAction)]
    print(json.dumps({"formatter": self.formatter_class.__name__, "options": options}), file=sys.stderr)
    return original(self, *args, **kwargs)

argparse.ArgumentParser.parse_args = parse_args
script = sys.argv[1]
sys.argv = [script, "--help"]
sys.path.insert(0, script.rsplit("/", 1)[0])  # as `python script.py` does
try:
    runpy.run_path(script, run_name="__main__")
finally:
    print(json.dumps({"matplotlib_imported": "matplotlib" in sys.modules}), file=sys.stderr)
"""


def test_there_are_examples():
    assert {p.name for p in EXAMPLES} >= {"swiss_roll.py", "digits.py", "signals_1d.py", "samplers.py",
                                          "likelihood.py", "prompts.py"}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_help_works_without_matplotlib_and_documents_every_option(example):
    result = subprocess.run([sys.executable, "-c", DRIVER, str(example)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("usage: "), result.stdout
    reports = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    parser, = [r for r in reports if "formatter" in r]
    assert parser["formatter"] == "ArgumentDefaultsHelpFormatter"
    assert reports[-1] == {"matplotlib_imported": False}
    undocumented = [o["flags"] for o in parser["options"] if not (o["help"] or "").strip()]
    assert not undocumented, f"options without help: {undocumented}"
    # ArgumentDefaultsHelpFormatter prints "(default: …)" for every option with a default.
    help_text = " ".join(result.stdout.split())
    for option in parser["options"]:
        if option["flags"] and option["default"] not in ("None", "False"):
            assert "(default: " in help_text.split(option["flags"][-1], 1)[1], option


def test_the_driver_detects_a_matplotlib_import(tmp_path):
    """Negative control: a script that imports matplotlib before argparse fails under the driver."""
    script = tmp_path / "bad.py"
    script.write_text("import matplotlib\nimport argparse\nargparse.ArgumentParser().parse_args()\n")
    result = subprocess.run([sys.executable, "-c", DRIVER, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "made unimportable by the test" in result.stderr
