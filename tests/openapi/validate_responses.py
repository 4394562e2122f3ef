#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Validates recorded HTTP responses against docs/openapi.json.

    validate_responses.py OPENAPI_JSON RESPONSE_DIR   every *.jsonl record in the directory
    validate_responses.py OPENAPI_JSON --self-test    proves a wrong body is caught

A record is {"method","route","path","status","body"} (tests/support/
server_fixture.h writes them); `route` is the server's route-table pattern
("/runs/{}"), empty when no route matched (404/405: the error envelope). Each
record must find its operation, a response for its status (or "default") and,
when that response declares JSON, a body its schema accepts. A record of a
request the server accepted (2xx) also carries "request_body": when the
operation documents a JSON request body, its schema must accept it (the
contract may not be stricter than the server). Uses Debian's
python3-jsonschema (JSON Schema 2020-12, the dialect of OpenAPI 3.1).
"""
import glob
import json
import os
import re
import sys

try:
    import jsonschema
except ImportError:
    sys.exit("python3-jsonschema is missing (scripts/bootstrap.sh installs it): cannot validate responses")


def template_of(openapi_path):
    return re.sub(r"\{[^}]*\}", "{}", openapi_path)


class Contract:
    def __init__(self, doc):
        self.doc = doc
        self.paths = {template_of(p): item for p, item in doc["paths"].items()}
        self.resolver = jsonschema.RefResolver.from_schema(doc)
        self.validator_class = jsonschema.Draft202012Validator

    def resolve(self, node):
        while isinstance(node, dict) and "$ref" in node:
            node = self.resolver.resolve(node["$ref"])[1]
        return node

    def schema_for(self, record):
        """The JSON schema the record's body must match, or (None, why)."""
        route, method, status = record["route"], record["method"].lower(), str(record["status"])
        if method == "head":
            method = "get"  # answered as GET, the body left unsent
        if not route:
            return {"$ref": "#/components/schemas/Error"}, None
        item = self.paths.get(route)
        if item is None:
            return None, "route %s is not in the OpenAPI document" % route
        op = item.get(method)
        if op is None:
            return None, "%s %s is not in the OpenAPI document" % (method.upper(), route)
        responses = op.get("responses", {})
        response = responses.get(status) or responses.get("default")
        if response is None:
            return None, "status %s of %s %s is not documented" % (status, method.upper(), route)
        content = self.resolve(response).get("content", {})
        media = content.get("application/json")
        if media is None:
            return None, "%s %s answered JSON with status %s, which documents no JSON body" % (
                method.upper(), route, status)
        return media["schema"], None

    def request_schema_for(self, record):
        """The schema of the operation's JSON request body, or None."""
        item = self.paths.get(record["route"] or "")
        op = item.get(record["method"].lower()) if item else None
        if not op or "requestBody" not in op:
            return None
        media = self.resolve(op["requestBody"]).get("content", {}).get("application/json")
        return media["schema"] if media else None

    def errors(self, schema, text, what):
        try:
            body = json.loads(text)
        except ValueError as e:
            return ["the %s is not JSON: %s" % (what, e)]
        validator = self.validator_class(schema, resolver=self.resolver)
        return ["%s: %s at /%s" % (what, e.message, "/".join(str(p) for p in e.absolute_path))
                for e in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))][:3]

    def problems(self, record):
        schema, why = self.schema_for(record)
        if schema is None:
            return [why]
        found = self.errors(schema, record["body"], "body")
        if record.get("request_body"):
            request_schema = self.request_schema_for(record)
            if request_schema is not None:
                found += self.errors(request_schema, record["request_body"], "request body")
        return found


def validate_dir(contract, directory):
    records = []
    for path in sorted(glob.glob(os.path.join(directory, "*.jsonl"))):
        with open(path) as f:
            records += [json.loads(line) for line in f if line.strip()]
    if not records:
        sys.exit("no recorded responses in %s: did the server tests run with ORCH_RESPONSE_LOG_DIR?" % directory)
    failures = 0
    seen = set()
    for r in records:
        seen.add((r["method"], r["route"]))
        for p in contract.problems(r):
            failures += 1
            if failures <= 30:
                print("%s %s (%s) -> %s: %s\n    body: %s" % (r["method"], r["path"], r["route"] or "no route",
                                                               r["status"], p, r["body"][:300]))
    print("%d responses of %d operations checked against the OpenAPI document, %d problems" % (
        len(records), len(seen), failures))
    return 1 if failures else 0


def document_problems(contract):
    """Every schema is valid JSON Schema 2020-12 and every $ref resolves."""
    problems = []

    def walk(node, where):
        if isinstance(node, dict):
            if "$ref" in node:
                try:
                    contract.resolver.resolve(node["$ref"])
                except jsonschema.RefResolutionError as e:
                    problems.append("%s: %s" % (where, e))
            if "schema" in node and isinstance(node["schema"], dict):
                try:
                    jsonschema.Draft202012Validator.check_schema(node["schema"])
                except jsonschema.SchemaError as e:
                    problems.append("%s: %s" % (where, e.message))
            for k, v in node.items():
                walk(v, where + "/" + k)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, "%s/%d" % (where, i))

    walk(contract.doc, "")
    for name, schema in contract.doc["components"]["schemas"].items():
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as e:
            problems.append("components/schemas/%s: %s" % (name, e.message))
    return problems


def self_test(contract):
    """Wrong bodies must be caught, right ones accepted: the check can fail."""
    broken = document_problems(contract)
    for p in broken:
        print("document: %s" % p)
    cases = [
        (True, {"method": "GET", "route": "/health", "status": 200,
                "body": '{"status":"ok","version":"0.1.0","active_runs":0,"total_workers":0,"draining":false}'}),
        (False, {"method": "GET", "route": "/health", "status": 200,
                 "body": '{"status":"ok","version":"0.1.0","active_runs":"0","total_workers":0,"draining":false}'}),
        (False, {"method": "GET", "route": "/health", "status": 200, "body": '{"status":"ok"}'}),
        (True, {"method": "GET", "route": "/runs/{}", "status": 404,
                "body": '{"error":{"code":"not_found","message":"run not found"}}'}),
        (False, {"method": "GET", "route": "/runs/{}", "status": 404, "body": '{"error":"run not found"}'}),
        (False, {"method": "POST", "route": "/runs", "status": 201,
                 "body": '{"id":"r","status":"sleeping","idempotent_replay":false}'}),
        (False, {"method": "GET", "route": "/no/such/route", "status": 200, "body": '{}'}),
        (False, {"method": "PATCH", "route": "/runs", "status": 200, "body": '{}'}),
        (False, {"method": "GET", "route": "/workers", "status": 200,
                 "body": '[{"id":"w","url":"http://x/a","protocol":"webhook","model":null,"tags":[],'
                         '"max_concurrent":1,"source":"config","status":"active","consecutive_failures":0,'
                         '"created_at_ms":1,"token":"secret"}]'}),
        (False, {"method": "GET", "route": "", "status": 404, "body": "not json"}),
        # Requests the server took: the documented request schema must accept them.
        (True, {"method": "POST", "route": "/runs/{}/state", "status": 200, "body": '{"applied":true}',
                "request_body": '{"updates":{"x":1}}'}),
        (False, {"method": "POST", "route": "/runs/{}/state", "status": 200, "body": '{"applied":true}',
                 "request_body": '{"updates":"not an object"}'}),
    ]
    wrong = 0
    for ok, record in cases:
        problems = contract.problems(record)
        if ok == bool(problems):
            wrong += 1
            print("self-test: %s %s %s expected %s, got %s" % (
                record["method"], record["route"], record["body"][:80], "valid" if ok else "invalid",
                problems or "valid"))
    print("self-test: %d of %d cases judged right" % (len(cases) - wrong, len(cases)))
    return 1 if wrong or broken else 0


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__)
    with open(argv[1]) as f:
        contract = Contract(json.load(f))
    if argv[2] == "--self-test":
        return self_test(contract)
    return validate_dir(contract, argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
