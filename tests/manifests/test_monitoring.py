"""The shipped dashboard and alert rules query metrics the operator really exports."""

from __future__ import annotations

import json
import pathlib
import re

import yaml

from apitoken_operator.metrics import Metrics

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "monitoring"


def exported_names() -> set[str]:
    names = set()
    for collector in Metrics().registry.collect():
        for sample in collector.samples:
            names.add(sample.name)
        names.add(collector.name)
    return (
        names | {f"{n}_total" for n in names} | {f"{n}_bucket" for n in names} | {f"{n}_count" for n in names}
    )


def queried(text: str) -> set[str]:
    return set(re.findall(r"\bapitoken_operator_[a-z_]+", text))


def test_alert_rules_use_exported_metrics():
    rules = yaml.safe_load((DOCS / "prometheusrule.yaml").read_text())
    exprs = " ".join(r["expr"] for g in rules["spec"]["groups"] for r in g["rules"])
    assert queried(exprs) and queried(exprs) <= exported_names()
    assert {r["alert"] for g in rules["spec"]["groups"] for r in g["rules"]} >= {
        "DynatraceApiTokenExpiringSoon",
        "DynatraceApiTokenNotReady",
    }


def test_dashboard_uses_exported_metrics():
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    assert queried(exprs) and queried(exprs) <= exported_names()
