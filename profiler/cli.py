"""Command line: plan a deployment from a DGDR manifest (or a bare spec) with no cluster at all.

Exit codes: 0 planned; 2 the input is invalid (each problem printed with its field path);
3 the request cannot be served (the model does not fit the GPU budget); 4 the request asks for
something not available (thorough profiling); 5 with ``--strict`` only, the chosen (closest)
configuration misses the SLA (it is still printed and written), or the model is not
performance-modelled; 6 the model's config.json could not be fetched from the Hub in time (try
again); 1 anything else the profiler refused.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import yaml

from profiler.errors import InfeasibleError, NotAvailableError, ProfilerError, SpecError
from profiler.hub import HubError, HubSettings
from profiler.plan import PlanResult, plan
from profiler.request import DGD_V1ALPHA1, DGD_V1BETA1, PlanRequest
from profiler.spec import DGDRSpec

EXIT_INVALID = 2
EXIT_INFEASIBLE = 3
EXIT_NOT_AVAILABLE = 4
EXIT_SLA_NOT_MET = 5
EXIT_HUB = 6

EXIT_CODES = f"""exit codes:
  0  planned (without --strict, also when the SLA is missed: a warning says by how much)
  1  the profiler refused the request for another reason
  {EXIT_INVALID}  the input is invalid (each problem is printed with its field path)
  {EXIT_INFEASIBLE}  the request cannot be served (the model does not fit the GPU budget)
  {EXIT_NOT_AVAILABLE}  the request asks for something not available (searchStrategy: thorough)
  {EXIT_SLA_NOT_MET}  --strict: the chosen (closest) configuration does not meet the SLA, or the
     model is not performance-modelled (the SLA was not checked); the plan is still printed and
     written, and each missed target is named on stderr
  {EXIT_HUB}  the model's config.json could not be fetched from the Hugging Face Hub (no answer
     in time, a server error): try again

A model the catalog does not know is planned from its config.json on the Hugging Face Hub:
HF_ENDPOINT names a mirror (default https://huggingface.co), HF_TOKEN a token for gated or
private models, DGDR_HUB_TIMEOUT the seconds to wait (default 20); files are cached under
DGDR_HUB_CACHE (default ~/.cache/dgdr-profiler/hub).
"""


# What a DGDR manifest may hold at its top level, and its spec (the models' fields, from which the
# CRD is generated). kubectl's strict field validation makes the API server refuse anything else;
# below spec, the models refuse it (PlanRequest.from_spec validates through them).
MANIFEST_FIELDS = ("apiVersion", "kind", "metadata", "spec", "status")
SPEC_FIELDS = tuple(f.alias or name for name, f in DGDRSpec.model_fields.items())


class InputError(Exception):
    """The file could not be read as a DGDR manifest or spec."""


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, with YAML 1.2's floats: ``1e300`` and ``1E-9`` are numbers (as for
    kubectl and the API server), not strings as in YAML 1.1."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _parse_documents(text: str) -> list[Any]:
    """JSON through a JSON parser (NaN and Infinity refused), anything else as YAML."""
    if text.lstrip().startswith(("{", "[")):
        try:
            return [json.loads(text, parse_constant=_refuse_constant)]
        except ValueError as exc:
            json_error = exc
        try:  # flow-style YAML also starts with a brace
            return [d for d in yaml.load_all(text, Loader=_YamlLoader) if d is not None]
        except yaml.YAMLError:
            raise InputError(f"not valid JSON: {json_error}") from json_error
    try:
        return [d for d in yaml.load_all(text, Loader=_YamlLoader) if d is not None]
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML or JSON: {exc}") from exc


def _refuse_unknown(doc: Mapping[str, Any], known: Sequence[str], where: str) -> None:
    unknown = sorted(str(k) for k in doc if k not in known)
    if unknown:
        raise InputError(
            f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} {where} (the "
            f"API server refuses it; known: {', '.join(known)})"
        )


def load_spec(text: str) -> tuple[dict[str, Any], str, str | None]:
    """(spec, DGDR name, namespace) from a DGDR manifest or a bare spec, YAML or JSON."""
    docs = _parse_documents(text)
    if not docs:
        raise InputError("the input is empty")
    doc = next(
        (
            d
            for d in docs
            if isinstance(d, Mapping) and d.get("kind") == "DynamoGraphDeploymentRequest"
        ),
        docs[0],
    )
    if not isinstance(doc, Mapping):
        raise InputError(f"expected a DGDR manifest or a spec object, got {type(doc).__name__}")
    if "kind" in doc or "apiVersion" in doc:
        kind = doc.get("kind")
        if kind != "DynamoGraphDeploymentRequest":
            raise InputError(f"kind: expected DynamoGraphDeploymentRequest, got {kind!r}")
        _refuse_unknown(doc, MANIFEST_FIELDS, "at the top of the manifest")
        spec = doc.get("spec")
        if not isinstance(spec, Mapping):
            raise InputError("spec: required, and must be an object")
        _refuse_unknown(spec, SPEC_FIELDS, "in spec")
        meta = doc.get("metadata") if isinstance(doc.get("metadata"), Mapping) else {}
        assert isinstance(meta, Mapping)
        name = meta.get("name") if isinstance(meta.get("name"), str) else None
        ns = meta.get("namespace") if isinstance(meta.get("namespace"), str) else None
        return dict(spec), name or "plan", ns
    _refuse_unknown(doc, SPEC_FIELDS, "in the spec")
    return dict(doc), "plan", None


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _table(result: PlanResult, out: TextIO) -> None:
    head = (
        "#",
        "mode",
        "backend",
        "workers",
        "GPUs",
        "TTFT ms",
        "ITL ms",
        "tok/s/GPU",
        "tok/s/user",
        "SLA",
        "pareto",
    )
    rows: list[tuple[str, ...]] = []
    for i, c in enumerate(result.candidates, 1):
        rows.append(
            (
                "*" if c is result.chosen else str(i),
                c.mode,
                c.backend,
                c.label,
                str(c.gpus),
                f"{c.ttft_ms:.1f}",
                f"{c.itl_ms:.2f}",
                f"{c.tokens_s_per_gpu:.1f}",
                f"{c.tokens_s_per_user:.1f}",
                "yes" if c.meets_sla else "no",
                "yes" if c.pareto else "",
            )
        )
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    for r in (head, *rows):
        out.write("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() + "\n")
    c = result.chosen
    if result.modelled:
        out.write(
            f"\nchosen ({result.picking_mode}): {c.mode} {c.backend} {c.label} on {c.gpus} GPUs: "
            f"TTFT {c.ttft_ms:.1f} ms, ITL {c.itl_ms:.2f} ms, {c.tokens_s_per_gpu:.1f} "
            f"tokens/s/GPU, {c.tokens_s_per_user:.1f} tokens/s/user\n"
        )
    else:
        out.write(
            f"\nchosen: {c.mode} {c.backend} {c.label} on {c.gpus} GPUs, sized by memory "
            "(not performance-modelled: no predictions)\n"
        )
    for w in result.warnings:
        out.write(f"warning: {w}\n")
    out.write(
        f"{result.configs_evaluated} configurations evaluated in {result.elapsed_s:.3f} s; "
        f"DGD {result.dgd['metadata']['name']}\n"
    )


def _write_manifests(result: PlanResult, path: str) -> None:
    """ConfigMaps first, the DGD last: the layout of upstream's final_config.yaml; ``-`` is
    stdout."""
    docs = [*result.configmaps, result.dgd]
    if path == "-":
        yaml.safe_dump_all(docs, sys.stdout, sort_keys=False, default_flow_style=False)
        return
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump_all(docs, fh, sort_keys=False, default_flow_style=False)


def _cmd_plan(args: argparse.Namespace) -> int:
    try:
        hub = HubSettings.from_env()
    except ValueError as exc:
        print(f"error: DGDR_HUB_TIMEOUT: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:
        spec, name, ns = load_spec(_read(args.file))
        request = PlanRequest.from_spec(
            spec,
            dgdr_name=name,
            namespace=ns,
            hub=hub,
            dgd_api_version=f"nvidia.com/{args.dgd_version}",
        )
        result = plan(request)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except SpecError as exc:
        infeasible = all("infeasible" in e.message for e in exc.errors)
        print(
            "error: infeasible request:" if infeasible else "error: invalid spec:", file=sys.stderr
        )
        for e in exc.errors:
            print(f"  {e}", file=sys.stderr)
        return EXIT_INFEASIBLE if infeasible else EXIT_INVALID
    except InfeasibleError as exc:
        print(f"error: infeasible request: {exc}", file=sys.stderr)
        return EXIT_INFEASIBLE
    except NotAvailableError as exc:
        print(f"error: not available: {exc}", file=sys.stderr)
        return EXIT_NOT_AVAILABLE
    except HubError as exc:  # the transient kind; a missing model is a SpecError on spec.model
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_HUB
    except ProfilerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.output:
        try:
            _write_manifests(result, args.output)
        except OSError as exc:
            print(f"error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=1)
        sys.stdout.write("\n")
        # stdout is one JSON object; the warnings are in it, and said on stderr for people.
        for w in result.warnings:
            print(f"warning: {w}", file=sys.stderr)
    elif args.output == "-":
        _table(result, sys.stderr)  # stdout holds the manifests alone, ready for kubectl
    else:
        _table(result, sys.stdout)
        if args.output:
            print(f"wrote {args.output}")
    if args.strict and not (result.sla.met and result.sla.evaluated):
        print(f"error: {result.sla.describe()}", file=sys.stderr)
        return EXIT_SLA_NOT_MET
    return 0


def _cmd_estimate(args: argparse.Namespace) -> int:
    from profiler.estimate_csv import estimate_csv

    try:
        rows = estimate_csv(args.input, args.output)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {rows} rows to {args.output}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dgdr-profiler",
        description="Plan a Dynamo deployment (DGD) from a DGDR spec, without a cluster.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    pl = sub.add_parser(
        "plan",
        help="search configurations and generate the DGD",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pl.add_argument("file", help="DGDR manifest or bare spec, YAML or JSON; - for stdin")
    pl.add_argument("--json", action="store_true", help="print one JSON object")
    pl.add_argument(
        "--strict",
        action="store_true",
        help=f"exit {EXIT_SLA_NOT_MET} when the chosen configuration does not meet the SLA "
        "(default: plan the closest one, warn and exit 0)",
    )
    pl.add_argument(
        "-o",
        "--output",
        help="write the manifests as YAML (planner ConfigMaps, then the DGD); - for stdout "
        "(the table then goes to stderr)",
    )
    pl.add_argument(
        "--dgd-version",
        choices=[v.split("/")[1] for v in (DGD_V1ALPHA1, DGD_V1BETA1)],
        default="v1alpha1",
        help="DynamoGraphDeployment version to generate: v1alpha1 (a services map, what "
        "Dynamo 1.1 generates) or v1beta1 (a components list; the controller picks what the "
        "cluster serves) [default: v1alpha1]",
    )
    pl.set_defaults(func=_cmd_plan)
    es = sub.add_parser("estimate", help="add predicted TTFT and TPOT to calibration-style rows")
    es.add_argument("--input", required=True, help="CSV in the layout of silicon_calibration.csv")
    es.add_argument("--output", required=True, help="CSV to write")
    es.set_defaults(func=_cmd_estimate)
    return p


EXIT_BROKEN_PIPE = 128 + 13  # as a process killed by SIGPIPE, what `cat file | head` gives


def main(argv: Sequence[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if getattr(args, "json", False) and getattr(args, "output", None) == "-":
        ap.error("--json and -o - both write to stdout: write the manifests to a file")
    try:
        code: int = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): not a failure to report with a traceback. Point
        # stdout at /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return code
