"""Schemathesis hooks for the run against the platform's own document: the document covers
many model families, and Seedgate serves only Seedance, so generated requests name Seedance
models (what a Seedance client sends); everything else stays generated."""

import random

import schemathesis

SEEDANCE = ["seedance-2.0", "seedance-2.0-fast", "seedance-2.0-mini",
            "doubao-seedance-2-0-260128", "doubao-seedance-2-0-fast-260128"]


@schemathesis.hook
def map_body(ctx, body):
    if isinstance(body, dict) and "model" in body:
        body["model"] = random.choice(SEEDANCE)
    return body
