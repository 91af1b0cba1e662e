"""The public API is typed (issue 22): the package ships py.typed, and every public function,
method and property of swiftddpm's public names and public modules has annotations on each
parameter and on its return value. A dataclass's fields are typed by construction."""

from __future__ import annotations

import ast
import inspect
import types

import pytest

import swiftddpm as sd
from swiftddpm import datasets, diffusers

from conftest import REPO

MODULES = (sd, datasets, diffusers)
# Read, not imported: importing swiftddpm.distributed imports mpi4py, which starts MPI in this
# process (an orted child, and signal handlers that break the Ctrl-C tests that follow).
READ_ONLY = (REPO / "python" / "swiftddpm" / "distributed.py",)


def public_callables():
    """(qualified name, function) of every public function, method and property getter."""
    seen = set()
    for module in MODULES:
        names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
        for name in names:
            obj = getattr(module, name)
            if isinstance(obj, types.ModuleType) or id(obj) in seen:
                continue
            seen.add(id(obj))
            owner = getattr(obj, "__module__", "") or ""
            if not owner.startswith("swiftddpm"):
                continue  # imported from elsewhere (numpy, typing, ...)
            if inspect.isfunction(obj):
                yield f"{owner}.{name}", obj
            elif inspect.isclass(obj) and not issubclass(obj, BaseException):
                for attr, member in vars(obj).items():
                    if attr.startswith("_") and attr not in ("__init__", "__enter__", "__exit__"):
                        continue
                    if isinstance(member, (staticmethod, classmethod)):
                        member = member.__func__
                    if isinstance(member, property):
                        member = member.fget
                    if inspect.isfunction(member) and not (attr == "__init__" and member.__qualname__.split(".")[0] != name):
                        yield f"{owner}.{name}.{attr}", member


def missing_annotations(function) -> list[str]:
    signature = inspect.signature(function)
    missing = [p.name for i, p in enumerate(signature.parameters.values())
               if p.annotation is inspect.Parameter.empty and not (i == 0 and p.name in ("self", "cls"))]
    if signature.return_annotation is inspect.Signature.empty:
        missing.append("return")
    return missing


def test_every_public_function_is_annotated():
    functions = dict(public_callables())
    assert len(functions) > 80 and "swiftddpm.model.Model.fit" in functions  # the walk finds the API
    untyped = {name: m for name, f in functions.items() if (m := missing_annotations(f))}
    assert not untyped, "\n".join(f"{name}: {', '.join(m)}" for name, m in sorted(untyped.items()))


def untyped_in_source(path) -> dict[str, list[str]]:
    """missing_annotations for the public functions and methods of a module's source."""
    out = {}

    def check(node: ast.FunctionDef, name: str, method: bool) -> None:
        args = node.args
        params = [*args.posonlyargs, *args.args, *args.kwonlyargs, *filter(None, (args.vararg, args.kwarg))]
        missing = [a.arg for i, a in enumerate(params) if a.annotation is None
                   and not (method and i == 0 and a.arg in ("self", "cls"))]
        if node.returns is None:
            missing.append("return")
        if missing:
            out[name] = missing

    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            check(node, node.name, False)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and (not item.name.startswith("_") or item.name == "__init__"):
                    check(item, f"{node.name}.{item.name}", True)
    return out


@pytest.mark.parametrize("path", READ_ONLY, ids=lambda p: p.name)
def test_every_public_function_of_a_read_module_is_annotated(path):
    untyped = untyped_in_source(path)
    assert not untyped, "\n".join(f"{name}: {', '.join(m)}" for name, m in sorted(untyped.items()))


def test_the_check_sees_a_missing_annotation(tmp_path):
    """Negative control."""
    def typed(a: int, *, b: str = "") -> None: ...

    def untyped(a, b: int = 0): ...

    assert missing_annotations(typed) == [] and missing_annotations(untyped) == ["a", "return"]
    source = tmp_path / "m.py"
    source.write_text("def typed(a: int) -> None: ...\ndef untyped(a, b: int = 0): ...\n"
                      "class C:\n    def m(self, x) -> int: ...\n    def _private(self, y): ...\n")
    assert untyped_in_source(source) == {"untyped": ["a", "return"], "C.m": ["x"]}
