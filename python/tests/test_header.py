"""include/ddpm.h read as a C programmer reads it (issue 22): the ABI its first lines name is
ddpm_version.h's, every enum a struct field names is declared before that struct, every
`count` parameter's comment says which buffer's size it is, and the get_* functions say what
to set before the call."""

from __future__ import annotations

import re

from conftest import HEADER, REPO

TEXT = HEADER.read_text(encoding="utf-8")


def _version() -> tuple[int, int]:
    found = dict(re.findall(r"#define DDPM_VERSION_(MAJOR|MINOR) +(\d+)", (REPO / "include" / "ddpm_version.h").read_text()))
    return int(found["MAJOR"]), int(found["MINOR"])


def _prototypes() -> list[tuple[str, str, str]]:
    """(name, parameter list, the doc comment just above) of every function declaration."""
    out = []
    for m in re.finditer(r"(/\*\*(?:(?!\*/).)*\*/)\s*\n([a-z_ 0-9]+?\**\s*\**(ddpm_\w+)\(([^;{]*?)\);)", TEXT, re.S):
        out.append((m.group(3), m.group(4), m.group(1)))
    return out


def test_the_abi_line_is_the_version_headers():
    major, minor = _version()
    line = TEXT.splitlines()[4]
    assert f"ABI {major}.{minor}" in line, line


def test_enums_are_declared_before_the_structs_whose_fields_hold_them():
    enums = {m.group(1): m.start() for m in re.finditer(r"\}\s*(ddpm_\w+);", TEXT)
             if TEXT.rfind("typedef enum", 0, m.start()) > TEXT.rfind("typedef struct", 0, m.start())}
    assert {"ddpm_loss_weighting", "ddpm_timestep_sampling", "ddpm_method"} <= set(enums)
    checked = 0
    for struct in re.finditer(r"typedef struct (ddpm_\w+) \{(.*?)\} \1;", TEXT, re.S):
        for name in set(re.findall(r"ddpm_\w+", struct.group(2))) & set(enums):
            assert enums[name] < struct.start(), f"{name} is declared after {struct.group(1)}, whose fields use it"
            checked += 1
    assert checked >= 5  # the test saw the sampling and training structs' enum fields


def test_every_count_parameter_says_whose_size_it_is():
    with_count = [(name, doc) for name, params, doc in _prototypes() if re.search(r"\bint64_t count\b", params)]
    assert len(with_count) >= 15
    vague = [name for name, doc in with_count if not re.search(r"count\s*=|count floats|count must", doc)]
    assert not vague, f"no 'count = ...' in the comments of {vague}"
    docs = dict(with_count)
    # the calls whose outputs are not all count floats say so
    assert re.search(r"variance_out: \(batch,\) floats.*NOT count", docs["ddpm_schedule_posterior"], re.S)
    for name in ("ddpm_schedule_vlb", "ddpm_model_nll"):
        assert re.search(r"size of x0 only", docs[name]), name


def test_get_functions_say_what_to_set_first():
    docs = {name: doc for name, params, doc in _prototypes()}
    for name in ("ddpm_schedule_get_params", "ddpm_model_get_network", "ddpm_model_get_train_params",
                 "ddpm_model_get_cond_params"):
        assert "struct_size" in docs[name] and re.search(r"Before the\s+(\*\s+)?call", docs[name]), name
    assert "out->kind" in docs["ddpm_model_get_network"]
