"""Loads contrib/grafana-dashboard.json into Grafana's dashboard model
(PyPI grafana-foundation-sdk) and checks what the model made of it: five
titled panels of the expected plugin types whose options decoded into the
plugins' typed Options, Loki queries decoded as loki.Dataquery with the same
expressions, and the `host` query variable.

Usage: PYTHONPATH=<sdk dir> python3 model.py DASHBOARD.json
Prints one line per panel; exits non-zero with a message on any mismatch."""
import json
import sys

from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import bargauge, dashboard, geomap, logs, loki, table, timeseries

OPTIONS = {"geomap": geomap.Options, "timeseries": timeseries.Options, "logs": logs.Options,
           "table": table.Options, "bargauge": bargauge.Options}


def fail(message):
    sys.exit(f"dashboard model: {message}")


def main(path):
    plugins.register_default_plugins()
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    model = dashboard.Dashboard.from_json(raw)
    if not model.title:
        fail("the dashboard has no title")
    if len(model.panels) != 6:
        fail(f"expected 6 panels, the model has {len(model.panels)}")
    for panel, raw_panel in zip(model.panels, raw["panels"]):
        if not panel.title:
            fail(f"panel {panel.id_val} has no title")
        expected = OPTIONS.get(panel.type_val)
        if expected is None:
            fail(f"panel {panel.title!r}: unexpected type {panel.type_val}")
        if not isinstance(panel.options, expected):
            fail(f"panel {panel.title!r}: options decoded as {type(panel.options).__name__}, not {expected.__module__}.Options")
        if not panel.targets:
            fail(f"panel {panel.title!r} has no queries")
        for target, raw_target in zip(panel.targets, raw_panel["targets"]):
            if not isinstance(target, loki.Dataquery):
                fail(f"panel {panel.title!r}: query {raw_target['refId']} decoded as {type(target).__name__}, not a Loki query")
            if target.expr != raw_target["expr"]:
                fail(f"panel {panel.title!r}: expr changed in the model")
        print(f"{panel.type_val}: {panel.title} ({len(panel.targets)} Loki queries)")
    variables = [v for v in model.templating.list_val or [] if v.name == "host"]
    if len(variables) != 1 or variables[0].type_val != "query":
        fail("no `host` query variable")
    # The model serialises back (what Grafana would store).
    round_trip = json.loads(json.dumps(model, cls=JSONEncoder))
    if [p["title"] for p in round_trip["panels"]] != [p["title"] for p in raw["panels"]]:
        fail("panel titles changed in a round trip")
    if not any(i.get("name") == "DS_LOKI" and i.get("pluginId") == "loki" for i in raw.get("__inputs", [])):
        fail("no DS_LOKI input for the Loki data source")
    print("model: ok")


if __name__ == "__main__":
    main(sys.argv[1])
