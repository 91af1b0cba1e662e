"""The engine's Swift enums carry the raw values of the header's C enums, and the C layer
converts one into the other by raw value (Sources/DDPMC/ParamsTable.swift, init(checked:)).
Nothing in the compiler ties the two together: this test reads both declarations and checks
that every C constant has the Swift case of the same name and value, and the reverse."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEADER = ROOT / "include" / "ddpm.h"
SOURCES = ROOT / "Sources" / "DDPM"

# (Swift enum, the header's typedef, its constants' prefix, Swift case → C suffix where the
# names differ beyond case and underscores)
MIRRORS = [
    ("SamplingMethod", "ddpm_method", "DDPM_METHOD_", {"predictorCorrector": "PC"}),
    ("ReverseVariance", "ddpm_variance", "DDPM_VARIANCE_", {}),
    ("PredictOutput", "ddpm_output", "DDPM_OUTPUT_", {"epsilon": "EPS"}),
    ("TimestepSpacing", "ddpm_spacing", "DDPM_SPACING_", {}),
    ("LossWeighting", "ddpm_loss_weighting", "DDPM_LOSS_", {}),
    ("TimestepSampling", "ddpm_timestep_sampling", "DDPM_TIMESTEPS_", {}),
]


def _strip_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", "", text, flags=re.S))


def c_enum(header: str, typedef: str, prefix: str) -> dict[str, int]:
    """{suffix: value} of `typedef enum { PREFIX_NAME = v, ... } typedef;`."""
    body = re.search(r"typedef enum\s*\{([^}]*)\}\s*" + typedef + r"\s*;", _strip_comments(header))
    assert body, f"{typedef} not found in ddpm.h"
    pairs = re.findall(r"\b" + prefix + r"(\w+)\s*=\s*(\d+)", body.group(1))
    return {name: int(value) for name, value in pairs}


def swift_enum(sources: dict[Path, str], name: str) -> dict[str, int]:
    """{case: raw value} of `enum Name: Int32 { case a = 0, b = 1 ... }` (explicit values only)."""
    for text in sources.values():
        m = re.search(r"\benum\s+" + name + r"\s*:\s*Int32\b[^{]*\{", text)
        if m:
            depth, i = 1, m.end()
            while depth:
                depth += {"{": 1, "}": -1}.get(text[i], 0)
                i += 1
            body = _strip_comments(text[m.end():i])
            cases = {}
            for decl in re.findall(r"^\s*case\s+([^\n]+)", body, flags=re.M):
                for item in decl.split(","):
                    k = re.fullmatch(r"\s*`?(\w+)`?\s*=\s*(\d+)\s*", item)
                    assert k, f"{name}: case without an explicit raw value: {item.strip()!r}"
                    cases[k.group(1)] = int(k.group(2))
            return cases
    raise AssertionError(f"enum {name} not found under Sources/DDPM")


def normal(name: str) -> str:
    return name.replace("_", "").lower()


def mismatches(swift: dict[str, int], c: dict[str, int], aliases: dict[str, str]) -> list[str]:
    by_name = {normal(aliases.get(k, k)): (k, v) for k, v in swift.items()}
    wrong = []
    for suffix, value in c.items():
        case = by_name.pop(normal(suffix), None)
        if case is None:
            wrong.append(f"C {suffix} = {value} has no Swift case")
        elif case[1] != value:
            wrong.append(f"C {suffix} = {value} but Swift .{case[0]} = {case[1]}")
    wrong += [f"Swift .{k} = {v} has no C constant" for k, v in by_name.values()]
    return wrong


@pytest.fixture(scope="module")
def declarations():
    return HEADER.read_text(), {p: p.read_text() for p in SOURCES.rglob("*.swift")}


@pytest.mark.parametrize("swift_name,typedef,prefix,aliases", MIRRORS, ids=[m[0] for m in MIRRORS])
def test_swift_enum_mirrors_the_header(declarations, swift_name, typedef, prefix, aliases):
    header, sources = declarations
    swift, c = swift_enum(sources, swift_name), c_enum(header, typedef, prefix)
    assert len(c) >= 2, f"{typedef}: too few constants parsed ({c})"
    assert mismatches(swift, c, aliases) == []


def test_a_drift_is_reported(declarations):
    # Negative controls: a changed value, a missing case and an extra case are each seen.
    header, sources = declarations
    swift, c = swift_enum(sources, "SamplingMethod"), c_enum(header, "ddpm_method", "DDPM_METHOD_")
    aliases = MIRRORS[0][3]
    assert mismatches({**swift, "langevin": 7}, c, aliases) == ["C LANGEVIN = 4 but Swift .langevin = 7"]
    assert mismatches({k: v for k, v in swift.items() if k != "ddim"}, c, aliases) == ["C DDIM = 1 has no Swift case"]
    assert mismatches({**swift, "euler": 6}, c, aliases) == ["Swift .euler = 6 has no C constant"]
