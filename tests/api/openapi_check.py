#!/usr/bin/python3
"""Checks libbackup/api/openapi.yaml.

  openapi_check.py DOC                  the document against the OpenAPI 3.0 schema
  openapi_check.py DOC RECORD.jsonl...  and every recorded response body against the
                                        schema the document gives for its call and status
"""
import json
import re
import sys

import jsonschema
import yaml

OAS_SCHEMA = "/usr/share/openapi-specification/schemas/v3.0/schema.json"


def to_json_schema(node):
    """OpenAPI 3.0 schema objects to JSON Schema (draft 4): nullable -> null type."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items() if k not in ("nullable", "example")}
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def resolve(doc, node):
    while isinstance(node, dict) and "$ref" in node:
        parts = node["$ref"].lstrip("#/").split("/")
        node = doc
        for p in parts:
            node = node[p]
    return node


def main():
    doc = yaml.safe_load(open(sys.argv[1]))
    oas = json.load(open(OAS_SCHEMA))
    jsonschema.Draft4Validator(oas).validate(doc)
    print("ok   %s is a valid OpenAPI 3.0 document" % sys.argv[1])

    converted = to_json_schema(doc)
    resolver = jsonschema.RefResolver.from_schema(converted)
    routes = []
    for path, item in doc["paths"].items():
        rx = "^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"
        for method, op in item.items():
            routes.append((re.compile(rx), method.upper(), op))

    checked = 0
    failed = 0
    for rec in sys.argv[2:]:
        for line in open(rec):
            r = json.loads(line)
            if r["path"].startswith("/_sim/"):
                continue
            op = next((o for rx, m, o in routes if m == r["method"] and rx.match(r["path"])), None)
            status = str(r["status"])
            if op is None:
                # Not a call of the API: still the error model.
                resp = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            else:
                resp = op["responses"].get(status) or op["responses"].get(status[0] + "XX")
                if resp is None:
                    print("FAIL %s %s: status %s is not documented" % (r["method"], r["path"], status))
                    failed += 1
                    continue
                resp = resolve(doc, resp)
            schema = to_json_schema(resp["content"]["application/json"]["schema"])
            try:
                jsonschema.Draft4Validator(schema, resolver=resolver).validate(r["body"])
                checked += 1
            except jsonschema.ValidationError as e:
                print("FAIL %s %s %s: %s" % (r["method"], r["path"], status, e.message))
                failed += 1
    if len(sys.argv) > 2:
        print("%d responses match the document, %d do not" % (checked, failed))
        if checked == 0:
            print("FAIL no responses were checked")
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
