"""Write the DGDR CRD's v1beta1 schema from the models: ``python -m controller.dgdr.crdgen``.

The models (``profiler/spec.py``, ``controller/dgdr/api.py``) are the one definition of the
API; this replaces the ``openAPIV3Schema`` of the v1beta1 version in
``deploy/crds/nvidia.com_dynamographdeploymentrequests.yaml`` and in the Helm chart's copy with
the schema generated from them (``api.crd_schema``), and leaves the rest of the file (header,
names, conversion, printer columns, upstream's v1alpha1) as it is. ``--check`` changes nothing
and exits 1 when a file is out of date (tests/api/test_crdgen.py fails then too).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from controller.dgdr.api import crd_schema

REPO = Path(__file__).resolve().parents[2]
CRD_NAME = "nvidia.com_dynamographdeploymentrequests.yaml"
CRD_FILES_IN_REPO = (
    REPO / "deploy" / "crds" / CRD_NAME,
    REPO / "deploy" / "helm" / "dgdr-controller" / "crds" / CRD_NAME,  # byte-identical copy
)
CRD_FILES = CRD_FILES_IN_REPO
VERSION = "v1beta1"
_VERSION_LINE = f"    - name: {VERSION}\n"
_SCHEMA_LINE = "        openAPIV3Schema:\n"
_INDENT = " " * 10  # the schema's keys, below openAPIV3Schema:

# Keys in the order a reader expects them: what the node is, its bounds, then its text and rules.
_ORDER = (
    "type", "format", "nullable", "enum", "minimum", "maximum", "minLength", "maxLength",
    "minItems", "maxItems", "pattern", "default", "x-kubernetes-embedded-resource",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys", "description", "x-kubernetes-validations", "required",
    "items", "properties",
)  # fmt: skip


class _Dumper(yaml.SafeDumper):
    """Multi-line text as literal blocks, lists of scalars in flow style, no line folding, block
    lists indented below their key (as the rest of the file is)."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.SequenceNode:
    flow = all(not isinstance(v, dict | list) for v in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


_Dumper.add_representer(str, _str)
_Dumper.add_representer(list, _list)


def _ordered(node: Any) -> Any:
    if isinstance(node, list):
        return [_ordered(v) for v in node]
    if not isinstance(node, dict):
        return node
    rank = {k: i for i, k in enumerate(_ORDER)}
    keys = sorted(node, key=lambda k: rank.get(k, len(_ORDER)))
    if "rule" in node:  # a CEL rule keeps its own order
        keys = list(node)
    out = {k: _ordered(node[k]) for k in keys}
    if "properties" in node:
        out["properties"] = {k: _ordered(v) for k, v in node["properties"].items()}
    return out


def schema_yaml(schema: dict[str, Any]) -> str:
    """The schema as the lines below ``openAPIV3Schema:``."""
    text = yaml.dump(
        _ordered(schema), Dumper=_Dumper, sort_keys=False, width=10_000, allow_unicode=True
    )
    return "".join(_INDENT + line if line.strip() else "\n" for line in text.splitlines(True))


def render(text: str, schema: dict[str, Any]) -> str:
    """The CRD file ``text`` with its v1beta1 ``openAPIV3Schema`` replaced by ``schema``."""
    start = text.index(_VERSION_LINE)
    head = text.index(_SCHEMA_LINE, start) + len(_SCHEMA_LINE)
    lines = text[head:].splitlines(True)
    end = head
    for line in lines:  # the block ends at the first line less indented than its keys
        if line.strip() and not line.startswith(_INDENT):
            break
        end += len(line)
    body = text[head:end]
    trailing = body[len(body.rstrip("\n")) :]  # blank lines before the next key stay
    return text[:head] + schema_yaml(schema).rstrip("\n") + "\n" + trailing[1:] + text[end:]


def file_schema(text: str) -> dict[str, Any]:
    """The v1beta1 ``openAPIV3Schema`` a CRD file holds."""
    crd = yaml.safe_load(text)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == VERSION)
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    schema = crd_schema()
    stale = []
    for path in CRD_FILES:
        text = path.read_text()
        new = render(text, schema)
        if new == text:
            continue
        if args.check:
            stale.append(path)
        else:
            path.write_text(new)
            print(f"wrote {path.relative_to(REPO)}")
    for path in stale:
        print(f"out of date: {path.relative_to(REPO)}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
