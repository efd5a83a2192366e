"""Generate the CustomResourceDefinitions from the pydantic models.

The models are the one source of the schema: this module only translates
pydantic's JSON Schema into a Kubernetes structural OpenAPI v3 schema
(inlining references, dropping what structural schemas forbid) and adds the
CRD's own metadata: names, scope, printer columns, CEL rules.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path
from typing import Any

import yaml

from . import GROUP, VERSION
from .models import CATEGORY, KINDS, Kind
from .models.common import Model

Schema = dict[str, Any]

# JSON Schema keywords a structural schema does not allow, or that carry no
# meaning for the API server.
_DROP = {"title", "additionalProperties", "uniqueItems", "examples", "discriminator"}


def _resolve(node: Any, defs: dict[str, Schema]) -> Any:
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").split("/")[-1]]
        node = {**target, **node}
    if "allOf" in node and len(node["allOf"]) == 1:
        inner = node.pop("allOf")[0]
        node = {**_resolve(inner, defs), **node}
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b != {"type": "null"}]
        if len(branches) == 1:
            node.pop("anyOf")
            inner = _resolve(branches[0], defs)
            node = {**inner, **node}
            if node.get("default", 0) is None:
                node.pop("default")
    if "const" in node:
        node["enum"] = [node.pop("const")]
    out: Schema = {}
    for key, value in node.items():
        if key == "additionalProperties" and isinstance(value, dict):
            out[key] = _resolve(value, defs)  # a map's values (e.g. matchLabels)
            continue
        if key in _DROP or key == "$defs":
            continue
        if key == "default" and isinstance(value, (list, dict)):
            continue
        if key == "properties":
            out[key] = {name: _resolve(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out[key] = _resolve(value, defs)
        else:
            out[key] = value
    message = out.pop("x-vpes-message", None)
    if message and "pattern" in out:
        # A CEL rule says what is wrong in words; a pattern would quote a regex.
        rule = "self.matches(r'''" + out.pop("pattern") + "''')"
        out["x-kubernetes-validations"] = [
            {"rule": rule, "message": message},
            *out.get("x-kubernetes-validations", []),
        ]
    if out.get("type") == "object" and not {"properties", "additionalProperties"} & set(out):
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def openapi_schema(model: type[Model]) -> Schema:
    """The structural OpenAPI v3 schema of one pydantic model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema: Schema = _resolve(raw, defs)
    schema.setdefault("type", "object")
    return schema


def crd(kind: Kind) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    spec_schema = openapi_schema(kind.spec)
    if kind.spec_validations:
        spec_schema["x-kubernetes-validations"] = kind.spec_validations
    properties: Schema = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": spec_schema,
    }
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {
            "openAPIV3Schema": {
                "type": "object",
                "description": kind.description,
                "required": ["spec"] if kind.spec_required else [],
                "properties": properties,
            }
        },
        "additionalPrinterColumns": kind.printer_columns,
    }
    if kind.status is not None:
        properties["status"] = openapi_schema(kind.status)
        version["subresources"] = {"status": {}}
    if not version["schema"]["openAPIV3Schema"]["required"]:
        del version["schema"]["openAPIV3Schema"]["required"]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{kind.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "vpes"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced" if kind.namespaced else "Cluster",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": [CATEGORY],
            },
            "versions": [version],
        },
    }


HEADER = (
    "# Generated by `make crds` from the pydantic models in operator/vpes_operator/models.\n"
    "# Do not edit.\n"
)


def render_all() -> dict[str, str]:
    """File name → YAML text of every CRD."""
    out = {}
    for kind in KINDS:
        text = yaml.safe_dump(crd(kind), sort_keys=False, width=100, allow_unicode=True)
        out[f"{GROUP}_{kind.plural}.yaml"] = HEADER + text
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("crds"), help="directory of the CRDs")
    parser.add_argument(
        "--check", action="store_true", help="fail if the files differ from the models"
    )
    args = parser.parse_args(argv)
    rendered = render_all()
    drift = False
    for name, text in rendered.items():
        path = args.out / name
        current = path.read_text() if path.exists() else ""
        if current == text:
            continue
        if args.check:
            drift = True
            sys.stdout.writelines(
                difflib.unified_diff(
                    current.splitlines(True), text.splitlines(True), str(path), "generated"
                )
            )
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    stale = {p.name for p in args.out.glob("*.yaml")} - set(rendered)
    for name in sorted(stale):
        if args.check:
            drift = True
            print(f"{args.out / name}: no model generates it")
        else:
            (args.out / name).unlink()
    if drift:
        print("CRDs drifted from the models: run `make crds`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
